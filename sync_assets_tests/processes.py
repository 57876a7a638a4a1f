"""Helpers for tests (and docs/screenshots.py) that start servers and workers in their own
process group: stopping the whole group, children included."""

from __future__ import annotations

import os
import signal
import socket
import subprocess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(process: subprocess.Popen, timeout_s: float = 30) -> None:
    """SIGTERM to the process's group (started with ``start_new_session=True``); SIGKILL after ``timeout_s``."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
