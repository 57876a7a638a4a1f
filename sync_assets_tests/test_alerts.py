"""Alert delivery, asserted on what a local HTTP server (Slack and generic webhooks) and a local
SMTP server (aiosmtpd) really received, for a real failed run and a real failed check."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
from aiosmtpd.controller import Controller

from sync_assets.errors import ConfigError
from sync_assets.orchestration.alerts import (
    FAILED_CHECKS_SENSOR,
    RUN_FAILURE_SENSOR,
    AlertDeliveryFailed,
    build_alert_sensors,
)
from sync_assets.orchestration.project_definitions import build_definitions


class Received:
    def __init__(self) -> None:
        self.http: list[tuple[str, dict, dict]] = []
        self.mail: list = []


@pytest.fixture
def received() -> Received:
    return Received()


@pytest.fixture
def http_url(received: Received) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.http.append((self.path, dict(self.headers), json.loads(body)))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def smtp_port(received: Received) -> Iterator[int]:
    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.mail.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
            return "250 OK"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@pytest.fixture
def alert_env(monkeypatch, http_url):
    monkeypatch.setenv("TEST_SLACK_WEBHOOK", f"{http_url}/slack/T000/B000")
    monkeypatch.setenv("TEST_HOOK_TOKEN", "Bearer hook-secret")


def alerts_config(http_url: str, smtp_port: int, **slack_extra) -> dict:
    return {
        "ui_base_url": "http://dagster.example:3000/",
        "channels": {
            "team_slack": {"kind": "slack", "webhook_url": {"env": "TEST_SLACK_WEBHOOK"}, **slack_extra},
            "oncall": {
                "kind": "email",
                "host": "127.0.0.1",
                "port": smtp_port,
                "sender": "sync@example.com",
                "recipients": ["oncall@example.com"],
            },
            "pager": {
                "kind": "webhook",
                "url": f"{http_url}/hook",
                "headers": {"Authorization": {"env": "TEST_HOOK_TOKEN"}},
            },
        },
    }


def project_with_alerts(write_project, pg_options, source: str, alerts: dict, streams: dict):
    return write_project({
        "connections": {"erp": {"kind": "postgres", "role": "source", "options": pg_options},
                        "copy": {"kind": "postgres", "role": "target", "options": pg_options}},
        "alerts": alerts,
        "source": "erp", "target": "copy",
        "defaults": {"object": f"{source}_copy.{{stream_table}}", "retries": {"max_retries": 0}},
        "streams": {f"{source}.{name}": options for name, options in streams.items()},
    })


def run_and_evaluate(project, table: str, sensor_name: str, *, with_checks: bool = False):
    defs = build_definitions(project)
    key = dg.AssetKey(list(project.table(table).asset_key))
    checks = [c for c in defs.asset_checks if any(k.asset_key == key for k in c.check_keys)] if with_checks else []
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([defs.get_assets_def(key), *checks], resources=defs.resources, instance=instance,
                            raise_on_error=False)
    event = result.get_run_failure_event() if not result.success else result.get_run_success_event()
    context = dg.build_run_status_sensor_context(sensor_name=sensor_name, dagster_event=event,
                                                 dagster_instance=instance, dagster_run=result.dagster_run)
    sensor = {s.name: s for s in build_alert_sensors(project)}[sensor_name]
    sensor(context.for_run_failure() if not result.success else context)
    return result


def test_a_failed_run_alerts_slack_email_and_webhook_with_table_error_and_link(
        write_project, pg_options, schema_name, alert_env, http_url, smtp_port, received):
    source = schema_name("src")
    project = project_with_alerts(write_project, pg_options, source, alerts_config(http_url, smtp_port),
                                  {"missing_table": {"primary_key": "id"}})
    result = run_and_evaluate(project, f"{source}.missing_table", RUN_FAILURE_SENSOR)
    run_link = f"http://dagster.example:3000/runs/{result.run_id}"

    slack = next(body for path, _, body in received.http if path == "/slack/T000/B000")
    assert f"sync run failed: {source}.missing_table" in slack["text"]
    assert f"source table {source}.missing_table does not exist in connection 'erp'" in slack["text"]
    assert run_link in slack["text"]

    path, headers, hook = next(item for item in received.http if item[0] == "/hook")
    assert headers["Authorization"] == "Bearer hook-secret"
    assert hook["event"] == "run_failure" and hook["tables"] == [f"{source}.missing_table"]
    assert hook["run_url"] == run_link and "ConfigError" in hook["errors"][0]

    (recipients, mail), = received.mail
    assert recipients == ["oncall@example.com"]
    assert mail["Subject"] == f"[sync_assets] sync run failed: {source}.missing_table"
    assert run_link in mail.get_payload()


def test_a_failed_check_in_a_successful_run_alerts_only_subscribed_channels(
        write_project, pg, pg_options, schema_name, alert_env, http_url, smtp_port, received):
    source = schema_name("src")
    pg.execute(f'CREATE TABLE "{source}".items (id bigint PRIMARY KEY, name text)')
    alerts = alerts_config(http_url, smtp_port, events=["run_failure"])
    project = project_with_alerts(write_project, pg_options, source, alerts, {
        "items": {"mode": "incremental", "primary_key": "id", "update_key": "id", "schema_drift": {"added": "warn"}}})
    table = f"{source}.items"
    run_and_evaluate(project, table, FAILED_CHECKS_SENSOR)
    assert received.http == [] and received.mail == []  # everything passed: nothing sent

    pg.execute(f'ALTER TABLE "{source}".items ADD COLUMN colour text')
    result = run_and_evaluate(project, table, FAILED_CHECKS_SENSOR, with_checks=True)
    assert result.success
    assert [path for path, _, _ in received.http] == ["/hook"]  # slack only subscribed to run failures
    hook = received.http[0][2]
    assert hook["event"] == "check_failure"
    assert hook["failed_checks"] == [f"{source}_copy/items:schema_drift (WARN) added: colour"]
    assert received.mail[0][1]["Subject"] == f"[sync_assets] check failed: {source}.items"


def test_an_unreachable_channel_fails_the_tick_after_trying_the_others(
        write_project, pg_options, schema_name, alert_env, http_url, smtp_port, received, monkeypatch):
    monkeypatch.setenv("TEST_SLACK_WEBHOOK", "http://127.0.0.1:1/closed")
    source = schema_name("src")
    project = project_with_alerts(write_project, pg_options, source, alerts_config(http_url, smtp_port),
                                  {"missing_table": {"primary_key": "id"}})
    with pytest.raises(AlertDeliveryFailed, match=r"could not be delivered to: team_slack \(slack\)"):
        run_and_evaluate(project, f"{source}.missing_table", RUN_FAILURE_SENSOR)
    assert [path for path, _, _ in received.http] == ["/hook"] and len(received.mail) == 1


def test_alert_secrets_must_come_from_the_environment(write_project, pg_options, monkeypatch, http_url):
    alerts = alerts_config(http_url, 25)
    alerts["channels"]["team_slack"]["webhook_url"] = "https://hooks.slack.com/services/T/B/secret"
    with pytest.raises(ConfigError, match=r"alert channel 'team_slack': key 'webhook_url' is a secret"):
        project_with_alerts(write_project, pg_options, "s", alerts, {"t": None})


def test_a_missing_alert_secret_fails_that_delivery_not_the_definitions(
        write_project, pg_options, schema_name, monkeypatch, http_url, smtp_port, received):
    """The variables are read when an alert is sent: definitions load without them, the other
    channels still get the alert, and the tick fails naming the channel and the variable."""
    monkeypatch.delenv("TEST_SLACK_WEBHOOK", raising=False)
    monkeypatch.setenv("TEST_HOOK_TOKEN", "Bearer hook-secret")
    source = schema_name("src")
    project = project_with_alerts(write_project, pg_options, source, alerts_config(http_url, smtp_port),
                                  {"missing_table": {"primary_key": "id"}})
    assert project.alerts.channels["team_slack"].webhook_url == "${TEST_SLACK_WEBHOOK}"
    build_definitions(project)
    with pytest.raises(AlertDeliveryFailed, match=r"team_slack \(slack\): alert channel 'team_slack': key "
                                                  r"'webhook_url' needs environment variable TEST_SLACK_WEBHOOK"):
        run_and_evaluate(project, f"{source}.missing_table", RUN_FAILURE_SENSOR)
    assert [path for path, _, _ in received.http] == ["/hook"] and len(received.mail) == 1


def test_a_file_channel_appends_each_alert(write_project, pg_options, schema_name, tmp_path):
    source = schema_name("src")
    project = project_with_alerts(write_project, pg_options, source,
                                  {"channels": {"log": {"kind": "file", "path": "alerts/sync_alerts.log"}}},
                                  {"missing_table": {"primary_key": "id"}})
    path = project.alerts.channels["log"].path
    assert path == str((project.config_dir / "alerts" / "sync_alerts.log").resolve())
    for _ in range(2):
        run_and_evaluate(project, f"{source}.missing_table", RUN_FAILURE_SENSOR)
    text = open(path).read()
    assert text.count(f"[sync_assets] sync run failed: {source}.missing_table") == 2
    assert f"source table {source}.missing_table does not exist in connection 'erp'" in text
