"""Test helpers that drive the real engines: create tables, run SQL, read rows back comparably.

``Side`` is one database used by a test (a fresh PostgreSQL schema or a fresh DuckDB file) with
dialect-specific DDL for the shared test table, whose identifiers are deliberately awkward
(mixed case, a space, a reserved word) and whose columns cover the canonical types.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psycopg

TABLE = "Order Items"

COLUMNS = ["Id", "select", "Amount", "price", "Name", "flag", "d", "ts", "updatedAt", "u", "b", "j"]

DDL = {
    "postgres": (
        'CREATE TABLE {t} ("Id" bigint PRIMARY KEY, "select" integer, "Amount" numeric(38,10), '
        'price numeric(12,2), "Name" varchar(40), flag boolean, d date, ts timestamp, '
        '"updatedAt" timestamptz, u uuid, b bytea, j jsonb)'
    ),
    "duckdb": (
        'CREATE TABLE {t} ("Id" BIGINT PRIMARY KEY, "select" INTEGER, "Amount" DECIMAL(38,10), '
        'price DECIMAL(12,2), "Name" VARCHAR, flag BOOLEAN, d DATE, ts TIMESTAMP, '
        '"updatedAt" TIMESTAMPTZ, u UUID, b BLOB, j JSON)'
    ),
}

BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)


def make_row(i: int, *, updated: datetime | None = None, nulls: bool = False) -> tuple:
    """Row ``i`` of the test table; ``nulls`` makes every non-key column NULL."""
    if nulls:
        return (i, *([None] * (len(COLUMNS) - 1)))
    return (
        i,
        i % 7,
        Decimal(f"{1234567890123456789012345678 + i}.{i:010d}"),
        Decimal(f"{i % 1000}.{i % 100:02d}"),
        f"name {i} é ü 漢",
        i % 2 == 0,
        date(2024, 1, 1 + i % 28),
        datetime(2024, 1, 1, 12, 0, 0, i % 1_000_000),
        updated or BASE_TIME.replace(microsecond=i % 1_000_000, second=i % 60, minute=(i // 60) % 60),
        uuid.UUID(int=i * 7919),
        bytes([i % 256, 0, 255]),
        json.dumps({"i": i, "tags": ["a", "b"]}),
    )


def normalize(value: Any) -> Any:
    """Make values from either driver comparable (UTC instants, str UUIDs, parsed JSON, bytes)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, dict):
        return value
    return value


@dataclass
class Side:
    kind: str
    schema: str
    pg_conninfo: str | None = None
    duckdb_path: Path | None = None

    def connection_spec(self, role: str = "both") -> dict:
        if self.kind == "postgres":
            params = psycopg.conninfo.conninfo_to_dict(self.pg_conninfo)
            options = {"host": params["host"], "port": int(params.get("port", 5432)),
                       "database": params["dbname"], "user": params.get("user", "postgres")}
        else:
            options = {"path": str(self.duckdb_path)}
        return {"kind": self.kind, "role": role, "options": options}

    def qualified(self, table: str = TABLE, schema: str | None = None) -> str:
        catalog = f'"{self.duckdb_path.stem}".' if self.kind == "duckdb" else ""
        return f'{catalog}"{schema or self.schema}"."{table}"'

    def execute(self, sql: str, params: list | tuple | None = None, *, many: bool = False) -> None:
        if self.kind == "postgres":
            with psycopg.connect(self.pg_conninfo, autocommit=True) as conn:
                if many:
                    conn.cursor().executemany(sql, params)
                else:
                    conn.execute(sql, params)
        else:
            with duckdb.connect(str(self.duckdb_path)) as conn:
                sql = sql.replace("%s", "?")
                if many:
                    conn.executemany(sql, params)
                else:
                    conn.execute(sql, params).fetchall()

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        if self.kind == "postgres":
            with psycopg.connect(self.pg_conninfo) as conn:
                return conn.execute(sql, params).fetchall()
        with duckdb.connect(str(self.duckdb_path)) as conn:
            return conn.execute(sql.replace("%s", "?"), params).fetchall()

    def ensure_schema(self) -> None:
        if self.kind == "duckdb":
            self.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.duckdb_path.stem}"."{self.schema}"')

    def create_test_table(self, rows: list[tuple], table: str = TABLE) -> None:
        self.ensure_schema()
        self.execute(DDL[self.kind].format(t=self.qualified(table)))
        self.insert(rows, table)

    def insert(self, rows: list[tuple], table: str = TABLE) -> None:
        if not rows:
            return
        cols = ", ".join(f'"{c}"' for c in COLUMNS)
        marks = ", ".join(["%s"] * len(COLUMNS))
        self.execute(f"INSERT INTO {self.qualified(table)} ({cols}) VALUES ({marks})", rows, many=True)

    def rows(self, table: str = TABLE, schema: str | None = None) -> list[tuple]:
        target = self.qualified(table, schema)
        cols = ", ".join(f'"{c}"' for c in COLUMNS)
        return [tuple(normalize(v) for v in row)
                for row in self.query(f'SELECT {cols} FROM {target} ORDER BY "Id"')]

    def staging_tables(self) -> list[str]:
        """Tables of this side's schema whose name contains ``__sync_staging`` (any run's staging)."""
        return [row[0] for row in self.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "AND position('__sync_staging' IN table_name) > 0", [self.schema])]

    def count(self, table: str, schema: str) -> int:
        return self.query(f"SELECT COUNT(*) FROM {self.qualified(table, schema)}")[0][0]


def materializations_of(result, key) -> list:
    """The materializations a Dagster run result recorded for one asset (``"a/b"`` or an AssetKey):
    a step syncs many tables, so its node name no longer names one."""
    import dagster as dg

    key = dg.AssetKey.from_user_string(key) if isinstance(key, str) else key
    return [event.materialization for event in result.get_asset_materialization_events()
            if event.materialization.asset_key == key]


def check_evaluation(result, name: str):
    """The one evaluation of check ``name`` in a Dagster run result (a step evaluates every
    selected check of its tables)."""
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def write_demo_config(folder: Path, source: Path, warehouse: Path) -> Path:
    """The shipped demo config (its streams, lineage, schedules, sensors and alerts) in ``folder``,
    reading ``source``, writing ``warehouse`` and alerting into ``folder/alerts.log``."""
    import shutil

    import yaml

    from sync_assets.demo.chinook import DEMO_CONFIG_DIR

    config = yaml.safe_load((DEMO_CONFIG_DIR / "chinook.yaml").read_text())
    config["connections"]["chinook"]["options"]["path"] = str(source)
    config["connections"]["warehouse"]["options"]["path"] = str(warehouse)
    config["alerts"]["channels"]["demo_log"]["path"] = str(folder / "alerts.log")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "demo.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copy(DEMO_CONFIG_DIR / "lineage.yaml", folder / "lineage.yaml")
    return folder
