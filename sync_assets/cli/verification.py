"""``sync-assets diff``: compare a table's source with its target row by row, inside both
databases, and print the keys that differ. Exit code 0: equal, 1: different, 2: error."""

from __future__ import annotations

import argparse
import sys

from sync_assets.config.loader import load_project
from sync_assets.connectors import connector_for
from sync_assets.verify.sides import diff_table


def cmd_diff(args: argparse.Namespace) -> int:
    try:
        project = load_project(args.config)
        table = project.table(args.table)
        source = connector_for(table.source, project.connections[table.source], read_only=True)
        target = connector_for(table.target, project.connections[table.target])
        columns = [c.strip() for c in args.columns.split(",")] if args.columns else None
        result = diff_table(table, source, target, columns=columns, where=args.where)
    except Exception as exc:  # any failure is exit code 2, never mistaken for "different"
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{table.name} -> {table.target_table}: {result.summary()} "
          f"({result.queries} queries, {result.rows_fetched:,} rows fetched, {result.seconds:.2f}s)")
    if result.equal:
        return 0

    def key_text(values: tuple) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in zip(result.key, values, strict=True))

    for title, keys in (("only in the source", result.only_in_source), ("only in the target", result.only_in_target)):
        if keys:
            print(f"{title} ({len(keys):,}):")
            print("\n".join(f"  {key_text(k)}" for k in keys[:args.limit_keys]))
    if result.changed:
        print(f"different values ({len(result.changed):,}):")
        print("\n".join(f"  {key_text(k)}: {', '.join(columns)}" for k, columns in result.changed[:args.limit_keys]))
    if result.differences > args.limit_keys:
        print(f"(at most {args.limit_keys} keys per list shown: --limit-keys N for more)")
    return 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    diff = sub.add_parser("diff", help="compare a table's source and target row by row inside both databases "
                                       "(exit 0 equal, 1 different, 2 error)")
    diff.add_argument("table", help="stream name, asset key (schema/table) or target table")
    diff.add_argument("--columns", help="comma-separated columns to compare (default: every column the stream selects)")
    diff.add_argument("--where", help="one SQL condition both sides understand, restricting the rows compared")
    diff.add_argument("--limit-keys", type=int, default=20, help="keys shown per list (default 20)")
    diff.set_defaults(func=cmd_diff)
