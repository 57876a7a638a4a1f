"""The HTTP JSON source against a real local API (``sync_assets.demo.erp_api`` on 127.0.0.1, in a
thread): every pagination style, every auth kind, retries of 429 (honouring Retry-After) and
5xx, and the failures that must end in a clear error naming the stream, path and page (no
secret) with the target untouched: a page that keeps failing, malformed JSON, a timeout."""

from __future__ import annotations

import time

import duckdb
import pytest

from sync_assets.connectors import connector_for
from sync_assets.demo.erp_api import ErpApi, customer
from sync_assets.errors import ConfigError, DataError, SourceReadError
from sync_assets.sync.engine import sync_table

CURSOR = {"style": "cursor", "next": "meta.next_cursor"}
PAGINATIONS = {
    "page": {"style": "page"},
    "offset": {"style": "offset"},
    "cursor": CURSOR,
    "link": {"style": "link_header"},
    "next": {"style": "next_url", "next": "meta.next"},
}


@pytest.fixture
def erp():
    with ErpApi(customers=2_345, orders=500) as api:
        yield api


@pytest.fixture
def api_sync(erp, write_project, tmp_path):
    """Sync one customers stream of the local API into a DuckDB file; returns the SyncResult."""
    path = tmp_path / "wh.duckdb"

    def run(http: dict | None = None, stream: dict | None = None, connection: dict | None = None,
            style: str = "cursor"):
        project = write_project({
            "connections": {"erp": {"kind": "http", "options": {"base_url": erp.url} | (connection or {})},
                            "wh": {"kind": "duckdb", "options": {"path": str(path)}}},
            "source": "erp", "target": "wh",
            "streams": {"customers": {"mode": "full_refresh", "primary_key": "id", "http": {
                "path": f"/api/{style}/customers", "records": "data.items", "page_size": 500,
                "pagination": PAGINATIONS.get(style), "column_types": {"id": "int64"}} | (http or {})}
                | (stream or {})},
        })
        table = project.tables[0]
        return sync_table(table, connector_for("erp", project.connections["erp"], read_only=True),
                          connector_for("wh", project.connections["wh"]))

    run.rows = lambda sql="SELECT id FROM main.customers ORDER BY id": duckdb.connect(str(path)).sql(sql).fetchall()
    return run


@pytest.mark.parametrize("style", [*PAGINATIONS, "all"])
def test_every_pagination_style_reads_every_record_once(api_sync, erp, style):
    result = api_sync(style=style)
    assert result.rows_read == result.rows_written == 2_345
    assert [row[0] for row in api_sync.rows()] == list(range(1, 2_346))
    pages = [r for r in erp.requests if "/customers" in r]
    assert len(pages) == (2 if style == "all" else 1 + 5)  # the schema probe, then the read (5 pages of 500)


def test_inferred_types_are_stable_across_pages(api_sync):
    """``balance`` is whole on the first page and fractional later; ``vip_since`` is NULL on the
    whole first page: neither fails nor flips type, and nested objects land as JSON."""
    result = api_sync(http={"page_size": 1000})
    types = {f.name: str(f.type) for f in result.target_schema}
    assert types["balance"] == "double" and types["vip_since"] == "string" and types["id"] == "int64"
    rows = dict(api_sync.rows("SELECT id, balance FROM main.customers WHERE id IN (1000, 1001)"))
    assert rows == {1000: 10_000.0, 1001: 10_010.25}
    [(vip, city)] = api_sync.rows("SELECT vip_since, address->>'city' FROM main.customers WHERE id = 1500")
    assert vip == customer(1500)["vip_since"] and city == customer(1500)["address"]["city"]


@pytest.mark.parametrize("auth, options", [
    (("bearer", "s3cret-token"), {"kind": "bearer", "token": {"env": "ERP_TOKEN"}}),
    (("basic", "erp", "s3cret-token"), {"kind": "basic", "username": "erp", "password": {"env": "ERP_TOKEN"}}),
    (("header", "X-Api-Key", "s3cret-token"), {"kind": "api_key", "key": {"env": "ERP_TOKEN"}, "name": "X-Api-Key"}),
    (("query", "api_key", "s3cret-token"), {"kind": "api_key", "key": {"env": "ERP_TOKEN"}, "name": "api_key",
                                            "location": "query"}),
], ids=["bearer", "basic", "api_key-header", "api_key-query"])
def test_every_auth_kind_and_a_refusal_names_no_secret(api_sync, erp, monkeypatch, auth, options):
    erp.require(*auth)
    monkeypatch.setenv("ERP_TOKEN", "s3cret-token")
    assert api_sync(connection={"auth": options}).rows_written == 2_345
    monkeypatch.setenv("ERP_TOKEN", "wrong-token")
    with pytest.raises(SourceReadError) as refused:
        api_sync(connection={"auth": options, "backoff_s": 0})
    message = str(refused.value)
    assert "HTTP 401" in message and "stream 'customers': GET /api/cursor/customers (page 1)" in message
    assert "not retried" in message and "token" not in message.replace("ERP_TOKEN", "")


