"""SQL Server over ODBC: finding a driver, the connection string, and Arrow batches in and out
(reads through the driver's fetch into Arrow, bulk inserts of Arrow batches).
"""

from __future__ import annotations

import platform
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from sync_assets.config.connection_options import MssqlOptions
from sync_assets.connectors.mssql import types
from sync_assets.errors import ConnectionFailed

MICROSOFT_DRIVERS = ("ODBC Driver 18 for SQL Server", "ODBC Driver 17 for SQL Server")


FREETDS = "FreeTDS"


# -- ODBC plumbing ---------------------------------------------------------------------------
def bundled_driver_path() -> str | None:
    """The Microsoft ODBC Driver 18 library inside the ``mssql-python-odbc`` wheel, if installed."""
    try:
        import mssql_python_odbc
    except ImportError:
        return None
    os_release = Path("/etc/os-release").read_text().lower() if Path("/etc/os-release").exists() else ""
    family = ("rhel" if any(n in os_release for n in ("rhel", "fedora", "centos")) else
              "suse" if "suse" in os_release else "debian_ubuntu")
    arch = {"aarch64": "arm64"}.get(platform.machine(), platform.machine())
    libs = Path(mssql_python_odbc.get_libs_dir()) / "linux" / family / arch / "lib"
    found = sorted(libs.glob("libmsodbcsql-*.so*"))
    return str(found[-1]) if found else None


def resolve_driver(requested: str | None) -> str:
    if requested:
        return requested
    import pyodbc

    registered = pyodbc.drivers()
    for name in MICROSOFT_DRIVERS:
        if name in registered:
            return name
    bundled = bundled_driver_path()
    if bundled:
        return bundled
    if FREETDS in registered:
        return FREETDS
    raise ConnectionFailed(
        "no SQL Server ODBC driver found: install Microsoft ODBC Driver 18 (msodbcsql18), "
        "or `pip install mssql-python-odbc`, or FreeTDS (Debian: tdsodbc); or set options.driver"
    )


def odbc_value(value: str) -> str:
    """A connection-string value; braced (``}`` doubled) when ``;``, braces, ``=`` or edge spaces
    could otherwise break out of it. Plain values stay bare: some drivers keep the braces."""
    if any(ch in value for ch in ";{}=") or value != value.strip():
        return "{" + value.replace("}", "}}") + "}"
    return value


def connection_string(opts: MssqlOptions, driver: str, read_only: bool) -> str:
    freetds = "tds" in Path(driver).name.lower()
    parts: dict[str, str] = {"Driver": driver}
    if freetds:
        parts |= {"Server": opts.server, "Port": str(opts.port), "TDS_Version": opts.tds_version,
                  "Encryption": "off" if opts.encrypt == "no" else "require"}
    else:
        parts |= {"Server": f"tcp:{opts.server},{opts.port}", "Encrypt": opts.encrypt,
                  "TrustServerCertificate": "yes" if opts.trust_server_certificate else "no"}
        if read_only:
            parts["ApplicationIntent"] = "ReadOnly"
    parts["Database"] = opts.database
    parts["APP"] = "sync_assets"
    if opts.auth == "windows":
        parts["Trusted_Connection"] = "yes"
    else:
        parts |= {"UID": opts.user or "", "PWD": opts.password or ""}
    return ";".join(f"{key}={odbc_value(value)}" for key, value in parts.items())


@dataclass(frozen=True)
class OdbcLimits:
    """Timeouts and buffer bounds applied to every ODBC connection and read."""

    login_timeout_s: int = 15
    query_timeout_s: int = 300
    max_text_bytes: int = 8000
    max_binary_bytes: int = 1 << 20
    max_batch_bytes: int = 64 << 20
    """Upper bound of the fetch buffers of one read (fewer rows per batch when rows are wide)."""


def odbc_connect(conn_str: str, limits: OdbcLimits, label: str) -> Any:
    """A pyodbc connection (manual commit) with the login timeout, query timeout and the
    output converters SQL Server types need; a silent server fails after the login timeout."""
    import pyodbc

    try:
        conn = pyodbc.connect(conn_str, timeout=limits.login_timeout_s, autocommit=False)
    except pyodbc.Error as exc:
        raise ConnectionFailed(f"{label}: cannot connect within {limits.login_timeout_s}s: {exc}") from exc
    try:
        conn.timeout = limits.query_timeout_s
    except pyodbc.Error as exc:
        conn.close()
        raise ConnectionFailed(f"{label}: the ODBC driver cannot set a query timeout: {exc}") from exc
    types.register_output_converters(conn)
    return conn


def read_arrow_batches(conn_str: str, sql: str, params: Sequence[str | None], fetch_schema: pa.Schema,
                       batch_size: int, limits: OdbcLimits) -> pa.RecordBatchReader:
    """Stream ``sql`` as Arrow batches of at most ``batch_size`` rows (bounded buffers)."""
    import arrow_odbc

    reader = arrow_odbc.read_arrow_batches_from_odbc(
        query=sql, connection_string=conn_str, batch_size=batch_size, parameters=list(params) or None,
        max_text_size=limits.max_text_bytes, max_binary_size=limits.max_binary_bytes,
        max_bytes_per_batch=limits.max_batch_bytes,
        login_timeout_sec=limits.login_timeout_s, query_timeout_sec=limits.query_timeout_s or None,
        schema=fetch_schema,
    )
    return reader.into_pyarrow_record_batch_reader()


def bulk_insert(batches: pa.RecordBatchReader, table_sql: str, quoted_names: list[str], conn_str: str,
                limits: OdbcLimits, chunk_size: int) -> int:
    """Insert every batch into ``table_sql`` with array-bound parameters; returns the row count."""
    import arrow_odbc

    rows = 0

    def converted() -> Iterator[pa.RecordBatch]:
        nonlocal rows
        for batch in batches:
            rows += batch.num_rows
            yield types.load_batch(batch, quoted_names)

    load_schema = types.load_batch(pa.RecordBatch.from_pylist([], schema=batches.schema), quoted_names).schema
    arrow_odbc.insert_into_table(
        reader=pa.RecordBatchReader.from_batches(load_schema, converted()), chunk_size=chunk_size,
        table=table_sql, connection_string=conn_str, login_timeout_sec=limits.login_timeout_s,
    )
    return rows
