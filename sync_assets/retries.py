"""Retries for transient errors only, with exponential backoff and jitter.

A transient error is one where the same work can succeed a moment later: a connection that
could not be opened or was dropped, a deadlock, a serialization failure, a server shutting down
or out of connection slots. Data and configuration errors (``DataError``,
``SchemaMismatchError``, ``ConfigError``) never are: retrying them only repeats the failure;
nor is ``TargetLocked``: the run has already waited its ``lock_timeout`` for the other writer.
Errors are classified by their class and by the SQLSTATE that PostgreSQL, ODBC and ADBC drivers
attach, following the ``__cause__``/``__context__`` chain.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from sync_assets.errors import ConfigError, ConnectionFailed, DataError, SchemaMismatchError, TargetLocked
from sync_assets.spec import RetrySpec, parse_duration

TRANSIENT_SQLSTATES = {"40001", "40P01", "57P01", "57P02", "57P03", "53300", "08S01"}
"""Serialization failure, deadlock, admin/crash shutdown, cannot connect now, too many
connections, ODBC communication link failure; plus every class 08 (connection exception)."""
TRANSIENT_MESSAGES = ("deadlock", "could not serialize", "connection reset", "server closed the connection",
                      "terminating connection", "connection refused", "broken pipe")


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _sqlstate(error: BaseException) -> str | None:
    state = getattr(error, "sqlstate", None)
    if state is None and type(error).__module__.startswith("pyodbc") and error.args:
        state = error.args[0]
    return state if isinstance(state, str) else None


def is_transient(error: BaseException) -> bool:
    """True for errors worth retrying; never for data, schema or configuration errors."""
    chain = list(_chain(error))
    if any(isinstance(e, (DataError, SchemaMismatchError, ConfigError, TargetLocked)) for e in chain):
        return False
    for link in chain:
        if isinstance(link, ConnectionFailed):
            return True
        state = _sqlstate(link)
        if state and (state in TRANSIENT_SQLSTATES or state.startswith("08")):
            return True
        if state is None and any(text in str(link).lower() for text in TRANSIENT_MESSAGES):
            return True
    return False


def backoff_seconds(spec: RetrySpec, attempt: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: a random wait between half the base delay and
    min(max_delay, delay * 2**attempt), so retries of many tables do not arrive together."""
    base = parse_duration(spec.delay).total_seconds()
    ceiling = min(parse_duration(spec.max_delay).total_seconds(), base * 2 ** attempt)
    return (rng or random).uniform(min(base / 2, ceiling), ceiling)