def test_a_secret_written_in_the_file_is_refused(api_sync):
    with pytest.raises(ConfigError, match="'token' is a secret and must come from the environment"):
        api_sync(connection={"auth": {"kind": "bearer", "token": "inline"}})


def test_429_waits_as_long_as_retry_after_asks_and_a_500_once_is_retried(api_sync, erp):
    erp.fault(3, status=429, retry_after="1")
    erp.fault(4, status=500)
    started = time.monotonic()
    result = api_sync(connection={"backoff_s": 0.01})
    assert result.rows_written == 2_345 and time.monotonic() - started >= 1.0
    assert sum(1 for r in erp.requests if "/customers" in r) == 1 + 5 + 2


def _failing_run_leaves_the_target_untouched(api_sync, break_api, **kwargs) -> str:
    api_sync()
    before = api_sync.rows()
    break_api()
    with pytest.raises(SourceReadError) as failure:
        api_sync(**kwargs)
    assert api_sync.rows() == before
    return str(failure.value)


def test_a_page_that_keeps_failing_ends_in_an_error_naming_stream_path_and_page(api_sync, erp):
    message = _failing_run_leaves_the_target_untouched(api_sync, lambda: erp.fault(3, status=503, times=99),
                                                       connection={"max_retries": 2, "backoff_s": 0.01})
    assert "stream 'customers': GET /api/cursor/customers (page 3): HTTP 503" in message
    assert "after 2 retries" in message


def test_malformed_json_names_the_page(api_sync, erp):
    message = _failing_run_leaves_the_target_untouched(api_sync, lambda: erp.fault(2, malformed=True), style="page")
    assert "GET /api/page/customers (page 2): the response is not valid JSON" in message


def test_a_page_that_times_out_names_the_page(api_sync, erp):
    message = _failing_run_leaves_the_target_untouched(
        api_sync, lambda: erp.fault(2, delay_s=2.0, times=2), style="offset",
        connection={"timeout_s": 0.3, "max_retries": 1, "backoff_s": 0.01})
    assert "GET /api/offset/customers (page 2): no response within timeout_s=0.3 after 1 retries" in message


def test_a_wrong_records_path_is_a_clear_error(api_sync):
    with pytest.raises(SourceReadError, match=r"the response has no 'rows' on the 'records' path 'data.rows'"):
        api_sync(http={"records": "data.rows"})


def test_rate_limit_spaces_requests(api_sync):
    started = time.monotonic()
    api_sync(connection={"rate_limit_per_s": 10})  # 6 requests, at least 0.1 s apart
    assert time.monotonic() - started >= 0.5


def test_options_an_api_cannot_honour_are_refused_at_load(api_sync):
    with pytest.raises(ConfigError, match="key 'where': an HTTP source cannot filter rows in SQL"):
        api_sync(stream={"where": "id > 3"})
    with pytest.raises(ConfigError, match="key 'http.since_param': mode 'incremental'"):
        api_sync(stream={"mode": "incremental", "update_key": "updated_at"})
    with pytest.raises(ConfigError, match="'hash_delta' needs a database source"):
        api_sync(stream={"mode": "hash_delta"})


