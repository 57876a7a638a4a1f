"""PostgreSQL binary COPY streamed on libpq itself: the PostgreSQL-to-PostgreSQL pass-through.

``COPY ... TO STDOUT`` hands out one message per row, so the per-row cost of the client decides
the speed. psycopg's ``Copy`` object spends a generator round-trip and a readiness wait on every
row, and its writer thread then competes for the GIL: measured on 2 M rows, the pass-through
cost 7.2 s of CPU that way and 3.0 s through ``PGconn.get_copy_data`` / ``put_copy_data``
directly (``bench/run.py``: 1.04-1.23x of the ``psql | psql`` pipe, was 1.5-1.7x). Both ends
use psycopg's low-level ``pq`` layer on the session's own connection, in blocking mode for the
duration of the COPY, and one thread: while the target server ingests a chunk, the source
server keeps filling its socket buffer. Reads wait for the server in ``select``, never in libpq,
whose blocking reads hold the GIL.
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Iterable, Iterator
from typing import Any

CHUNK_BYTES = 1 << 20
"""Rows are passed on in chunks of about this size: one send per chunk, memory bounded by it."""


def copy_out_chunks(conn: Any, sql: str) -> Iterator[bytes]:
    """Run ``COPY (...) TO STDOUT`` on a psycopg connection and yield its rows in ~1 MB chunks.

    Closing the generator early (the target failed) leaves the connection mid-COPY: the caller
    closes it, which ends the COPY on the server."""
    with _blocking(conn) as pgconn:
        _start(conn, pgconn, sql, "COPY_OUT")
        get_copy_data = pgconn.get_copy_data
        rows: list[memoryview] = []
        size = 0
        while True:
            nbytes, data = get_copy_data(1)  # what has arrived; 0: nothing yet
            if nbytes == 0:
                _await_input(pgconn)
                continue
            if nbytes < 0:
                break
            rows.append(data)
            size += nbytes
            if size >= CHUNK_BYTES:
                yield b"".join(rows)
                rows.clear()
                size = 0
        if nbytes == -2:
            _raise_connection_error(conn, pgconn)
        if rows:
            yield b"".join(rows)
        _finish(conn, pgconn)


def copy_in_chunks(conn: Any, sql: str, chunks: Iterable[bytes]) -> int:
    """Run ``COPY ... FROM STDIN`` on a psycopg connection (in its open transaction, if any; the
    caller commits), send every chunk, and return the rows the server loaded.

    If the chunks raise (the source failed, or the run was interrupted), the COPY is ended with
    an error so the server discards everything it received, and the exception propagates."""
    with _blocking(conn) as pgconn:
        _start(conn, pgconn, sql, "COPY_IN")
        try:
            put_copy_data = pgconn.put_copy_data
            for chunk in chunks:
                if put_copy_data(chunk) < 0:
                    break  # the server rejected the COPY; its error is read below
        except BaseException as exc:
            pgconn.put_copy_end(f"sync_assets: load aborted: {type(exc).__name__}".encode())
            with contextlib.suppress(Exception):
                _finish(conn, pgconn)
            raise
        pgconn.put_copy_end(None)
        return _finish(conn, pgconn)


@contextlib.contextmanager
def _blocking(conn: Any) -> Iterator[Any]:
    """The connection's libpq handle in blocking mode (psycopg keeps it non-blocking)."""
    pgconn = conn.pgconn
    was_nonblocking = pgconn.nonblocking
    pgconn.nonblocking = 0
    try:
        yield pgconn
    finally:
        with contextlib.suppress(Exception):
            pgconn.nonblocking = was_nonblocking


def _start(conn: Any, pgconn: Any, sql: str, expected: str) -> None:
    from psycopg import errors, pq

    pgconn.send_query_params(sql.encode(conn.info.encoding), None)  # extended protocol: one statement only
    result = _next_result(pgconn)
    if result.status != getattr(pq.ExecStatus, expected):
        _drain(pgconn)
        raise errors.error_from_result(result, encoding=conn.info.encoding)


def _finish(conn: Any, pgconn: Any) -> int:
    """Read the COPY's final result; returns its row count or raises the server's error."""
    from psycopg import errors, pq

    result = _next_result(pgconn)
    _drain(pgconn)
    if result is None or result.status != pq.ExecStatus.COMMAND_OK:
        if result is None:
            _raise_connection_error(conn, pgconn)
        raise errors.error_from_result(result, encoding=conn.info.encoding)
    return int(result.command_tuples or 0)


def _await_input(pgconn: Any) -> None:
    """Wait until the server has sent more, then read it into libpq's buffer. The wait is a
    ``select`` (which lets go of the GIL): libpq's own blocking reads keep it, so every other
    thread of the process (Dagster's, a page prefetch, a second sync) would stop while a source
    query waits on a lock or a slow plan."""
    select.select([pgconn.socket], [], [])
    pgconn.consume_input()  # raises psycopg's OperationalError when the connection is lost


def _next_result(pgconn: Any) -> Any:
    """``get_result`` once it will not block (waiting without the GIL)."""
    while pgconn.is_busy():
        _await_input(pgconn)
    return pgconn.get_result()


def _drain(pgconn: Any) -> None:
    while pgconn.get_result() is not None:
        pass


def _raise_connection_error(conn: Any, pgconn: Any) -> None:
    from psycopg import OperationalError

    raise OperationalError(pgconn.get_error_message(conn.info.encoding).strip() or "COPY failed: connection lost")
