"""A small ERP-like JSON API on 127.0.0.1, for the HTTP source's demo, tests and benchmark.

Two entities, ``customers`` (parents) and ``orders`` (children, ``customer_id``), generated from
their ids (so a million records cost no memory), served at ``/api/<style>/<entity>`` in every
pagination style the HTTP source reads: ``page``, ``offset``, ``cursor``, ``link`` (``Link``
header), ``next`` (a next URL in the body) and ``all`` (one response, no paging). Records sit
at ``data.items``; ``updated_since`` returns only records changed since then.

The data is as an ERP gives it: padded and mixed-case text, numbers as text, dates in two
formats, nested objects, a field NULL on the first page, balances that are whole on the first
page and fractional later, a few invalid e-mail addresses and amounts ("n/a"), and orders whose
customer does not exist (yet).

Tests drive it: ``require`` auth (bearer, basic, API key in a header or the query), ``fault``
(a status with ``Retry-After`` for N requests of a page, a malformed body, a slow page),
``change`` or ``delete`` records and ``add_customers``. Run it alone with
``python -m sync_assets.demo.erp_api --port 8765``.
"""

from __future__ import annotations

import argparse
import base64
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)
COUNTRIES = ["de", "FR", " nl ", "De", "fr"]
FIRST_PAGE = 1000
"""Customers up to this id are on the first page of a default walk: whole balances, no vip_since."""


