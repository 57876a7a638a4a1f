"""The ``sync-assets`` command: the demo and the UI, plans (dry runs), one-off runs, listings and operations.

Dagster remains the way to run syncs with history (``dagster asset materialize``, ``dagster
dev``); this command covers what a data engineer wants from a shell: set up and start the demo,
serve a (read-only) UI (``dagster_ui``), see what a table's next run would do, run one table
outside Dagster (scripts, benchmarks), list a connection's databases and schemas, list its tables
with sizes, compare a table's source and target row by row (``diff``), print the status of every
table, discover foreign keys into ``lineage.yaml``, and apply the per-connection read limits to
the Dagster instance's pools.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from sync_assets.cli import dagster_ui, verification
from sync_assets.cli.dagster_ui import PROJECT_ROOT, apply_pool_limits, pool_limits
from sync_assets.config.loader import load_project
from sync_assets.config.project import Project
from sync_assets.connectors import connector_for
from sync_assets.errors import SyncAssetsError
from sync_assets.sync.planning import RunOptions, local_run_id
from sync_assets.sync.policies import sync_with_policies


def _project(args: argparse.Namespace) -> Project:
    return load_project(args.config)


def _connectors(project: Project, table):
    return (connector_for(table.source, project.connections[table.source], read_only=True),
            connector_for(table.target, project.connections[table.target]))


def cmd_plan(args: argparse.Namespace) -> int:
    project = _project(args)
    table = project.table(args.table)
    source, target = _connectors(project, table)
    result = sync_with_policies(table, source, target, RunOptions(dry_run=True, full_refresh=args.full_refresh)).result
    print(result.plan.describe())
    print(f"rows expected: {result.expected_rows:,}")
    print("source query:\n" + result.source_sql)
    print("\n".join(result.statements))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    project = _project(args)
    table = project.table(args.table)
    source, target = _connectors(project, table)
    synced = sync_with_policies(table, source, target, RunOptions(
        full_refresh=args.full_refresh, detect_deletes=args.detect_deletes, run_id=local_run_id()))
    result = synced.result
    if synced.chunk is not None:
        print(f"{table.name}: {synced.chunk.describe()}")
    print(f"{table.name}: {result.plan.strategy}, {result.rows_read:,} rows read, {result.rows_written:,} written "
          f"({result.applied}) in {result.duration_s:.2f}s ({result.rows_per_second:,.0f} rows/s); "
          f"target has {result.target_rows:,} rows"
          + (f"; watermark {result.plan.watermark_before!r} -> {result.watermark_after!r}" if table.update_key else ""))
    return 0


def _connection(project: Project, name: str):
    if name not in project.connections:
        raise SyncAssetsError(f"unknown connection {name!r}; defined: {', '.join(project.connections)}")
    return connector_for(name, project.connections[name], read_only=True)


def cmd_tables(args: argparse.Namespace) -> int:
    from sync_assets.cli.sampling import list_tables_report

    rows = list_tables_report(_connection(_project(args), args.connection), args.schema)
    print(f"{'table':<50} {'kind':<6} {'rows':>14} {'size':>12}  last altered")
    for row in rows:
        size = f"{row['bytes'] / 1e6:,.1f} MB" if row["bytes"] is not None else "-"
        count = f"{row['rows']:,}" if row["rows"] is not None else "-"
        altered = row["last_altered"].isoformat(timespec="seconds") if row["last_altered"] else "-"
        print(f"{row['table']:<50} {row['kind']:<6} {count:>14} {size:>12}  {altered}")
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from sync_assets.cli.sampling import list_schemas_report

    report = list_schemas_report(_connection(_project(args), args.connection))
    print("databases (* = this connection's)")
    for row in report["databases"]:
        print(f"{'*' if row['current'] else ' '} {row['database']}")
    print(f"\n{'schemas of ' + report['database']:<50} {'tables+views':>12}")
    for row in report["schemas"]:
        print(f"{row['schema']:<50} {row['tables']:>12,}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    """The first N rows, or a random sample, of a table as JSON, CSV or Parquet."""
    from sync_assets.cli.sampling import sample_table

    connector = _connection(_project(args), args.connection)
    if args.output == "-":
        written = sample_table(connector, args.table, args.rows, args.method, args.format, sys.stdout.buffer)
        sys.stdout.flush()
    else:
        written = sample_table(connector, args.table, args.rows, args.method, args.format, args.output)
        print(f"wrote {written} rows of {args.table} to {args.output}", file=sys.stderr)
    return 0


def _instance_or_none():
    """The Dagster instance at $DAGSTER_HOME, or None (with a note) when it is not set."""
    from dagster import DagsterInstance

    if not os.environ.get("DAGSTER_HOME"):
        print("note: DAGSTER_HOME is not set, so run history is not shown", file=sys.stderr)
        return None
    return DagsterInstance.get()


def cmd_status(args: argparse.Namespace) -> int:
    from sync_assets.cli.status import collect_status, format_status

    project = _project(args)
    instance = _instance_or_none()
    try:
        print(format_status(collect_status(project, instance)))
    finally:
        if instance is not None:
            instance.dispose()
    return 0


def cmd_discover(args: argparse.Namespace) -> int:
    from sync_assets.cli.discovery import discover_foreign_keys
    from sync_assets.config.lineage import write_lineage_file
    from sync_assets.config.loader import wildcard_schemas
    from sync_assets.config.wildcards import write_catalog_file

    partial = load_project(args.config, skip_unresolved_wildcards=True)
    catalog = {
        connection: {schema: [info.table.name for info in _connection(partial, connection).list_tables(schema)]
                     for schema in sorted(schemas)}
        for connection, schemas in wildcard_schemas(args.config).items()
    }
    for connection, schemas in catalog.items():
        for schema, names in schemas.items():
            print(f"{connection}: {schema}.* -> {len(names)} table(s): {', '.join(names)}")
    if catalog and not args.dry_run:
        print(f"wrote the tables of {sum(len(s) for s in catalog.values())} schema(s) to "
              f"{write_catalog_file(Path(args.config), catalog)}")
    project = load_project(args.config, skip_unresolved_wildcards=args.dry_run)
    foreign_keys = discover_foreign_keys(project)
    for fk in foreign_keys:
        print(f"{fk.connection}: {fk.child} ({', '.join(fk.columns)}) -> {fk.parent}")
    if args.dry_run:
        return 0
    path = write_lineage_file(Path(args.config), foreign_keys)
    load_project(args.config)
    print(f"wrote {len(foreign_keys)} foreign key(s) to {path}; definitions now load parents before children")
    return 0


def cmd_pools(args: argparse.Namespace) -> int:
    limits = pool_limits(_project(args))
    for pool, limit in sorted(limits.items()):
        print(f"{pool}: {limit}")
    if not args.apply:
        return 0
    instance = _instance_or_none()
    if instance is None:
        raise SyncAssetsError("set DAGSTER_HOME to the instance whose pools should be limited")
    with instance:
        apply_pool_limits(instance, limits)
    print(f"applied {len(limits)} pool limit(s) to the instance at {os.environ['DAGSTER_HOME']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sync-assets", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="folder of YAML configuration (default: $SYNC_ASSETS_CONFIG or ./config; "
                                          "for `demo`: the shipped demo config)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)

    plan = sub.add_parser("plan", help="dry run: show the plan, SQL and rows expected; writes nothing")
    plan.add_argument("table", help="stream name, asset key (schema/table) or target table")
    plan.add_argument("--full-refresh", action="store_true")
    plan.set_defaults(func=cmd_plan)

    verification.add_parser(sub)

    run = sub.add_parser("run", help="sync one table now, outside Dagster (no run history)")
    run.add_argument("table")
    run.add_argument("--full-refresh", action="store_true")
    run.add_argument("--detect-deletes", action="store_true",
                     help="tables with 'deletes': compare every source key with the target's this run")
    run.set_defaults(func=cmd_run)

    schemas = sub.add_parser("schemas", help="list the server's databases and the connection database's "
                                             "schemas with their table counts")
    schemas.add_argument("connection")
    schemas.set_defaults(func=cmd_schemas)

    tables = sub.add_parser("tables", help="list a connection's tables with row counts and sizes")
    tables.add_argument("connection")
    tables.add_argument("--schema")
    tables.set_defaults(func=cmd_tables)

    status = sub.add_parser("status", help="per table: source/target rows and watermarks, last sync and result")
    status.set_defaults(func=cmd_status)

    sample = sub.add_parser("sample", help="first N rows or a random sample of a table, as JSON, CSV or Parquet")
    sample.add_argument("connection", help="connection name (a target shows what was synced)")
    sample.add_argument("table", help="schema.table")
    sample.add_argument("-n", "--rows", type=int, default=10)
    sample.add_argument("--method", choices=["first", "random"], default="first")
    sample.add_argument("--format", choices=["json", "csv", "parquet"], default="json")
    sample.add_argument("-o", "--output", default="-", help="file path, or - for standard output (default)")
    sample.set_defaults(func=cmd_sample)

    discover = sub.add_parser("discover", help="list the tables wildcard streams match into <config>/catalog.yaml, "
                                                         "and foreign keys into <config>/lineage.yaml")
    discover.add_argument("--dry-run", action="store_true", help="print the foreign keys, write nothing")
    discover.set_defaults(func=cmd_discover)

    pools = sub.add_parser("pools", help="show (and --apply) concurrency pool limits per connection")
    pools.add_argument("--apply", action="store_true", help="set the limits on the instance at $DAGSTER_HOME")
    pools.set_defaults(func=cmd_pools)

    dagster_ui.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.config is None:
        from sync_assets.demo.chinook import DEMO_CONFIG_DIR

        demo = args.command == "demo" or (args.command == "ui" and args.demo)
        args.config = str(DEMO_CONFIG_DIR) if demo else os.environ.get(
            "SYNC_ASSETS_CONFIG", str(PROJECT_ROOT / "config"))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(message)s")
    try:
        return args.func(args)
    except SyncAssetsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
