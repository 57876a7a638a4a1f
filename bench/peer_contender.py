"""sync_assets as a contender in the peer harness (../shared/bench-peers), beside dlt and Sling.

The harness runs each contender as a shell command with SRC_DSN, DST_DSN, SRC_TABLE, DST_SCHEMA
and DST_DUCKDB_FILE set; this script turns those into a sync_assets config and runs one sync
(no Dagster, like the other contenders' plain runs). See bench/peers.tsv for the command lines:

    SYNC_ASSETS_ROOT=$PWD BENCH_EXTRA=$PWD/bench/peers.tsv \
        ../shared/bench-peers/run.sh 2000000 3 --only 'sync_assets|psql_copy_binary|handmade'
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import yaml

from sync_assets.config.loader import load_files
from sync_assets.connectors import connector_for
from sync_assets.sync.engine import sync_table


def postgres_connection(dsn: str, password_variable: str) -> dict:
    url = urlparse(dsn)
    if url.password:
        os.environ[password_variable] = url.password
    options = {"host": url.hostname or "127.0.0.1", "port": url.port or 5432, "database": url.path.lstrip("/"),
               "user": url.username or "postgres", "sslmode": "disable"}
    if url.password:
        options["password"] = {"env": password_variable}
    return {"kind": "postgres", "options": options}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=["pg", "duckdb"], required=True)
    parser.add_argument("--incremental", action="store_true")
    args = parser.parse_args()
    target = (postgres_connection(os.environ["DST_DSN"], "BENCH_DST_PASSWORD") if args.target == "pg"
              else {"kind": "duckdb", "role": "target", "options": {"path": os.environ["DST_DUCKDB_FILE"]}})
    stream = {"object": f"{os.environ.get('DST_SCHEMA', 'dst') if args.target == 'pg' else 'dst'}.orders"}
    if args.incremental:
        stream.update(mode="incremental", primary_key="id", update_key="updated_at")
    config = {
        "connections": {
            "src": {**postgres_connection(os.environ["SRC_DSN"], "BENCH_SRC_PASSWORD"), "role": "source"},
            "dst": target,
        },
        "source": "src",
        "target": "dst",
        "streams": {os.environ.get("SRC_TABLE", "src.orders"): stream},
    }
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.yaml"
        path.write_text(yaml.safe_dump(config))
        project = load_files([path])
    table = project.tables[0]
    result = sync_table(table, connector_for("src", project.connections["src"]),
                        connector_for("dst", project.connections["dst"]))
    print(f"rows read {result.rows_read}, written {result.rows_written} in {result.duration_s:.2f}s "
          f"({result.plan.strategy})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
