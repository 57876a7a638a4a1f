"""The stage-unload fast path without a server: statement text, order, and cleanup on every exit.

fakesnow cannot unload to a stage or GET files, so the orchestration runs here against a
statement runner that plays the server's part at the file level: it records each statement and,
for GET, writes the Parquet files Snowflake would have written into the download folder. The
real round trip (and its timing) is in test_snowflake_live.py. Also here: the type mapping and
the lossless-or-loud conversion of driver batches, which need no server either.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sync_assets.config.models import ConnectionSpec
from sync_assets.config.names import TableName
from sync_assets.connectors.requests import Filter, ReadRequest
from sync_assets.connectors.snowflake.connector import SnowflakeConnector
from sync_assets.connectors.snowflake.stage import StageStatements, streamed_unload, unload_select
from sync_assets.connectors.snowflake.types import arrow_type_for, declared_type_from_description
from sync_assets.errors import DataError
from sync_assets.types.arrow import make_field

STAGE = StageStatements('"DB"."RAW"."SYNC_ASSETS_UNLOAD_AB12"')
SCHEMA = pa.schema([
    make_field("ID", pa.decimal128(38, 0), native_kind="snowflake", native_type="NUMBER(38,0)"),
    make_field("AT", pa.timestamp("us", tz="UTC"), native_kind="snowflake", native_type="TIMESTAMP_TZ(9)"),
    make_field("DOC", pa.string(), native_kind="snowflake", native_type="VARIANT", logical="json"),
])


def connector() -> SnowflakeConnector:
    return SnowflakeConnector("sf", ConnectionSpec(kind="snowflake", role="source", options={
        "account": "acme", "user": "u", "password": "p", "database": "DB", "schema": "RAW"}))


class FileLevelServer:
    """Records statements; on GET, writes unloaded Parquet files; fails on a chosen statement."""

    def __init__(self, files: dict[str, pa.Table], fail_on: str | None = None):
        self.files = files
        self.fail_on = fail_on
        self.statements: list[str] = []

    def __call__(self, sql: str) -> list[tuple]:
        self.statements.append(sql)
        if self.fail_on and sql.startswith(self.fail_on):
            raise RuntimeError(f"server refused: {sql.split()[0]}")
        if sql.startswith("COPY INTO"):
            return [(sum(t.num_rows for t in self.files.values()), 0, 0)]
        if sql.startswith("GET"):
            folder = Path(sql.split("'file://")[1].split("'")[0])
            for name, table in self.files.items():
                pq.write_table(table, folder / name)
        return []


def unloaded_parts() -> dict[str, pa.Table]:
    """What Snowflake writes: upper-case headers, NUMBER shrunk to int64, UTC wall clock."""
    def part(ids: list[int]) -> pa.Table:
        return pa.table({"ID": pa.array(ids, pa.int64()),
                         "AT": pa.array([datetime(2024, 1, 1, 12, i) for i in ids], pa.timestamp("ns")),
                         "DOC": pa.array([f'{{"n":{i}}}' for i in ids])})
    return {"part_0_0_0.snappy.parquet": part([1, 2]), "part_0_1_0.snappy.parquet": part([3])}


def run(server: FileLevelServer, local_dir: Path):
    select = unload_select(connector(), ReadRequest(table=TableName("RAW", "EVENTS")), SCHEMA)
    return streamed_unload(server, STAGE, select, local_dir, SCHEMA, lambda b: connector().conform(
        b, SCHEMA, ReadRequest(table=TableName("RAW", "EVENTS"))), max_file_bytes=64 << 20, batch_rows=1000)


def test_statement_text():
    assert STAGE.create() == ('CREATE TEMPORARY STAGE "DB"."RAW"."SYNC_ASSETS_UNLOAD_AB12" '
                              "FILE_FORMAT = (TYPE = PARQUET COMPRESSION = SNAPPY)")
    assert STAGE.unload("SELECT 1", 256 << 20) == (
        'COPY INTO @"DB"."RAW"."SYNC_ASSETS_UNLOAD_AB12"/part FROM (SELECT 1) '
        "FILE_FORMAT = (TYPE = PARQUET COMPRESSION = SNAPPY) HEADER = TRUE MAX_FILE_SIZE = 268435456")
    assert STAGE.download(Path("/tmp/unload x")) == (
        """GET @"DB"."RAW"."SYNC_ASSETS_UNLOAD_AB12"/ 'file:///tmp/unload x/' PARALLEL = 8""")
    assert STAGE.drop() == 'DROP STAGE IF EXISTS "DB"."RAW"."SYNC_ASSETS_UNLOAD_AB12"'


def test_unload_select_converts_zoned_timestamps_and_refuses_binds():
    sql = unload_select(connector(), ReadRequest(table=TableName("RAW", "EVENTS"), where='"ID" > 0'), SCHEMA)
    assert sql == (
        """SELECT "ID", CAST(CONVERT_TIMEZONE('UTC', "AT") AS TIMESTAMP_NTZ(9)) AS "AT", "DOC" FROM """
        """(SELECT "ID", "AT", TO_JSON("DOC") AS "DOC" FROM "DB"."RAW"."EVENTS" WHERE ("ID" > 0)) AS sync_unload""")
    with pytest.raises(ValueError, match="bound parameters"):
        unload_select(connector(), ReadRequest(table=TableName("RAW", "EVENTS"), filters=(Filter("ID", ">", 1),)),
                      SCHEMA)


def test_success_streams_canonical_batches_and_removes_everything(tmp_path):
    server = FileLevelServer(unloaded_parts())
    local_dir = tmp_path / "unload"
    local_dir.mkdir()
    result = pa.Table.from_batches(list(run(server, local_dir)), schema=SCHEMA)
    assert [s.split()[0] for s in server.statements] == ["CREATE", "COPY", "GET", "DROP"]
    assert result.schema == SCHEMA
    assert result.column("ID").to_pylist() == [Decimal(1), Decimal(2), Decimal(3)]
    assert result.column("AT")[0].as_py() == datetime(2024, 1, 1, 12, 1, tzinfo=UTC)
    assert not local_dir.exists()


@pytest.mark.parametrize("failing", ["CREATE", "COPY INTO", "GET"])
def test_a_failed_step_still_drops_the_stage_and_the_files(tmp_path, failing):
    server = FileLevelServer(unloaded_parts(), fail_on=failing)
    local_dir = tmp_path / "unload"
    local_dir.mkdir()
    (local_dir / "leftover.parquet").write_bytes(b"partial download")
    with pytest.raises(RuntimeError, match="server refused"):
        list(run(server, local_dir))
    assert server.statements[-1] == STAGE.drop()
    assert not local_dir.exists()


def test_a_failed_drop_is_logged_not_raised(tmp_path, caplog):
    server = FileLevelServer(unloaded_parts(), fail_on="DROP")
    local_dir = tmp_path / "unload"
    local_dir.mkdir()
    assert sum(b.num_rows for b in run(server, local_dir)) == 3
    assert "could not drop stage" in caplog.text


def test_an_abandoned_reader_removes_the_files(tmp_path):
    local_dir = tmp_path / "unload"
    local_dir.mkdir()
    batches = run(FileLevelServer(unloaded_parts()), local_dir)
    next(batches)
    assert any(local_dir.iterdir())
    batches.close()
    assert not local_dir.exists()


def test_rows_unloaded_but_no_files_is_an_error(tmp_path):
    class LosesFiles(FileLevelServer):
        def __call__(self, sql):
            return [] if sql.startswith("GET") else super().__call__(sql)

    local_dir = tmp_path / "unload"
    local_dir.mkdir()
    with pytest.raises(DataError, match="3 rows were unloaded but GET brought back no Parquet file"):
        list(run(LosesFiles(unloaded_parts()), local_dir))
    assert not local_dir.exists()


# -- types ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("declared", "expected", "logical"), [
    ("NUMBER(38,0)", pa.decimal128(38, 0), None), ("NUMBER(10,2)", pa.decimal128(10, 2), None),
    ("NUMBER", pa.decimal128(38, 0), None), ("INT", pa.decimal128(38, 0), None),
    ("FLOAT", pa.float64(), None), ("VARCHAR(16777216)", pa.string(), None), ("BINARY(8)", pa.binary(), None),
    ("BOOLEAN", pa.bool_(), None), ("DATE", pa.date32(), None), ("TIME(9)", pa.time64("us"), None),
    ("TIMESTAMP_NTZ(9)", pa.timestamp("us"), None), ("TIMESTAMP_LTZ(9)", pa.timestamp("us", "UTC"), None),
    ("TIMESTAMP_TZ(3)", pa.timestamp("us", "UTC"), None), ("VARIANT", pa.string(), "json"),
    ("OBJECT", pa.string(), "json"), ("ARRAY", pa.string(), "json"), ("GEOGRAPHY", pa.string(), "text_cast"),
])
def test_type_mapping(declared, expected, logical):
    assert arrow_type_for(declared) == (expected, logical)


def test_cursor_descriptions_become_declared_types():
    assert declared_type_from_description(0, 38, 0) == "NUMBER(38,0)"
    assert declared_type_from_description(8, 0, 9) == "TIMESTAMP_NTZ(9)"
    assert declared_type_from_description(6, 0, 9) == "TIMESTAMP_LTZ(9)"
    assert declared_type_from_description(5, None, None) == "VARIANT"


def test_driver_int64_widens_to_the_declared_38_digit_decimal():
    schema = pa.schema([make_field("ID", pa.decimal128(38, 0), native_kind="snowflake", native_type="NUMBER(38,0)")])
    batch = pa.record_batch([pa.array([2**63 - 1], pa.int64())], names=["ID"])
    conformed = connector().conform(batch, schema, ReadRequest(table=TableName("RAW", "T")))
    assert conformed.column(0).to_pylist() == [Decimal(2**63 - 1)]


def test_nanoseconds_fail_loudly_instead_of_truncating():
    schema = pa.schema([make_field("AT", pa.timestamp("us"), native_kind="snowflake", native_type="TIMESTAMP_NTZ(9)")])
    exact = pa.record_batch([pa.array([1_000], pa.timestamp("ns"))], names=["AT"])
    assert connector().conform(exact, schema, ReadRequest(table=TableName("RAW", "T"))).num_rows == 1
    lossy = pa.record_batch([pa.array([1_001], pa.timestamp("ns"))], names=["AT"])
    with pytest.raises(DataError, match=r"RAW.T: cannot read column 'AT' \(TIMESTAMP_NTZ\(9\)\)"):
        connector().conform(lossy, schema, ReadRequest(table=TableName("RAW", "T")))