def test_incremental_asks_only_for_records_since_the_watermark_merges_them_and_mirrors_deletes(
        erp, write_project, pg_options, schema_name, pg):
    schema = schema_name("api")
    project = write_project({
        "connections": {"erp": {"kind": "http", "options": {"base_url": erp.url}},
                        "pg": {"kind": "postgres", "options": pg_options}},
        "source": "erp", "target": "pg",
        "defaults": {"object": f"{schema}.{{stream_table}}"},
        "streams": {"customers": {
            "mode": "incremental", "primary_key": "customer_id", "update_key": "updated_at",
            "deletes": {"detect": "hard"}, "transform": {"rename": {"id": "customer_id"}},
            "http": {"path": "/api/next/customers", "records": "data.items", "page_size": 1000,
                     "pagination": {"style": "next_url", "next": "meta.next"}, "since_param": "updated_since",
                     "column_types": {"id": "int64", "updated_at": "timestamptz"}}}},
    })
    table = project.tables[0]

    def run():
        return sync_table(table, connector_for("erp", project.connections["erp"], read_only=True),
                          connector_for("pg", project.connections["pg"]))

    first = run()
    assert first.plan.strategy == "full_refresh" and first.rows_written == 2_345
    erp.change("customers", 7, name="Renamed 7")
    erp.delete("customers", 9)
    erp.requests.clear()
    second = run()
    assert second.plan.strategy == "incremental" and second.rows_read == 2  # the watermark's own row, and id 7
    assert any("updated_since=2024-01-01T00%3A39%3A05%2B00%3A00" in r for r in erp.requests)
    assert pg.execute(f"SELECT name FROM {schema}.customers WHERE customer_id = 7").fetchone() == ("Renamed 7",)
    assert second.rows_deleted == 1  # every key was read (renamed like the rows) and 9 is gone at the source
    assert pg.execute(f"SELECT COUNT(*) FROM {schema}.customers WHERE customer_id = 9").fetchone() == (0,)
    assert pg.execute(f"SELECT COUNT(*) FROM {schema}.customers").fetchone() == (2_344,)
    assert second.watermark_after > first.watermark_after


def test_an_api_stream_is_an_asset_without_the_checks_an_api_cannot_answer(write_project, erp):
    from sync_assets.orchestration.project_definitions import build_definitions

    project = write_project({
        "connections": {"erp": {"kind": "http", "options": {"base_url": erp.url}},
                        "wh": {"kind": "duckdb", "options": {"path": "wh.duckdb"}}},
        "source": "erp", "target": "wh",
        "streams": {"customers": {"primary_key": "id", "http": {"path": "/api/all/customers",
                                                                "records": "data.items"}}},
    })
    defs = build_definitions(project)
    checks = {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    assert "row_count_parity" not in checks and "schema_drift" in checks
    with pytest.raises(ConfigError, match="change_sensor polls MAX"):
        write_project({"connections": {"erp": {"kind": "http", "change_sensor": {},
                                               "options": {"base_url": erp.url}}}})


def test_a_value_that_does_not_fit_its_declared_type_fails_or_is_quarantined(api_sync):
    """``balance`` is declared int64; from customer 1001 on the API sends fractions. Pages are
    gathered into batches of 1,200 rows, so the bad rows sit at different places in a batch."""
    declared = {"column_types": {"id": "int64", "balance": "int64"}}
    with pytest.raises(DataError) as failure:
        api_sync(http=declared, stream={"batch_size": 1200})
    message = str(failure.value)
    assert "column 'balance' is not a int64 value in the API's records" in message
    assert "first at id=1001" in message and "10010.25" in message
    result = api_sync(http=declared, stream={"batch_size": 1200, "on_bad_rows": "quarantine"})
    assert result.rows_quarantined == 2_345 - 1_000 and result.rows_written == 1_000
    assert [row[0] for row in api_sync.rows()] == list(range(1, 1_001))
    [(reason, raw)] = api_sync.rows("SELECT reason, raw_row FROM main._sync_dead_letters WHERE row_key = '[1500]'")
    assert "'balance' is not a int64 value" in reason and '"balance": 15000.25' in raw


def test_a_value_the_api_sent_unfit_is_quarantined_through_a_transform_too(api_sync):
    result = api_sync(http={"column_types": {"id": "int64", "balance": "int64"}},
                      stream={"primary_key": "customer_id", "on_bad_rows": "quarantine",
                              "transform": {"rename": {"id": "customer_id"}, "trim": ["name"]}})
    assert result.rows_quarantined == 2_345 - 1_000 and result.rows_written == 1_000


def test_page_conversion_never_turns_a_boolean_into_a_number_and_counts_fields_it_does_not_load():
    import pyarrow as pa

    from sync_assets.connectors.http.records import PageConverter
    from sync_assets.types.arrow import make_field

    converter = PageConverter(pa.schema([make_field("amount", pa.float64()), make_field("id", pa.int64())]))
    batch, problems = converter.convert([{"id": 1, "amount": True}, {"id": 2, "amount": 2.5, "late": "x"},
                                         {"id": 3, "amount": False}])
    assert batch.column("amount").to_pylist() == [None, 2.5, None]
    [problem] = problems
    assert problem.mask.to_pylist() == [True, False, True] and problem.source_values.to_pylist() == [
        "true", None, "false"]
    assert converter.unknown_fields == {"late": 1}  # a field only a middle record has is still counted
