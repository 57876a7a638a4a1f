"""The demo's code location: the Chinook tables synced into DuckDB, plus a user's own asset on top.

``dagster dev -m sync_assets.demo.definitions`` (or ``sync-assets demo``). ``revenue_by_country``
shows a user's own asset reading synced tables as polars DataFrames through the target's IO
manager and writing its result back the same way. ``chinook_source_activity`` plays the shop's
own application: every minute (a schedule, running by default) it adds an invoice to the demo
source, which the change sensor then syncs.
"""


import os
from pathlib import Path

import dagster as dg

from sync_assets.config.loader import load_project
from sync_assets.config.project import Project
from sync_assets.demo.chinook import (
    CHINOOK_FILE,
    CUSTOMER_KEY,
    DEMO_CONFIG_DIR,
    INVOICE_KEY,
    REVENUE_KEY,
    has_demo_tables,
    record_demo_sale,
)
from sync_assets.orchestration.assets import io_manager_key
from sync_assets.orchestration.project_definitions import build_definitions


def config_dir() -> Path:
    """``$SYNC_ASSETS_DEMO_CONFIG`` (``sync-assets demo --config`` sets it), else the shipped demo config."""
    return Path(os.environ.get("SYNC_ASSETS_DEMO_CONFIG", DEMO_CONFIG_DIR))


def build_demo_definitions(project: Project) -> dg.Definitions:
    """The project's own definitions, plus the source activity and the downstream asset on the
    first DuckDB target."""
    product = dg.Definitions.merge(build_definitions(project), source_activity(project))
    duckdb_targets = sorted(name for name, conn in project.connections.items()
                            if conn.writable and conn.kind == "duckdb")
    if not duckdb_targets:
        return product
    table_keys = {dg.AssetKey(list(table.asset_key)) for table in project.tables}
    downstream = demo_downstream_assets(table_keys, io_manager_key(duckdb_targets[0]))
    return dg.Definitions.merge(product, dg.Definitions(assets=downstream))


def source_activity(project: Project) -> dg.Definitions:
    """A job that records one sale in the demo's Chinook source file, and its every-minute schedule."""
    paths = [conn.options["path"] for conn in project.connections.values()
             if conn.kind == "duckdb" and Path(conn.options["path"]).name == CHINOOK_FILE]
    if not paths:
        return dg.Definitions()

    # a sale that meets a sync holding the file waits (record_demo_sale); should it still fail, the
    # op is tried again: its one transaction either committed or left nothing
    @dg.op(name="record_sale", description="Adds one invoice with one to three lines to the demo source.",
           retry_policy=dg.RetryPolicy(max_retries=2, delay=5))
    def record_sale(context: dg.OpExecutionContext) -> None:
        invoice, lines = record_demo_sale(paths[0])
        context.log.info(f"source activity: invoice {invoice} with {lines} line(s) added to {paths[0]}")

    @dg.job(name="chinook_source_activity", tags={"sync_assets/demo": "source_activity"},
            description="The shop's own application, played by the demo: writes new sales into the source.")
    def chinook_source_activity() -> None:
        record_sale()

    every_minute = dg.ScheduleDefinition(
        name="chinook_source_activity_every_minute", job=chinook_source_activity, cron_schedule="* * * * *",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="A new sale in the demo source every minute; the change sensor chinook_changes syncs it.")
    return dg.Definitions(jobs=[chinook_source_activity], schedules=[every_minute])


def demo_downstream_assets(asset_keys: set[dg.AssetKey], io_manager_key: str) -> list[dg.AssetsDefinition]:
    """A user's own asset on top of synced tables (only when the demo tables are configured)."""
    if not has_demo_tables(asset_keys):
        return []
    import polars as pl  # only with the demo tables: polars costs a Dagster process ~28 MB

    @dg.asset(
        key=REVENUE_KEY,
        ins={"invoice": dg.AssetIn(INVOICE_KEY), "customer": dg.AssetIn(CUSTOMER_KEY)},
        io_manager_key=io_manager_key,
        group_name="analytics",
        kinds={"polars", "duckdb"},
        description="Revenue per customer country, computed with polars from the synced Chinook tables.",
    )
    def revenue_by_country(invoice: pl.DataFrame, customer: pl.DataFrame) -> pl.DataFrame:
        return (
            invoice.join(customer.select("CustomerId", "Country"), on="CustomerId")
            .group_by("Country")
            .agg(pl.col("Total").sum().alias("revenue"), pl.len().alias("invoices"))
            .sort("revenue", descending=True)
        )

    return [revenue_by_country]


defs = build_demo_definitions(load_project(config_dir()))
