"""How a table looks in Dagster beyond its key: owners and tags from the YAML, and the Python
translator hook (``SyncAssetsTranslator``) that can change any part of a table's asset spec."""

from __future__ import annotations

import re
from datetime import timedelta

import dagster as dg
import duckdb
import pytest

from sync_assets.errors import ConfigError
from sync_assets.orchestration.project_definitions import build_definitions
from sync_assets.orchestration.translator import SyncAssetsTranslator


@pytest.fixture
def shop(tmp_path, write_project):
    """A DuckDB shop (customers <- orders) and a project factory over it."""
    with duckdb.connect(str(tmp_path / "shop.duckdb")) as conn:
        conn.execute("CREATE TABLE customers AS SELECT range AS id FROM range(3)")
        conn.execute("CREATE TABLE orders AS SELECT range AS id, range % 3 AS customer_id FROM range(10)")

    def project(defaults: dict | None = None, **streams):
        return write_project({
            "connections": {"shop": {"kind": "duckdb", "role": "source", "options": {"path": "shop.duckdb"}},
                            "lake": {"kind": "duckdb", "role": "target", "options": {"path": "lake.duckdb"}}},
            "source": "shop", "target": "lake",
            "defaults": {"object": "copy.{stream_table}", "primary_key": "id", **(defaults or {})},
            "streams": {"main.customers": streams.get("customers"),
                        "main.orders": {"depends_on": ["main.customers"], **(streams.get("orders") or {})}},
        })

    return project


def own_tags(spec: dg.AssetSpec) -> dict[str, str]:
    return {k: v for k, v in spec.tags.items() if not k.startswith("dagster/kind/")}  # kinds are tags too


def spec_of(defs: dg.Definitions, key: str) -> dg.AssetSpec:
    asset_key = dg.AssetKey.from_user_string(key)
    return defs.get_assets_def(asset_key).specs_by_key[asset_key]


def test_owners_and_tags_come_from_defaults_and_streams(shop):
    project = shop({"owners": ["team:data-platform"], "tags": {"domain": "sales", "tier": "gold"}},
                   orders={"owners": ["ana@example.com"], "tags": {"tier": "silver"}})
    defs = build_definitions(project)
    customers, orders = spec_of(defs, "copy/customers"), spec_of(defs, "copy/orders")
    assert customers.owners == ["team:data-platform"] and own_tags(customers) == {"domain": "sales", "tier": "gold"}
    assert orders.owners == ["ana@example.com"] and own_tags(orders) == {"domain": "sales", "tier": "silver"}


@pytest.mark.parametrize("options, message", [
    ({"owners": ["data platform"]}, "owner 'data platform' is neither an e-mail address nor team:<name>"),
    ({"tags": {"domain": "sales & marketing"}}, "tag 'domain': value 'sales & marketing' may hold letters"),
    ({"tags": {"a/b/c": "x"}}, "tag key 'a/b/c'"),
])
def test_bad_owners_and_tags_are_named_with_file_and_stream(shop, options, message):
    with pytest.raises(ConfigError, match="sync.yaml: stream 'main.orders' key '(owners|tags)'.*" + message):
        shop(orders=options)


class ByDomain(SyncAssetsTranslator):
    """A user's translator: keys under the domain, a group per domain, a tag and a metadata entry."""

    def get_asset_spec(self, table, default_spec):
        return default_spec.replace_attributes(
            key=dg.AssetKey(["sales", *default_spec.key.path]), group_name="sales",
        ).merge_attributes(tags={"translated": "yes"}, metadata={"steward": "ana"})


def test_a_translator_renames_a_table_everywhere_and_the_renamed_tables_sync(shop):
    defs = build_definitions(shop(), translator=ByDomain())
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.materializable_asset_keys}
    assert keys == {"sales/copy/customers", "sales/copy/orders"}
    orders = spec_of(defs, "sales/copy/orders")
    assert orders.group_name == "sales" and orders.tags["translated"] == "yes" and orders.metadata["steward"] == "ana"
    assert {d.asset_key.to_user_string() for d in orders.deps} == {"sales/copy/customers",  # the child follows
                                                                   "source/shop/main/orders"}
    assert {c.asset_key.to_user_string() for c in graph.asset_check_keys} == keys
    result = dg.materialize(list(defs.assets), resources=defs.resources)
    assert result.success
    assert {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()} == keys
    assert all(e.passed for e in result.get_asset_check_evaluations())