def customer(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "name": f"  Customer {i} ",
        "email": f"customer {i} at example" if i % 97 == 0 else f"Customer.{i}@Example.COM" if i % 11 else "",
        "country": COUNTRIES[i % len(COUNTRIES)],
        "balance": i * 10 if i <= FIRST_PAGE else i * 10 + 0.25,
        "vip_since": None if i <= FIRST_PAGE else f"{1 + i % 28:02d}.03.2024",
        "address": {"city": f"City {i % 97}", "zip": f"{10000 + i % 89999}"},
        "updated_at": (BASE_TIME + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
    }


def order(i: int, customers: int) -> dict[str, Any]:
    """Order ``i`` of a shop that had ``customers`` customers when its orders were generated."""
    return {
        "id": i,
        "customer_id": 1 + (i * 7) % (customers + customers // 10 + 1),  # about 1 in 11 has no customer yet
        "amount": f"{(i % 500) + 0.5:.2f}" if i % 101 else "n/a",
        "currency": "EUR" if i % 3 else "eur",
        "rate": 1.0 + (i % 5) / 10,
        "ordered_on": f"2024-03-{1 + i % 28:02d}",
        "lines": [{"sku": f"SKU-{i % 13}", "qty": 1 + i % 4}],
        "updated_at": (BASE_TIME + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
    }


@dataclass
class Fault:
    status: int | None = None
    retry_after: str | None = None
    times: int = 1
    malformed: bool = False
    delay_s: float = 0.0


@dataclass
class ErpData:
    customers: int = 200
    orders: int = 1000
    changed: dict[str, dict[int, dict[str, Any]]] = field(default_factory=lambda: {"customers": {}, "orders": {}})
    deleted: dict[str, set[int]] = field(default_factory=lambda: {"customers": set(), "orders": set()})
    first_customers: int = 0
    """Customers when the orders were generated (``add_customers`` does not move their references)."""

    def __post_init__(self) -> None:
        self.first_customers = self.first_customers or self.customers

    def record(self, entity: str, i: int) -> dict[str, Any]:
        base = customer(i) if entity == "customers" else order(i, self.first_customers)
        return base | self.changed[entity].get(i, {})

    def ids(self, entity: str, since: str | None) -> range | list[int]:
        count = self.customers if entity == "customers" else self.orders
        gone = self.deleted[entity]
        if since is None:
            return [i for i in range(1, count + 1) if i not in gone] if gone else range(1, count + 1)
        moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
        first = max(1, int((moment - BASE_TIME).total_seconds()))
        changed = [i for i, c in self.changed[entity].items() if c.get("updated_at", "") >= since and i < first]
        return [i for i in [*sorted(changed), *range(first, count + 1)] if i not in gone]


class ErpApi:
    """The server, its data and the faults and auth tests ask of it; a context manager."""

    def __init__(self, customers: int = 200, orders: int = 1000, port: int = 0, cache_pages: bool = False):
        self.data = ErpData(customers, orders)
        self.page_cache: dict[str, tuple[bytes, dict[str, str]]] | None = {} if cache_pages else None
        """Rendered pages by request path (a benchmark serves each page at the speed of a socket)."""
        self.auth: tuple[str, ...] | None = None
        self.faults: dict[int, Fault] = {}
        self.requests: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once, not after a delayed ACK

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802  (the standard library's name)
                api.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> ErpApi:
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- what tests ask of it ------------------------------------------------------------------
    def require(self, *auth: str) -> None:
        """``("bearer", token)``, ``("basic", user, password)``, ``("header", name, key)``,
        ``("query", name, key)``, or nothing: no auth."""
        self.auth = auth or None

    def fault(self, page: int, **fault: Any) -> None:
        self.faults[page] = Fault(**fault)

    def add_customers(self, count: int) -> None:
        """New customers after the last (orders already reference some of them: their orphans' parents)."""
        self.data.customers += count

    def delete(self, entity: str, i: int) -> None:
        self.data.deleted[entity].add(i)

    def change(self, entity: str, i: int, **values: Any) -> None:
        """Change record ``i`` (its ``updated_at`` moves to now unless given)."""
        stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        self.data.changed[entity].setdefault(i, {}).update({"updated_at": stamp} | values)

    # -- serving -------------------------------------------------------------------------------
    def handle(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.requests.append(request.path)
        segments = parts.path.strip("/").split("/")
        if len(segments) != 3 or segments[0] != "api" or segments[2] not in ("customers", "orders"):
            return self._send(request, 404, {"error": f"no such endpoint {parts.path}"})
        if not self._authorized(request, query):
            return self._send(request, 401, {"error": "unauthorized"})
        style, entity = segments[1], segments[2]
        limit = int(query.get("limit", 100))
        offset = {"page": (int(query.get("page", 1)) - 1) * limit, "offset": int(query.get("offset", 0)),
                  "cursor": int(base64.b64decode(query["cursor"]).decode()) if query.get("cursor") else 0,
                  "link": (int(query.get("page", 1)) - 1) * limit, "next": (int(query.get("page", 1)) - 1) * limit,
                  "all": 0}.get(style)
        if offset is None:
            return self._send(request, 404, {"error": f"no pagination style {style!r}"})
        page = offset // max(limit, 1) + 1
        fault = self.faults.get(page)
        if fault is not None and fault.times > 0:
            fault.times -= 1
            time.sleep(fault.delay_s)
            if fault.malformed:
                return self._send(request, 200, b'{"data": {"items": [{"id": 1,')
            if fault.status is not None:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                return self._send(request, fault.status, {"error": "try later"}, headers)
        if self.page_cache is not None and request.path in self.page_cache:
            return self._send(request, 200, *self.page_cache[request.path])
        ids = self.data.ids(entity, query.get("updated_since"))
        chosen = ids if style == "all" else ids[offset:offset + limit]
        items = [self.data.record(entity, i) for i in chosen]
        body: dict[str, Any] = {"data": {"items": items}, "meta": {"total": len(ids)}}
        headers = {}
        more = style != "all" and offset + limit < len(ids)
        following = {k: v for k, v in query.items() if k not in ("page", "offset", "cursor")} | {"page": page + 1}
        if style == "cursor":
            body["meta"]["next_cursor"] = base64.b64encode(str(offset + limit).encode()).decode() if more else None
        elif style == "next":
            body["meta"]["next"] = f"{self.url}{parts.path}?{urlencode(following)}" if more else None
        elif style == "link" and more:
            headers["Link"] = f'<{self.url}{parts.path}?{urlencode(following)}>; rel="next"'
        payload = json.dumps(body).encode()
        if self.page_cache is not None:
            self.page_cache[request.path] = (payload, headers)
        self._send(request, 200, payload, headers)

    def _authorized(self, request: BaseHTTPRequestHandler, query: dict[str, str]) -> bool:
        if self.auth is None:
            return True
        kind, *secret = self.auth
        if kind == "bearer":
            return request.headers.get("Authorization") == f"Bearer {secret[0]}"
        if kind == "basic":
            expected = base64.b64encode(f"{secret[0]}:{secret[1]}".encode()).decode()
            return request.headers.get("Authorization") == f"Basic {expected}"
        if kind == "header":
            return request.headers.get(secret[0]) == secret[1]
        return query.get(secret[0]) == secret[1]

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            request.send_response(status)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                request.send_header(name, value)
            request.end_headers()
            request.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the demo ERP API on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--cache-pages", action="store_true", help="render each page once, then serve it from memory")
    args = parser.parse_args()
    with ErpApi(args.customers, args.orders, args.port, args.cache_pages) as api:
        print(f"ERP API on {api.url}/api/<page|offset|cursor|link|next|all>/<customers|orders>", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
