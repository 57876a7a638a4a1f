"""The demo's source: the Chinook sample database as a DuckDB file, and the demo's asset keys.

``prepare_demo_source`` turns the shipped Chinook SQLite file (MIT licence, see
``demo/data/LICENSE.md``) into a DuckDB file once, keeping the declared column types
(NVARCHAR -> VARCHAR, NUMERIC(10,2) -> DECIMAL(10,2), DATETIME -> TIMESTAMP), so the demo needs
no server.
"""

from __future__ import annotations

import random
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from sync_assets.config.models import ForeignKeySpec

DEMO_CONFIG_DIR = Path(__file__).resolve().parent / "config"
CHINOOK_SQLITE = Path(__file__).parent / "data" / "Chinook_Sqlite.sqlite"
CHINOOK_FILE = "chinook.duckdb"
"""The demo source's file name (``sync-assets demo`` builds it where the config points)."""


INVOICE_KEY = dg.AssetKey(["chinook", "Invoice"])


CUSTOMER_KEY = dg.AssetKey(["chinook", "Customer"])


REVENUE_KEY = dg.AssetKey(["analytics", "revenue_by_country"])


def _duckdb_type(declared: str) -> str:
    declared = declared.upper()
    if declared.startswith("NUMERIC"):
        return declared.replace("NUMERIC", "DECIMAL")
    if declared == "DATETIME":
        return "TIMESTAMP"
    if "CHAR" in declared:
        return "VARCHAR"
    return {"INTEGER": "INTEGER", "BLOB": "BLOB", "REAL": "DOUBLE"}.get(declared, "VARCHAR")


def prepare_demo_source(path: str | Path, *, force: bool = False) -> Path:
    """Build the Chinook DuckDB file at ``path`` unless it is already there."""
    import duckdb
    import polars as pl

    path = Path(path)
    if path.exists() and not force:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    lite = sqlite3.connect(CHINOOK_SQLITE)
    duck = duckdb.connect(str(tmp))
    tables = [r[0] for r in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    for table in tables:
        columns = lite.execute(f'PRAGMA table_info("{table}")').fetchall()
        pk = [c[1] for c in sorted(columns, key=lambda c: c[5]) if c[5]]
        ddl = ", ".join(f'"{c[1]}" {_duckdb_type(c[2])}{" NOT NULL" if c[3] else ""}' for c in columns)
        duck.execute(f'CREATE TABLE "{table}" ({ddl}, PRIMARY KEY ({", ".join(chr(34) + k + chr(34) for k in pk)}))')
        rows = lite.execute(f'SELECT * FROM "{table}"').fetchall()
        frame = pl.DataFrame(rows, schema=[c[1] for c in columns], orient="row", infer_schema_length=None)
        duck.register("chinook_rows", frame.to_arrow())
        duck.execute(f'INSERT INTO "{table}" SELECT * FROM chinook_rows')
        duck.unregister("chinook_rows")
    duck.close()
    lite.close()
    tmp.rename(path)
    return path


def chinook_foreign_keys(connection: str = "chinook") -> list[ForeignKeySpec]:
    """The foreign keys the shipped Chinook file declares, as ``sync-assets discover`` writes
    them: the demo's ``lineage.yaml`` holds exactly these (a test keeps them equal)."""
    lite = sqlite3.connect(CHINOOK_SQLITE)
    try:
        tables = [r[0] for r in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        found = []
        for child in tables:
            by_constraint: dict[int, tuple[str, list[str]]] = {}
            for number, _seq, parent, column, *_ in lite.execute(f'PRAGMA foreign_key_list("{child}")'):
                by_constraint.setdefault(number, (parent, []))[1].append(column)
            for parent, columns in (by_constraint[n] for n in sorted(by_constraint)):
                if parent != child:
                    found.append(ForeignKeySpec(connection=connection, child=f"main.{child}",
                                                parent=f"main.{parent}", columns=columns))
        return found
    finally:
        lite.close()


def record_demo_sale(path: str | Path, *, rng: random.Random | None = None, wait_s: float = 30.0) -> tuple[int, int]:
    """The demo source's own activity, as the shop's application would write it: one new invoice
    for a random customer, dated now, with one to three lines. Returns (invoice id, lines). The
    file is opened for writing between the syncs' reads (DuckDB takes one writing process)."""
    import duckdb

    rng = rng or random.Random()
    deadline = time.monotonic() + wait_s
    while True:
        try:
            conn = duckdb.connect(str(path))
            break
        except duckdb.IOException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        conn.begin()
        customers = conn.execute('SELECT count(*) FROM "Customer"').fetchone()[0]
        tracks = conn.execute('SELECT count(*) FROM "Track"').fetchone()[0]
        invoice = conn.execute('SELECT max("InvoiceId") + 1 FROM "Invoice"').fetchone()[0]
        conn.execute(
            'INSERT INTO "Invoice" SELECT ?, "CustomerId", ?, "Address", "City", "State", "Country", "PostalCode", 0 '
            'FROM "Customer" ORDER BY "CustomerId" LIMIT 1 OFFSET ?',
            [invoice, datetime.now(UTC).replace(tzinfo=None, microsecond=0), rng.randrange(customers)])
        picked = rng.sample(range(tracks), rng.randint(1, 3))
        conn.execute(
            'INSERT INTO "InvoiceLine" SELECT (SELECT max("InvoiceLineId") FROM "InvoiceLine") + row_number() OVER (), '
            '?, "TrackId", "UnitPrice", 1 FROM (SELECT * FROM "Track" ORDER BY "TrackId") '
            'WHERE list_contains(?, "TrackId" - 1)', [invoice, picked])
        conn.execute('UPDATE "Invoice" SET "Total" = (SELECT sum("UnitPrice" * "Quantity") FROM "InvoiceLine" '
                     'WHERE "InvoiceId" = ?) WHERE "InvoiceId" = ?', [invoice, invoice])
        conn.commit()
        return invoice, len(picked)
    finally:
        conn.close()


def has_demo_tables(asset_keys: set[dg.AssetKey]) -> bool:
    return {INVOICE_KEY, CUSTOMER_KEY} <= asset_keys
