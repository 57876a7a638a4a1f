"""Values from the environment: ``{env: NAME}`` and ``${NAME:-default}`` substitution, and the rule
that secrets (passwords, tokens, webhook URLs) are never written in a config file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from sync_assets.errors import ConfigError

PATH_KEYS = frozenset({"path", "private_key_file"})
"""Connection options holding file paths; relative ones are relative to their YAML file."""


SECRET_KEYS = frozenset({"password", "private_key_passphrase", "token", "webhook_url"})
CONNECTION_SECRET_KEYS = SECRET_KEYS | {"key"}
"""Connection options (an HTTP connection's ``auth`` too) read from the environment only when a
connector is opened (``connectors.connector_for``), not when definitions load."""


ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def resolve_env(value: Any, where: str, key: str = "", deferred: frozenset[str] = frozenset()) -> Any:
    """Replace ``{env: NAME}`` and ``${NAME}`` / ``${NAME:-default}`` by environment values. Values
    of ``deferred`` keys stay references (``${NAME}``), resolved by a later call: a connection's
    secrets are read when a run opens it, so a worker that never opens it need not have them."""
    if isinstance(value, dict) and set(value) == {"env"}:
        name = value["env"]
        if key in deferred:
            return "${" + name + "}"
        if name not in os.environ:
            raise ConfigError(f"{where}: key {key!r} needs environment variable {name}, which is not set")
        return os.environ[name]
    if isinstance(value, dict):
        return {k: resolve_env(v, where, k, deferred) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env(v, where, key, deferred) for v in value]
    if isinstance(value, str) and key in deferred:
        return value
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"{where}: key {key!r} needs environment variable {name}, which is not set")

        return ENV_PATTERN.sub(substitute, value)
    return value


def check_secrets(options: dict[str, Any], where: str, secret_keys: frozenset[str] = SECRET_KEYS) -> None:
    for key, value in options.items():
        if key in secret_keys and not (isinstance(value, dict) and set(value) == {"env"}):
            if not (isinstance(value, str) and ENV_PATTERN.fullmatch(value)):
                raise ConfigError(
                    f"{where}: key {key!r} is a secret and must come from the environment: "
                    f"write it as {{env: VARIABLE_NAME}}"
                )


def resolve_alert_secrets(path: Path, raw: dict[str, Any]) -> None:
    """Alert channels keep webhook URLs, passwords and header values in the environment. Those
    stay references (``${NAME}``) until an alert is sent (``resolve_env`` then): a variable missing
    fails that delivery, naming the channel and the variable, not the loading of definitions."""
    alerts = raw.get("alerts")
    if not isinstance(alerts, dict) or not isinstance(alerts.get("channels"), dict):
        return
    for name, channel in alerts["channels"].items():
        if not isinstance(channel, dict):
            continue
        where = f"{path}: alert channel {name!r}"
        check_secrets(channel, where)
        headers = channel.get("headers")
        resolved = resolve_env({k: v for k, v in channel.items() if k != "headers"}, where, deferred=SECRET_KEYS)
        if isinstance(headers, dict):
            check_secrets(headers, f"{where} headers", frozenset(headers))
            resolved["headers"] = resolve_env(headers, f"{where} headers", deferred=frozenset(headers))
        if resolved.get("kind") == "file" and isinstance(resolved.get("path"), str):
            resolved["path"] = str((path.parent / resolved["path"]).resolve())
        alerts["channels"][name] = resolved
