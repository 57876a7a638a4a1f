"""fakesnow in server mode, as a subprocess that the real snowflake-connector-python talks to.

fakesnow (Snowflake emulated on DuckDB) 0.12.1 does not import next to snowflake-connector-python
5.x, which the project uses, so it runs from its own virtual environment (connector < 4 there):

    uv venv .venv-fakesnow -p 3.11
    VIRTUAL_ENV=.venv-fakesnow uv pip install -r sync_assets_tests/fakesnow_requirements.txt
    export SYNC_ASSETS_FAKESNOW_PYTHON=$PWD/.venv-fakesnow/bin/python

This file is both the server script (run by that interpreter: ``python fakesnow_server.py PORT``)
and the test-side launcher (``FakesnowServer``). Only the standard library is imported at the
top, because each side lacks the other's packages.

Connector 5.x (its Rust core) refuses a login response without a master token, which fakesnow
0.12.1 does not send; the script adds the missing login fields (``masterToken``, ``sessionId``
and validity times) to fakesnow's own response and changes nothing else. Queries, binds, Arrow results and
errors are fakesnow's.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PYTHON_ENV = "SYNC_ASSETS_FAKESNOW_PYTHON"
STARTUP_LIMIT_S = 60


def serve(port: int) -> None:
    """Run fakesnow's HTTP server on 127.0.0.1:``port`` until interrupted (fakesnow's venv)."""
    import fakesnow.server
    import uvicorn
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.responses import Response

    class CompleteLoginResponse(BaseHTTPMiddleware):
        async def dispatch(self, request, call_next):
            response = await call_next(request)
            if request.url.path != "/session/v1/login-request":
                return response
            payload = json.loads(b"".join([chunk async for chunk in response.body_iterator]))
            if payload.get("success"):
                data = payload["data"]
                data.setdefault("masterToken", "master-" + data["token"])
                data.setdefault("validityInSeconds", 3600)
                data.setdefault("masterValidityInSeconds", 14400)
                data.setdefault("sessionId", abs(hash(data["token"])) % (1 << 62))
            return Response(json.dumps(payload), status_code=response.status_code, media_type="application/json")

    fakesnow.server.app.add_middleware(CompleteLoginResponse)
    uvicorn.run(fakesnow.server.app, host="127.0.0.1", port=port, log_level="warning")


@dataclass
class FakesnowServer:
    """A running fakesnow server process and the connection options that reach it."""

    process: subprocess.Popen
    port: int
    log_path: Path

    def options(self, database: str, schema: str) -> dict:
        return {"account": "fakesnow", "user": "fake", "database": database, "schema": schema,
                "host": "127.0.0.1", "port": self.port, "protocol": "http",
                "login_timeout": 10, "network_timeout": 30}

    @classmethod
    def python(cls) -> str:
        """The fakesnow environment's interpreter; a clear error (not a skip) when it is missing."""
        python = os.environ.get(PYTHON_ENV)
        problem = None
        if not python:
            problem = f"{PYTHON_ENV} is not set"
        elif not Path(python).exists():
            problem = f"{PYTHON_ENV}={python} does not exist"
        else:
            check = subprocess.run([python, "-c", "import fakesnow.server, uvicorn"], capture_output=True, text=True)
            if check.returncode:
                problem = f"{python} cannot import fakesnow's server: {check.stderr.strip().splitlines()[-1:]}"
        if problem:
            raise RuntimeError(
                f"the Snowflake tests need fakesnow's server from its own environment, and {problem}. "
                "Create it with:\n  uv venv .venv-fakesnow -p 3.11\n"
                "  VIRTUAL_ENV=.venv-fakesnow uv pip install -r sync_assets_tests/fakesnow_requirements.txt\n"
                f"  export {PYTHON_ENV}=$PWD/.venv-fakesnow/bin/python"
            )
        return python

    @classmethod
    @contextlib.contextmanager
    def started(cls, log_dir: Path) -> Iterator[FakesnowServer]:
        python = cls.python()
        port = _free_port()
        log_path = log_dir / "fakesnow.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen([python, __file__, str(port)], stdout=log, stderr=subprocess.STDOUT)
        server = cls(process, port, log_path)
        try:
            server._wait_until_listening()
            yield server
        finally:
            server._stop()

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + STARTUP_LIMIT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"fakesnow server exited with {self.process.returncode}: {self.log_path.read_text()}"
                )
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.1)
        raise RuntimeError(f"fakesnow server did not listen on port {self.port}: {self.log_path.read_text()}")

    def _stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    serve(int(sys.argv[1]))