class MovesPartitions(SyncAssetsTranslator):
    def get_asset_spec(self, table, default_spec):
        return default_spec.replace_attributes(partitions_def=dg.DailyPartitionsDefinition("2026-01-01"))


def test_a_translator_may_not_change_what_belongs_to_the_sync(shop):
    with pytest.raises(ConfigError, match="the translator changed the partitions or the IO manager of copy/customers"):
        build_definitions(shop(), translator=MovesPartitions())


def test_each_copy_sits_under_its_source_table_as_an_external_asset(shop):
    defs = build_definitions(shop())
    graph = defs.resolve_asset_graph()
    orders = graph.get(dg.AssetKey(["copy", "orders"]))
    assert {k.to_user_string() for k in orders.parent_keys} == {"source/shop/main/orders", "copy/customers"}
    source = graph.get(dg.AssetKey(["source", "shop", "main", "orders"]))
    assert not source.is_materializable and source.group_name == "shop_source"
    assert source.metadata["dagster/uri"].endswith("shop.duckdb#main.orders")


def test_automation_conditions_and_freshness_policies_come_from_the_yaml(shop):
    project = shop({"freshness": "2 hours"}, customers={"automation": {"on_cron": "*/15 * * * *"}},
                   orders={"automation": {"eager": True}})
    defs = build_definitions(project)
    customers, orders = spec_of(defs, "copy/customers"), spec_of(defs, "copy/orders")
    ignored = dg.AssetSelection.assets(dg.AssetKey(["source", "shop", "main", "customers"]))
    assert customers.automation_condition == dg.AutomationCondition.on_cron(
        "*/15 * * * *", cron_timezone="UTC").ignore(ignored)  # the source is nobody's to materialize
    assert orders.automation_condition.get_label() == dg.AutomationCondition.eager().get_label()
    assert customers.freshness_policy == dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=2))
    (sensor,) = [s for s in defs.sensors if s.name == "sync_automation_conditions"]
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING  # Dagster's implicit one starts stopped
    eager = build_definitions(shop(customers={"automation": {"eager": True}}, orders={"automation": {"eager": True}}))
    customers_key, orders_key = dg.AssetKey(["copy", "customers"]), dg.AssetKey(["copy", "orders"])
    with dg.instance_for_test() as instance:  # Dagster's own evaluation: a parent's update, the source ignored
        first = dg.evaluate_automation_conditions(defs=eager, instance=instance)
        assert first.total_requested == 0  # eager: when a parent updates (or a synced table goes missing)
        assert dg.materialize([eager.get_assets_def(customers_key)], resources=eager.resources, instance=instance,
                              selection=[customers_key]).success
        second = dg.evaluate_automation_conditions(defs=eager, instance=instance, cursor=first.cursor)
        assert second.get_num_requested(orders_key) == 1


@pytest.mark.parametrize("options, message", [
    ({"automation": {"on_cron": "every day"}}, "'every day' is not a valid cron expression"),
    ({"automation": {"eager": True, "on_cron": "0 * * * *"}}, "set exactly one of on_cron"),
    ({"automation": {"eager": True}, "schedule": "nightly"}, "keys 'schedule' and 'automation' both set"),
])
def test_bad_automation_is_named_with_file_and_stream(shop, options, message):
    with pytest.raises(ConfigError, match="stream 'main.orders'.*" + re.escape(message)):
        shop(orders=options)


def test_a_project_may_leave_the_source_assets_out(shop):
    defs = build_definitions(shop({"source_asset": False}, orders={"source_asset": True}))
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {"copy/customers", "copy/orders", "source/shop/main/orders"}
