"""Many tables synced at once in one process: a bounded worker pool with per-connection limits.

``run_concurrently`` starts each table's work on a thread as soon as

- every parent it has among the tables of this run (foreign keys, ``depends_on``, ``parent_key``)
  has finished well: a child of a failed or blocked parent is not started, and says why;
- its source connection has a free read slot and its target connection a free write slot
  (``max_parallel`` per connection; a DuckDB file takes one writer, so its write slots are 1).

Outcomes are yielded in the order tables finish, so the caller reports each table as soon as it
is done; one table's failure stops nothing but its own children. The threads share nothing but
the connectors, whose sessions each take their own connection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, TypeVar

from sync_assets.config.project import Project, TableSpec

Done = TypeVar("Done")


@dataclass
class TableOutcome(Generic[Done]):
    table: TableSpec
    done: Done | None = None
    """What the work returned (None when it failed or never started)."""
    error: BaseException | None = None
    not_started: str | None = None
    """Why the table was not started (a parent failed), or None."""

    @property
    def ok(self) -> bool:
        return self.error is None and self.not_started is None


@dataclass(frozen=True)
class Slots:
    """How many tables may read one source connection and write one target connection at once."""

    reads: Mapping[str, int]
    writes: Mapping[str, int]

    @classmethod
    def of(cls, project: Project) -> Slots:
        return cls(reads={name: spec.max_parallel for name, spec in project.connections.items()},
                   writes={name: 1 if spec.kind == "duckdb" else spec.max_parallel
                           for name, spec in project.connections.items()})

    def width(self, tables: list[TableSpec]) -> int:
        """Threads worth starting: no more than the tables, nor than the busiest connections allow."""
        sources = {t.source for t in tables}
        targets = {t.target for t in tables}
        return max(1, min(len(tables), sum(self.reads[s] for s in sources), sum(self.writes[t] for t in targets)))


def run_concurrently(tables: list[TableSpec], work: Callable[[TableSpec], Done], slots: Slots,
                     blocks_children: Callable[[Done], str | None] = lambda done: None,
                     ) -> Iterator[TableOutcome[Done]]:
    """Run ``work(table)`` for every table, parents first, within ``slots``; yield each outcome as
    it finishes. ``blocks_children(done)`` says why a finished table's children must not run
    (a failed blocking check), or None."""
    keys = {t.asset_key: t for t in tables}  # asset keys name tables: one stream may feed several targets
    parents = {t.asset_key: [keys[d] for d in t.deps if d in keys] for t in tables}
    waiting = list(tables)
    finished: dict[tuple[str, ...], str | None] = {}
    """Asset key -> None when the table finished well, else why its children may not run."""
    reading: dict[str, int] = {}
    writing: dict[str, int] = {}
    running: dict[Future, TableSpec] = {}
    stop = threading.Event()

    def guarded(table: TableSpec) -> Done:
        if stop.is_set():
            raise RuntimeError("the run stopped before this table started")
        return work(table)

    with ThreadPoolExecutor(max_workers=slots.width(tables), thread_name_prefix="sync") as pool:
        try:
            while waiting or running:
                for table in list(waiting):
                    blocked = [(p.name, finished[p.asset_key]) for p in parents[table.asset_key]
                               if finished.get(p.asset_key) is not None]
                    if blocked:
                        waiting.remove(table)
                        finished[table.asset_key] = f"parent {blocked[0][0]} did not load"
                        yield TableOutcome(table, not_started=f"not started: parent {blocked[0][0]}: {blocked[0][1]}")
                        continue
                    if any(p.asset_key not in finished for p in parents[table.asset_key]):
                        continue
                    if (reading.get(table.source, 0) >= slots.reads[table.source]
                            or writing.get(table.target, 0) >= slots.writes[table.target]):
                        continue
                    waiting.remove(table)
                    reading[table.source] = reading.get(table.source, 0) + 1
                    writing[table.target] = writing.get(table.target, 0) + 1
                    running[pool.submit(guarded, table)] = table
                if not running:
                    if waiting:  # nothing runs and nothing could start: the parents form a cycle
                        raise ValueError("tables wait for one another: " + ", ".join(t.name for t in waiting))
                    continue
                completed, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in completed:
                    table = running.pop(future)
                    reading[table.source] -= 1
                    writing[table.target] -= 1
                    error = future.exception()
                    if error is not None:
                        finished[table.asset_key] = str(error).splitlines()[0] if str(error) else type(error).__name__
                        yield TableOutcome(table, error=error)
                        continue
                    done = future.result()
                    finished[table.asset_key] = blocks_children(done)
                    yield TableOutcome(table, done=done)
        finally:
            stop.set()  # the caller stopped early (an interrupted step): queued work does not start
