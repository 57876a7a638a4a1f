"""Screenshots of the demo for the README and docs, taken in headless Chromium.

    pip install selenium                  # plus Debian's chromium and chromium-driver
    python docs/screenshots.py            # about six minutes: the demo runs by itself first

Starts the README's first command (``sync-assets demo``) on a fresh DAGSTER_HOME, lets its
automations run for ``--minutes`` (source activity, change sensor, schedule, freshness alert),
then opens the pages a new user looks at and saves them in docs/img/: the lineage of
InvoiceLine (foreign keys and sources), an asset page with its plots, the Automation page, a
sensor-triggered run's log, and the same asset in a read-only UI (``sync-assets ui --read-only``).
Every process it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from sync_assets_tests.processes import stop_group  # noqa: E402  (docs/ is not a package)

IMAGES = ROOT / "docs" / "img"
BIN = Path(sys.executable).parent


def start(command: list[str], home: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ, "DAGSTER_HOME": str(home)},
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1500,1100", "--hide-scrollbars"):
        options.add_argument(flag)
    options.binary_location = "/usr/bin/chromium"
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def shoot(driver: webdriver.Chrome, url: str, wait_for: str, name: str, click: str | None = None,
          search: str | None = None) -> None:
    """``click``: a button to press and show at the top (a tab, a toggle); ``search``: text for the
    page's filter box (a run log's events)."""
    driver.get(url)
    WebDriverWait(driver, 60).until(expected_conditions.text_to_be_present_in_element((By.TAG_NAME, "body"),
                                                                                      wait_for))
    if click:
        button = driver.find_element(By.XPATH, f"//button[normalize-space()='{click}']")
        button.click()
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", button)
    if search:
        driver.find_element(By.XPATH, "//input[@placeholder='Filter…' or @placeholder='Filter...']").send_keys(search)
    time.sleep(4)  # graphs and plots finish drawing
    driver.save_screenshot(str(IMAGES / f"{name}.png"))
    print(f"docs/img/{name}.png: {url}")


def latest_sensor_run(home: Path, asset: str) -> str:
    """The newest successful run the change sensor started for ``asset``."""
    import dagster as dg

    key = dg.AssetKey.from_user_string(asset)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return next(r.run_id for r in instance.get_runs(limit=100)
                    if r.tags.get("sync_assets/trigger", "").startswith("sensor:") and r.is_success
                    and key in (r.asset_selection or ()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0, help="how long the demo runs before the screenshots")
    parser.add_argument("--port", type=int, default=3190)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="screenshots_home_"))
    work = Path(tempfile.mkdtemp(prefix="screenshots_logs_"))
    url, viewer_url = f"http://127.0.0.1:{args.port}", f"http://127.0.0.1:{args.port + 1}"
    demo = start([str(BIN / "sync-assets"), "demo", "--dagster-home", str(home), "--port", str(args.port)], home,
                 work / "demo.log")
    viewer = None
    try:
        print(f"demo running (log {work / 'demo.log'}); waiting {args.minutes:g} minutes for its automations ...")
        time.sleep(args.minutes * 60)
        viewer = start([str(BIN / "sync-assets"), "ui", "--read-only", "--demo", "--dagster-home", str(home),
                        "--port", str(args.port + 1)], home, work / "viewer.log")
        time.sleep(15)
        driver = browser()
        try:
            shoot(driver, f"{url}/assets/chinook/InvoiceLine?view=lineage&lineageScope=upstream&lineageDepth=4",
                  "MediaType", "demo_lineage")
            shoot(driver, f"{url}/assets/chinook/InvoiceLine", "Metadata", "demo_asset_plots", click="Plots")
            shoot(driver, f"{url}/automation", "chinook_changes", "demo_automation")
            shoot(driver, f"{url}/runs/{latest_sensor_run(home, 'chinook/InvoiceLine')}", "RUN_SUCCESS",
                  "demo_run_log", search="rows read")
            shoot(driver, f"{viewer_url}/assets/chinook/InvoiceLine", "Columns", "read_only_asset")
        finally:
            driver.quit()
        alerts = ROOT / "data" / "alerts.log"
        print(f"{alerts}:\n{alerts.read_text() if alerts.exists() else '(no alert yet)'}")
    finally:
        for process in (viewer, demo):
            if process is not None:
                stop_group(process)


if __name__ == "__main__":
    main()
