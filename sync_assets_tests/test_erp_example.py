"""The shipped example ``config/examples/erp_api_to_postgres.yaml`` end to end, as a user runs it:
Dagster materializes customers then orders (parent_key makes customers a dep) from the demo ERP
API into PostgreSQL, with transforms, validation, quarantine and waiting orphans; once the
missing customers arrive, the next run loads the orders that waited for them."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
import yaml

from sync_assets.config.loader import load_files
from sync_assets.connectors import connector_for, dead_letters
from sync_assets.demo.erp_api import ErpApi, customer
from sync_assets.orchestration.project_definitions import build_definitions

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "examples" / "erp_api_to_postgres.yaml"


@pytest.fixture
def example(tmp_path, monkeypatch, pg_options, schema_name):
    """The example project, pointed at a local demo API and a fresh PostgreSQL schema."""
    schema = schema_name("erp")
    config = yaml.safe_load(EXAMPLE.read_text())
    config["defaults"]["object"] = f"{schema}.{{stream_table}}"
    (tmp_path / "erp.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    with ErpApi(customers=300, orders=1_200) as api:
        monkeypatch.setenv("ERP_API_URL", api.url)
        monkeypatch.setenv("PGHOST", pg_options["host"])
        monkeypatch.setenv("PGDATABASE", pg_options["database"])
        monkeypatch.setenv("PGUSER", pg_options["user"])
        api.require("bearer", "demo-token")
        yield api, schema, lambda: load_files([tmp_path / "erp.yaml"], tmp_path)


def _materialize(project):
    defs = build_definitions(project)
    assets = [defs.get_assets_def(dg.AssetKey(list(t.asset_key))) for t in project.tables]
    result = dg.materialize(assets, resources=defs.resources)
    return {event.asset_key.path[-1]: event.materialization.metadata
            for event in result.get_asset_materialization_events()}, result


def _letters(project, name):
    table = project.table(name)
    return dead_letters.outstanding(connector_for(table.target, project.connections[table.target]),
                                    table.target_table)


def test_the_erp_example_loads_parents_first_and_orders_wait_for_their_customers(example, pg):
    api, schema, load = example
    project = load()
    orders = project.table("orders")
    assert orders.deps == (project.table("customers").asset_key,)
    metadata, result = _materialize(project)
    loaded = [e.materialization.asset_key.path[-1] for e in result.get_asset_materialization_events()]
    assert loaded.index("customers") < loaded.index("orders")  # one step: the parent finished first

    bad_customers = [i for i in range(1, 301) if i % 97 == 0]  # e-mail breaks the regex
    assert metadata["customers"]["rows_quarantined"].value == len(bad_customers)
    assert pg.execute(f"SELECT COUNT(*) FROM {schema}.customers").fetchone() == (300 - len(bad_customers),)
    row = pg.execute(f"SELECT customer_id, name, email, country, city, vip_since FROM {schema}.customers "
                     "WHERE customer_id = 22").fetchone()
    assert row == (22, "Customer 22", None, "NL", customer(22)["address"]["city"], None)
    # whole numbers from the API into the declared decimal(14,2), none lost on the way
    assert pg.execute(f"SELECT balance, COUNT(*) OVER () FROM {schema}.customers WHERE balance IS NOT NULL "
                      "AND customer_id = 22").fetchone() == (Decimal("220.00"), 1)
    assert pg.execute(f"SELECT COUNT(*) FROM {schema}.customers WHERE balance IS NULL").fetchone() == (0,)
    columns = {c.name: c.description for c in metadata["customers"]["dagster/column_schema"].value.columns}
    assert columns["customer_id"] == "renamed from id" and columns["city"].startswith("computed:")

    loaded = {r[0] for r in pg.execute(f"SELECT customer_id FROM {schema}.customers").fetchall()}
    letters = _letters(project, "orders")
    pending = {json.loads(le["row_key"])[0] for le in letters if le["status"] == "pending"}
    failed = {json.loads(le["row_key"])[0] for le in letters if le["status"] == "failed"}
    assert failed == {i for i in range(1, 1_201) if i % 101 == 0}  # "n/a" cannot be cast to decimal(12,2)
    orphans = {i for i in range(1, 1_201) if i % 101 and 1 + (i * 7) % 331 not in loaded}
    assert pending == orphans and orphans
    order_count = pg.execute(f"SELECT COUNT(*) FROM {schema}.orders").fetchone()[0]
    assert order_count == 1_200 - len(failed) - len(orphans)
    [(amount_eur, currency)] = pg.execute(f"SELECT amount_eur, currency FROM {schema}.orders "
                                          "WHERE order_id = 3").fetchall()
    assert amount_eur == pytest.approx(4.55) and currency == "EUR"  # 3.50 * 1.3 (amount * rate), eur upper-cased

    api.add_customers(40)  # customers 301-340 arrive: the orders waiting for them load on the next run
    project = load()
    _materialize(project)
    loaded = {r[0] for r in pg.execute(f"SELECT customer_id FROM {schema}.customers").fetchall()}
    still = {json.loads(le["row_key"])[0] for le in _letters(project, "orders") if le["status"] == "pending"}
    assert still == {i for i in orphans if 1 + (i * 7) % 331 not in loaded} and len(still) < len(orphans)
    assert pg.execute(f"SELECT COUNT(*) FROM {schema}.orders").fetchone()[0] == 1_200 - len(failed) - len(still)
