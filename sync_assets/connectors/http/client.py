"""One HTTP JSON API: a pooled ``requests`` session with the connection's headers, auth and TLS
setting, a request rate limit, and retries of what may pass (429, 5xx, timeouts, dropped
connections) with exponential backoff that honours ``Retry-After``.

``requests`` is already in every install (Dagster depends on it) and gives connection pooling,
basic auth and ``Link`` header parsing; the retry loop is ours because it must honour
``Retry-After`` and name the stream, path and page in its final error. Messages carry the path
only: query parameters (an API key may be one) and headers never appear in them.
"""

from __future__ import annotations

import email.utils
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from sync_assets.config.connection_options import HttpOptions
from sync_assets.errors import SourceReadError

log = logging.getLogger("sync_assets")

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class PageRef:
    """Which request this is, for messages: the stream, the URL path and the page number."""

    stream: str
    path: str
    page: int

    def __str__(self) -> str:
        return f"stream {self.stream!r}: GET {self.path} (page {self.page})"


class ApiClient:
    """Requests to one API, paced by ``rate_limit_per_s`` and retried by ``max_retries``."""

    def __init__(self, connection: str, options: HttpOptions, sleep=time.sleep):
        self.connection, self.options, self._sleep = connection, options, sleep
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/json", **options.headers})
        self.session.verify = options.verify_tls
        self._query_auth: dict[str, str] = {}
        auth = options.auth
        if auth is not None and auth.kind == "bearer":
            self.session.headers["Authorization"] = f"Bearer {auth.token}"
        elif auth is not None and auth.kind == "basic":
            self.session.auth = (auth.username or "", auth.password or "")
        elif auth is not None and auth.location == "header":
            self.session.headers[auth.name] = auth.key or ""
        elif auth is not None:
            self._query_auth = {auth.name: auth.key or ""}
        self._last_request = 0.0

    def url(self, path_or_url: str) -> str:
        return urljoin(self.options.base_url.rstrip("/") + "/", path_or_url.lstrip("/")) \
            if not urlsplit(path_or_url).scheme else path_or_url

    def get(self, path_or_url: str, params: dict[str, Any], ref: PageRef) -> requests.Response:
        """The successful response to GET ``path_or_url``, after as many retries as allowed."""
        url = self.url(path_or_url)
        attempt = 0
        while True:
            self._pace()
            problem, wait = self._attempt(url, params, ref)
            if isinstance(problem, requests.Response):
                return problem
            if attempt >= self.options.max_retries:
                raise SourceReadError(f"connection {self.connection!r}, {ref}: {problem}"
                                      + (f" after {attempt} retries" if attempt else ""))
            attempt += 1
            wait = min(wait if wait is not None else self.options.backoff_s * 2 ** (attempt - 1),
                       self.options.max_backoff_s)
            log.warning("%s: %s; retry %d of %d in %.1fs", ref, problem, attempt, self.options.max_retries, wait)
            self._sleep(wait)

    def _attempt(self, url: str, params: dict[str, Any], ref: PageRef) -> tuple[Any, float | None]:
        """(the response, None) on success; else (what went wrong, the wait the server asked for)."""
        try:
            response = self.session.get(url, params={**params, **self._query_auth}, timeout=self.options.timeout_s)
        except requests.Timeout:
            return f"no response within timeout_s={self.options.timeout_s:g}", None
        except requests.ConnectionError as exc:
            return f"connection failed ({type(exc).__name__})", None
        if response.status_code < 400:
            return response, None
        detail = f"HTTP {response.status_code} {response.reason}: {_snippet(response.text)}"
        if response.status_code not in RETRIED_STATUSES:
            raise SourceReadError(f"connection {self.connection!r}, {ref}: {detail} (not retried: the API refuses "
                                  "the request itself)")
        return detail, retry_after_seconds(response.headers.get("Retry-After"))

    def _pace(self) -> None:
        if self.options.rate_limit_per_s:
            gap = 1.0 / self.options.rate_limit_per_s - (time.monotonic() - self._last_request)
            if gap > 0:
                self._sleep(gap)
        self._last_request = time.monotonic()

    def close(self) -> None:
        self.session.close()


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number of seconds, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text[:limit] + ("..." if len(text) > limit else "") if text else "(empty body)"
