"""One writer per target table: lock keys, per-run staging names, and waiting for a held lock.

Two runs of one table (a schedule tick and a sensor, a backfill and a manual materialize, two
operators) must never interleave: each connector takes a lock the *target database* enforces
(PostgreSQL advisory lock, SQL Server ``sp_getapplock``, DuckDB's own file lock) for the whole
sync of a table, from planning (the watermark is read under it) through the bulk load into
staging to the commit of the apply. A second run waits up to the table's ``lock_timeout`` and then
fails with ``TargetLocked``: one line naming the table and, where the engine can say, the holder
and since when.

Staging tables are named per run (``<table>__sync_staging_<8 hex>``), so no run can touch
another's staging; leftovers of runs that died are dropped by the next run of the same table,
while it holds the table's lock (so no live run's staging is ever among them).
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Callable

from sync_assets.config.models import DEFAULT_LOCK_TIMEOUT
from sync_assets.config.names import TableName
from sync_assets.errors import TargetLocked

STAGING_MARK = "__sync_staging"
LEGACY_STAGING_SUFFIX = STAGING_MARK
"""Before staging names were per run, every run of a table used ``<table>__sync_staging``."""
TYPED_STAGE_SUFFIX = "_typed"
_RUN_SUFFIX_LENGTH = len(STAGING_MARK) + 1 + 8 + len(TYPED_STAGE_SUFFIX)

DEFAULT_LOCK_TIMEOUT_S = DEFAULT_LOCK_TIMEOUT.total_seconds()


def lock_key(database: str, qualified_table: str) -> int:
    """A stable signed 64-bit key for a table of a database (PostgreSQL advisory lock key)."""
    digest = hashlib.blake2b(f"sync_assets:{database}:{qualified_table}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_resource(database: str, qualified_table: str) -> str:
    """A lock name of at most 255 characters (SQL Server ``sp_getapplock`` resource)."""
    name = f"sync_assets:{database}:{qualified_table}"
    return name if len(name) <= 255 else name[:230] + ":" + hashlib.sha256(name.encode()).hexdigest()[:24]


def staging_prefix(table_name: str, max_identifier_bytes: int | None) -> str:
    """What every staging table of ``table_name`` starts with. Where the engine limits identifier
    length (PostgreSQL: 63 bytes), the table part is shortened and a hash of the full name added,
    so two long table names sharing their first characters still get distinct prefixes."""
    prefix = f"{table_name}{STAGING_MARK}_"
    if max_identifier_bytes is None or len(table_name.encode()) + _RUN_SUFFIX_LENGTH <= max_identifier_bytes:
        return prefix
    room = max_identifier_bytes - _RUN_SUFFIX_LENGTH - 9
    shortened = table_name.encode()[:room].decode(errors="ignore")
    return f"{shortened}_{hashlib.sha256(table_name.encode()).hexdigest()[:8]}{STAGING_MARK}_"


def new_staging(table: TableName, max_identifier_bytes: int | None) -> TableName:
    """A staging table no other run uses: the table's prefix and 8 random hex digits."""
    return TableName(table.schema, staging_prefix(table.name, max_identifier_bytes) + uuid.uuid4().hex[:8])


def is_staging_name(name: str, prefix: str, table_name: str) -> bool:
    """True for a staging table this package made for ``table_name``: ``prefix`` and 8 hex digits
    (``_typed`` for its typed stage), or the fixed name of versions before per-run staging."""
    return name == table_name + LEGACY_STAGING_SUFFIX or bool(
        re.fullmatch(re.escape(prefix) + "[0-9a-f]{8}(" + TYPED_STAGE_SUFFIX + ")?", name))


def wait_until_acquired(try_acquire: Callable[[], bool], timeout_s: float, refusal: Callable[[], str]) -> None:
    """Call ``try_acquire`` until it returns True, every 0.1-1 s, for up to ``timeout_s`` seconds;
    then raise ``TargetLocked`` with the message ``refusal`` builds at that moment."""
    deadline = time.monotonic() + max(timeout_s, 0.0)
    pause = 0.1
    while not try_acquire():
        if time.monotonic() >= deadline:
            raise TargetLocked(refusal())
        time.sleep(min(pause, max(deadline - time.monotonic(), 0.01)))
        pause = min(pause * 2, 1.0)


def waited(timeout_s: float) -> str:
    return f"waited {timeout_s:g}s (lock_timeout); the run wrote nothing"
