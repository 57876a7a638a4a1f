"""Walking an endpoint's pages: ``page`` numbers, ``offset``s, a ``cursor`` from the body, the
``Link`` header's ``rel="next"``, or a ``next_url`` from the body; one request without pagination.

A walk ends at an empty page, at a short page (``page``/``offset``: fewer records than
``page_size``), or where the API gives no next cursor or URL. Each page is parsed JSON; a body
that is not JSON is an error naming the stream, path and page (never retried: the same request
would get the same body). A read walks ahead (``prefetched``): the API prepares and sends the
next page while this one is converted and loaded.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from sync_assets.config.models import HttpEndpoint
from sync_assets.connectors.http.client import ApiClient, PageRef
from sync_assets.connectors.http.records import records_at, value_at
from sync_assets.errors import SourceReadError


@dataclass
class Page:
    number: int
    records: list
    ref: PageRef


def walk(client: ApiClient, endpoint: HttpEndpoint, stream: str, params: dict[str, Any]) -> Iterator[Page]:
    """The endpoint's pages in order, with ``params`` (the stream's own and the run's) on each request."""
    paging = endpoint.pagination
    style = paging.style if paging else None
    size = endpoint.page_size
    query = dict(endpoint.params) | params
    if paging is not None and paging.size_param:
        query[paging.size_param] = size
    target: str = endpoint.path
    number = 1
    while True:
        if style == "page":
            query[paging.param or "page"] = paging.start + number - 1  # type: ignore[union-attr]
        elif style == "offset":
            query[paging.param or "offset"] = (number - 1) * size
        ref = PageRef(stream, urlsplit(client.url(target)).path, number)
        response = client.get(target, query, ref)
        body = parse_json(response.content, f"connection {client.connection!r}, {ref}")
        records = records_at(body, endpoint.records, str(ref))
        yield Page(number, records, ref)
        if not records or style is None:
            return
        if style in ("page", "offset"):
            if len(records) < size:
                return
        elif style == "cursor":
            cursor = value_at(body, paging.next)  # type: ignore[union-attr, arg-type]
            if cursor in (None, ""):
                return
            query[paging.param or "cursor"] = cursor  # type: ignore[union-attr]
        else:
            following = (response.links.get("next", {}).get("url") if style == "link_header"
                         else value_at(body, paging.next))  # type: ignore[union-attr, arg-type]
            if not following:
                return
            target, query = str(following), {}  # the next URL carries its own query
        number += 1


def parse_json(content: bytes, where: str) -> Any:
    """A response body as Python values: orjson (2.5x the standard library here), and the standard
    library for what orjson refuses that is still JSON (integers beyond 64 bits)."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(content)
    except ValueError as exc:
        raise SourceReadError(f"{where}: the response is not valid JSON ({exc})") from None


def prefetched(pages: Iterator[Page], depth: int = 2) -> Iterator[Page]:
    """``pages``, walked ``depth`` pages ahead in a background thread: the API prepares and sends
    the next page while the caller converts and loads this one. The walk's error is raised here;
    the thread stops when the caller stops."""
    ahead: queue.Queue = queue.Queue(maxsize=depth)
    stopped = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stopped.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def walk_ahead() -> None:
        try:
            for page in pages:
                if not put(("page", page)):
                    return
            put(("end", None))
        except BaseException as exc:  # handed to the caller's thread
            put(("error", exc))

    threading.Thread(target=walk_ahead, name="sync_assets-http-pages", daemon=True).start()
    try:
        while True:
            kind, item = ahead.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stopped.set()
