"""Alerts to Slack, email, generic webhooks and local files on run failures, failed checks and stale tables.

Channels are configured under ``alerts`` in the YAML (secrets such as the Slack webhook URL, the
SMTP password and webhook header values come from environment variables, read when an alert is
sent: a missing one fails that delivery, not the code location). Two run-status
sensors, both running by default, produce the alerts:

- ``sync_alerts_on_run_failure``: a failed run names its tables, each failed step's error and any
  failed check, with a link to the run in the UI (``alerts.ui_base_url``);
- ``sync_alerts_on_failed_checks``: a successful run with failed checks (non-blocking checks do
  not fail a run) sends one alert; a failed ``freshness_check`` is a freshness breach.

Delivery uses only the standard library (``urllib.request``, ``smtplib``, a file append). Every channel is
tried; if any delivery fails, the sensor tick fails naming the channels, so it shows in the UI.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import dagster as dg

from sync_assets.config.environment import resolve_env
from sync_assets.config.models import AlertChannel, AlertsSpec, EmailChannel, FileChannel, SlackChannel, WebhookChannel
from sync_assets.config.project import Project
from sync_assets.errors import SyncAssetsError

FRESHNESS_CHECK_NAME = "freshness_check"
"""The name Dagster's ``build_last_update_freshness_checks`` gives its checks."""
RUN_FAILURE_SENSOR = "sync_alerts_on_run_failure"
FAILED_CHECKS_SENSOR = "sync_alerts_on_failed_checks"


class AlertDeliveryFailed(SyncAssetsError):
    """One or more channels could not be reached; the message names each and why."""


@dataclass
class Alert:
    event: str
    """``run_failure``, ``check_failure`` or ``freshness``."""
    tables: list[str]
    errors: list[str]
    run_id: str
    run_url: str
    failed_checks: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        what = {"run_failure": "sync run failed", "check_failure": "check failed",
                "freshness": "table is stale"}[self.event]
        return f"[sync_assets] {what}: {', '.join(self.tables) or 'run ' + self.run_id[:8]}"

    def text(self) -> str:
        lines = [self.title]
        lines += [f"error: {e}" for e in self.errors]
        lines += [f"failed check: {c}" for c in self.failed_checks]
        lines.append(f"run: {self.run_url}")
        return "\n".join(lines)


def _post_json(url: str, payload: dict, headers: dict[str, str], timeout_s: int) -> None:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        response.read()


def _send_email(channel: EmailChannel, alert: Alert) -> None:
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = alert.title, channel.sender, ", ".join(channel.recipients)
    message.set_content(alert.text())
    smtp_class = smtplib.SMTP_SSL if channel.ssl else smtplib.SMTP
    with smtp_class(channel.host, channel.port, timeout=channel.timeout_s) as smtp:
        if channel.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if channel.username:
            smtp.login(channel.username, channel.password or "")
        smtp.send_message(message)


def _append_to_file(channel: FileChannel, alert: Alert) -> None:
    path = Path(channel.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC {alert.text()}\n\n")


def deliver(channel: AlertChannel, alert: Alert, name: str = "") -> None:
    """Send ``alert`` through ``channel``, its secrets read from the environment now."""
    channel = type(channel).model_validate(resolve_env(channel.model_dump(), f"alert channel {name!r}"))
    if isinstance(channel, FileChannel):
        _append_to_file(channel, alert)
    elif isinstance(channel, SlackChannel):
        _post_json(channel.webhook_url, {"text": alert.text()}, {}, channel.timeout_s)
    elif isinstance(channel, WebhookChannel):
        _post_json(channel.url, {"title": alert.title, **asdict(alert)}, channel.headers, channel.timeout_s)
    else:
        _send_email(channel, alert)


def send(alerts: AlertsSpec, alert: Alert) -> list[str]:
    """Deliver ``alert`` to every channel subscribed to its event; returns the channels used."""
    used, problems = [], []
    for name, channel in alerts.channels.items():
        if alert.event not in channel.events:
            continue
        try:
            deliver(channel, alert, name)
            used.append(name)
        except Exception as exc:
            problems.append(f"{name} ({channel.kind}): {exc}")
    if problems:
        raise AlertDeliveryFailed(f"alert '{alert.title}' could not be delivered to: " + "; ".join(problems))
    return used


def run_url(alerts: AlertsSpec, run_id: str) -> str:
    return f"{alerts.ui_base_url.rstrip('/')}/runs/{run_id}"


def _table_names(project: Project, instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The stream names of the assets the run planned to materialize."""
    names = {tuple(t.asset_key): t.name for t in project.tables}
    planned = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
    keys = sorted({entry.dagster_event.asset_key for entry in planned}, key=lambda k: k.to_user_string())
    return [names.get(tuple(k.path), k.to_user_string()) for k in keys]


def _failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, str]]:
    """(check name, ``asset/check: description``) for each failed check evaluation of the run."""
    failed = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data
        if not evaluation.passed:
            label = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
            details = evaluation.description or ", ".join(
                f"{k}={getattr(v, 'value', v)}" for k, v in list(evaluation.metadata.items())[:4])
            failed.append((evaluation.check_name, f"{label} ({evaluation.severity.value}) {details}".strip()))
    return failed


def _root_error(error) -> str:
    """The user's exception inside Dagster's step-execution wrapper, as ``Class: message``."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


def build_alert_sensors(project: Project) -> list[dg.SensorDefinition]:
    alerts = project.alerts
    if alerts is None or not alerts.channels:
        return []

    @dg.run_failure_sensor(name=RUN_FAILURE_SENSOR, default_status=dg.DefaultSensorStatus.RUNNING,
                           description="Sends run failures to the configured alert channels.")
    def on_run_failure(context: dg.RunFailureSensorContext):
        run = context.dagster_run
        errors = [f"{event.step_key}: {_root_error(event.event_specific_data.error)}"
                  for event in context.get_step_failure_events() if event.event_specific_data.error]
        if not errors:
            errors = [context.failure_event.message or "run failed"]
        alert = Alert("run_failure", _table_names(project, context.instance, run.run_id), errors, run.run_id,
                      run_url(alerts, run.run_id),
                      [text for _, text in _failed_checks(context.instance, run.run_id)])
        context.log.info(f"alert sent to: {', '.join(send(alerts, alert)) or 'no subscribed channel'}")

    @dg.run_status_sensor(name=FAILED_CHECKS_SENSOR, run_status=dg.DagsterRunStatus.SUCCESS,
                          default_status=dg.DefaultSensorStatus.RUNNING,
                          description="Sends failed checks (including freshness breaches) of successful runs.")
    def on_failed_checks(context: dg.RunStatusSensorContext):
        run = context.dagster_run
        failed = _failed_checks(context.instance, run.run_id)
        if not failed:
            return
        stale = [text for name, text in failed if name == FRESHNESS_CHECK_NAME]
        other = [text for name, text in failed if name != FRESHNESS_CHECK_NAME]
        tables = (_table_names(project, context.instance, run.run_id)
                  or sorted({text.split(":")[0] for _, text in failed}))
        for event, texts in (("freshness", stale), ("check_failure", other)):
            if texts:
                alert = Alert(event, tables, [], run.run_id, run_url(alerts, run.run_id), texts)
                context.log.info(f"{event} alert sent to: {', '.join(send(alerts, alert)) or 'no subscribed channel'}")

    return [on_run_failure, on_failed_checks]
