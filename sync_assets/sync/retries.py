"""Retries for transient errors only, with exponential backoff and jitter.

A transient error is one where the same work can succeed a moment later: a connection that
could not be opened or was dropped, a deadlock, a serialization failure, a server shutting down
or out of connection slots. Data and configuration errors (``DataError``,
``SchemaMismatchError``, ``ConfigError``) never are: retrying them only repeats the failure;
nor is ``TargetLocked``: the run has already waited its ``lock_timeout`` for the other writer.
Neither is a refusal the server means: a failed login (wrong password, unknown role), an
unknown database, a missing table or a missing privilege fail at once with the server's message.
Errors are classified by their class and by the SQLSTATE that PostgreSQL, ODBC and ADBC drivers
attach (Snowflake's login refusals by their error number), following the ``__cause__``/
``__context__`` chain. A refused login carries no SQLSTATE through libpq (the server sends one,
libpq keeps only the text), so those refusals are also recognized by the server's message.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

from sync_assets.config.models import RetrySpec, parse_duration
from sync_assets.errors import ConfigError, ConnectionFailed, DataError, SchemaMismatchError, TargetLocked

TRANSIENT_SQLSTATES = {"40001", "40P01", "57P01", "57P02", "57P03", "53300", "08S01"}
"""Serialization failure, deadlock, admin/crash shutdown, cannot connect now, too many
connections, ODBC communication link failure; plus every class 08 (connection exception)."""
TRANSIENT_MESSAGES = ("deadlock", "could not serialize", "connection reset", "server closed the connection",
                      "terminating connection", "connection refused", "broken pipe")
PERMANENT_SQLSTATE_CLASSES = ("28", "3D", "3F", "42")
"""Invalid authorization (28P01 wrong password, 28000 unknown role or no pg_hba.conf entry, SQL
Server's login failed 18456), invalid catalog (3D000 unknown database) and schema names, syntax
and access rule violations (42P01 undefined table, 42501 insufficient privilege, ODBC 42S02)."""
PERMANENT_MESSAGES = re.compile(
    r"password authentication failed|no pg_hba\.conf entry|role \".*\" does not exist|is not permitted to log in"
    r"|database \".*\" does not exist|permission denied for database|login failed for user|cannot open database"
    r"|incorrect username or password", re.IGNORECASE)
"""Refused logins as the servers word them (PostgreSQL, SQL Server, Snowflake), for drivers that
report a refused login without its SQLSTATE (libpq, psqlODBC's 08001, arrow-odbc)."""
SNOWFLAKE_LOGIN_ERRNOS = range(390100, 390200)
"""Snowflake's authentication and login refusals (390100 incorrect username or password, 390144
invalid JWT, ...); 250001 is the connector's own number for a refused login it has no code for."""
SNOWFLAKE_REFUSED_LOGIN = 250001


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


def is_permanent(link: BaseException) -> bool:
    """True when this error is the server refusing for good: a login, a database, a table, a privilege."""
    state = _sqlstate(link)
    if state and state[:2] in PERMANENT_SQLSTATE_CLASSES:
        return True
    if type(link).__module__.startswith("snowflake"):
        errno = getattr(link, "errno", None)
        if errno == SNOWFLAKE_REFUSED_LOGIN or errno in SNOWFLAKE_LOGIN_ERRNOS:
            return True
    return bool(PERMANENT_MESSAGES.search(str(link)))


def is_transient(error: BaseException) -> bool:
    """True for errors worth retrying; never for data, schema or configuration errors, nor for
    a refusal the server means (see ``is_permanent``)."""
    chain = list(_chain(error))
    if any(isinstance(e, (DataError, SchemaMismatchError, ConfigError, TargetLocked)) or is_permanent(e)
           for e in chain):
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
