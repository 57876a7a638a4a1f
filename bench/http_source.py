"""Benchmark: the HTTP JSON source, with and without transforms, and its memory as pages grow.

    python bench/http_source.py                       # 250,000 and 1,000,000 records, 3 rounds
    python bench/http_source.py --records 250000,1000000,2000000 --rounds 5

The demo ERP API (``sync_assets/demo/erp_api.py``) serves ``customers`` from its own process on
127.0.0.1, 1,000 records per page (cursor pagination, eight fields, one nested object), every page
rendered once before the runs (so they time the sync, not the demo's JSON encoding). Each run
is ``sync-assets run`` in its own process under ``/usr/bin/time`` (peak RSS is its own), a full
load into a fresh DuckDB file:

- ``no transforms``: the records as they come (the baseline, measured in the same run);
- ``five transforms``: rename, trim, lowercase + uppercase, parse_dates and a computed column,
  plus a cast, all vectorised in DuckDB over each Arrow batch.

Printed per size: the median records/s of ``--rounds`` runs (the scenarios alternate), the ratio
to the baseline's median, and the highest peak RSS; then the peak RSS growth from the smallest to
the largest size, which must stay flat (pages are gathered into bounded batches and never held
whole). Tests never assert on these times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import BIN, ROOT, run_measured  # noqa: E402

PLAIN = {}
FIVE_TRANSFORMS = {
    "rename": {"id": "customer_id"},
    "cast": {"balance": "decimal(14,2)"},
    "trim": ["name"],
    "lowercase": ["email"],
    "uppercase": ["country"],
    "parse_dates": {"vip_since": ["%d.%m.%Y"]},
    "computed": {"city": "json_extract_string(address, '$.city')"},
}
SCENARIOS = {"no transforms": PLAIN, "five transforms": FIVE_TRANSFORMS}


def write_config(folder: Path, api_url: str, warehouse: Path) -> None:
    streams = {}
    for number, transform in enumerate(SCENARIOS.values()):
        streams[f"customers_{number}"] = {
            "object": f"main.customers_{number}", "primary_key": "customer_id" if transform else "id",
            "batch_size": 50_000,
            "http": {"path": "/api/cursor/customers", "records": "data.items", "page_size": 1000,
                     "pagination": {"style": "cursor", "next": "meta.next_cursor"},
                     "column_types": {"id": "int64", "updated_at": "timestamptz"}},
            **({"transform": transform} if transform else {}),
        }
    config = {"connections": {"erp": {"kind": "http", "options": {"base_url": api_url}},
                              "local": {"kind": "duckdb", "options": {"path": str(warehouse)}}},
              "source": "erp", "target": "local", "streams": streams}
    (folder / "bench.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def serve(records: int, port: int) -> subprocess.Popen:
    """The API, with every page the runs will read rendered once beforehand: the runs then time
    the sync, not the demo API's own JSON encoding (which shares this machine's cores)."""
    api = subprocess.Popen([sys.executable, "-m", "sync_assets.demo.erp_api", "--port", str(port),
                            "--customers", str(records), "--cache-pages"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    api.stdout.readline()  # "ERP API on ...": it listens
    url = f"http://127.0.0.1:{port}/api/cursor/customers?limit=1000"
    while url:
        with urllib.request.urlopen(url, timeout=60) as response:
            cursor = json.load(response)["meta"]["next_cursor"]
        url = f"http://127.0.0.1:{port}/api/cursor/customers?{urlencode({'limit': 1000, 'cursor': cursor})}" \
            if cursor else ""  # encoded as the sync's requests will be: the cache key is the path
    return api


def measure(folder: Path, number: int, records: int) -> tuple[float, float]:
    """(records/s, peak RSS MB) of one ``sync-assets run`` of scenario ``number``."""
    started = time.monotonic()
    _, rss, output = run_measured([str(BIN / "sync-assets"), "--config", str(folder), "run", f"customers_{number}"],
                                  env={"PYTHONPATH": str(ROOT)})
    if f"{records:,} rows read" not in output:
        raise SystemExit(f"scenario {number}: expected {records:,} rows read:\n{output[-2000:]}")
    return records / (time.monotonic() - started), rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", default="250000,1000000")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each scenario per size (medians reported)")
    parser.add_argument("--port", type=int, default=18765)
    args = parser.parse_args()
    sizes = [int(n) for n in args.records.split(",")]
    peaks: dict[str, list[float]] = {name: [] for name in SCENARIOS}
    for records in sizes:
        api = serve(records, args.port)
        try:
            with tempfile.TemporaryDirectory() as work:
                folder = Path(work)
                write_config(folder, f"http://127.0.0.1:{args.port}", folder / "bench.duckdb")
                rates: dict[str, list[float]] = {name: [] for name in SCENARIOS}
                rss: dict[str, list[float]] = {name: [] for name in SCENARIOS}
                for _ in range(args.rounds):  # the scenarios alternate, so drift hits both alike
                    for number, name in enumerate(SCENARIOS):
                        rate, peak = measure(folder, number, records)
                        rates[name].append(rate)
                        rss[name].append(peak)
                baseline = statistics.median(rates["no transforms"])
                print(f"\n{records:,} records, 1,000 per page (median of {args.rounds} runs)")
                for name in SCENARIOS:
                    rate = statistics.median(rates[name])
                    peaks[name].append(max(rss[name]))
                    print(f"  {name:<16} {rate:>9,.0f} records/s  {rate / baseline:5.2f}x baseline speed  "
                          f"peak RSS {max(rss[name]):6.0f} MB  (runs: {', '.join(f'{r:,.0f}' for r in rates[name])})")
        finally:
            api.terminate()
            api.wait()
    if len(sizes) > 1:
        print(f"\npeak RSS from {sizes[0]:,} to {sizes[-1]:,} records ({sizes[-1] // sizes[0]}x the pages):")
        for name, values in peaks.items():
            print(f"  {name:<16} {values[0]:6.0f} MB -> {values[-1]:6.0f} MB ({values[-1] - values[0]:+.0f} MB)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
