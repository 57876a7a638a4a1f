"""The commands that prove a copy: ``sync-assets diff`` compares a table's source with its target
row by row, inside both databases, and prints the keys that differ; ``sync-assets dead-letters``
lists the rows the target could not take and re-drives them (``--retry``). Exit code 0: equal
(no dead letters), 1: different (dead letters wait), 2: error."""

from __future__ import annotations

import argparse
import sys

from sync_assets.config.loader import load_project
from sync_assets.connectors import connector_for, dead_letters
from sync_assets.sync.planning import RunOptions, local_run_id
from sync_assets.sync.policies import sync_with_policies
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


def cmd_dead_letters(args: argparse.Namespace) -> int:
    try:
        project = load_project(args.config)
        table = project.table(args.table)
        target = connector_for(table.target, project.connections[table.target])
        if args.retry:
            _retry(table, connector_for(table.source, project.connections[table.source], read_only=True), target)
        letters = dead_letters.outstanding(target, table.target_table)
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{table.name} -> {table.target_table}: {len(letters):,} dead letters")
    for letter in letters[:args.limit]:
        raw = letter["raw_row"] if len(letter["raw_row"]) <= 300 else letter["raw_row"][:300] + "..."
        status = " [pending orphan]" if letter.get("status") == "pending" else ""
        print(f"  {letter['quarantined_at']:%Y-%m-%d %H:%M:%S} run {letter['run_id']}  "
              f"key {letter['row_key']}{status}  {letter['reason']}\n    {raw}")
    if len(letters) > args.limit:
        print(f"(the first {args.limit} shown: --limit N for more)")
    return 1 if letters else 0


def _retry(table, source, target) -> None:
    """Re-read the dead-lettered rows from the source and merge them, keys in chunks; a stream
    without a primary key is re-read whole (a full refresh supersedes all its dead letters)."""
    keys = sorted({letter["row_key"] for letter in dead_letters.outstanding(target, table.target_table)
                   if letter["row_key"] is not None})
    if not table.primary_key:
        result = sync_with_policies(table, source, target, RunOptions(full_refresh=True, run_id=local_run_id())).result
        print(f"{table.name}: no primary key, so the retry was a full refresh: {result.applied}")
        return
    run_id = local_run_id()
    for start in range(0, len(keys), source.keys_per_read):
        chunk = tuple(keys[start:start + source.keys_per_read])
        result = sync_with_policies(table, source, target, RunOptions(retry_keys=chunk, run_id=run_id)).result
        print(f"{table.name}: retried {len(chunk):,} keys: {result.rows_read:,} rows found at the source, "
              f"{result.applied}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    diff = sub.add_parser("diff", help="compare a table's source and target row by row inside both databases "
                                       "(exit 0 equal, 1 different, 2 error)")
    diff.add_argument("table", help="stream name, asset key (schema/table) or target table")
    diff.add_argument("--columns", help="comma-separated columns to compare (default: every column the stream selects)")
    diff.add_argument("--where", help="one SQL condition both sides understand, restricting the rows compared")
    diff.add_argument("--limit-keys", type=int, default=20, help="keys shown per list (default 20)")
    diff.set_defaults(func=cmd_diff)
    letters = sub.add_parser("dead-letters", help="list the rows the target could not take (on_bad_rows: quarantine) "
                                                  "and --retry them after a fix (exit 0 none, 1 some, 2 error)")
    letters.add_argument("table", help="stream name, asset key (schema/table) or target table")
    letters.add_argument("--retry", action="store_true",
                         help="re-read those rows from the source and merge them; the ones still bad stay")
    letters.add_argument("--limit", type=int, default=20, help="dead letters shown (default 20)")
    letters.set_defaults(func=cmd_dead_letters)
