"""The steps that sync tables: one Dagster ``multi_asset`` per group of tables, many tables per step.

Tables that read one source connection and write one target connection (and are not
partitioned) form one step (up to ``TABLES_PER_STEP``): a ``multi_asset`` with one asset per
table (``assets.asset_spec``: keys, groups, deps and metadata as the UI always showed them)
and each table's checks as its check specs (``checks``). ``can_subset``: a run may select any
of its tables or checks, and the step syncs just those. A date-partitioned table is a step of its
own (its partitions are its own).

Inside the step the selected tables sync concurrently (``sync.parallel``: parents first, at most
``max_parallel`` tables per connection, one writer per DuckDB file). Each table is reported as it
finishes: its materialization with metadata, then its checks, evaluated in the same step from the
sync's own figures. A transient error (a dropped connection, a lock timeout) is retried for that
table alone with backoff; a table that still fails is logged with its error and does not
materialize, its children in the step do not start, the others go on, and the step fails at the
end naming every failed table. Checks selected without their table (re-run from the UI) are
evaluated on their own. A dry run logs each table's plan and records nothing.
"""


import contextlib
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime

import dagster as dg
from pydantic import Field

from sync_assets.config.models import ConnectionSpec
from sync_assets.config.project import Project, TableSpec
from sync_assets.connectors import connector_for
from sync_assets.connectors.interface import Connector
from sync_assets.orchestration.assets import (
    TRIGGER_TAG,
    asset_key_of,
    asset_spec,
    chunk_metadata,
    materialization_metadata,
    op_tags,
    partitions_for,
    pool_for,
)
from sync_assets.orchestration.checks import PRIMARY_KEY, CheckScope, check_specs, evaluate
from sync_assets.orchestration.partition_windows import rows_per_window, windows_of
from sync_assets.orchestration.resources import resource_key
from sync_assets.sync.parallel import Slots, TableOutcome, run_concurrently
from sync_assets.sync.planning import RunOptions
from sync_assets.sync.policies import PolicySyncResult, sync_with_policies, writer_lock
from sync_assets.sync.retries import backoff_seconds, is_transient

log = logging.getLogger("sync_assets")


PROGRESS_EVERY_S = 10.0
"""How often a step of many tables logs how many are done."""
QUIET_ABOVE_TABLES = 20
"""A run of more tables than this in one step logs each table's warnings and errors only (its
figures are in its materialization): a log line costs Dagster as much as syncing a small table."""


class SyncRunConfig(dg.Config):
    """Run-time options, set in the launchpad or with ``--config-json`` on the CLI."""

    dry_run: bool = Field(default=False, description="Plan and count, print the SQL; write nothing and "
                                                     "record no materialization.")
    full_refresh: bool = Field(default=False, description="Rebuild incremental tables from scratch "
                                                          "(staging and swap).")
    window_start: str | None = Field(default=None, description="Re-run a watermark window: rows with "
                                                                "update_key > window_start ...")
    window_end: str | None = Field(default=None, description="... and <= window_end (both in the update "
                                                              "key's own type, as text).")
    detect_deletes: bool = Field(default=False, description="Tables with 'deletes': compare every source "
                                                            "key with the target's this run.")


TABLES_PER_STEP = 100
"""At most this many tables per step. Dagster's own cost per event grows with the number of
outputs of the step (each table is one, each of its checks another): 300 tables with 900 checks
in one step took 21 s, as three steps of 100 13 s (bench/many_tables.py)."""


def step_groups(project: Project) -> list[list[TableSpec]]:
    """The tables of each step: unpartitioned tables by (source, target), parents before
    children, in steps of at most ``TABLES_PER_STEP``; each partitioned table alone. When steps
    would wait for one another in a circle (a table's parent is in a step that waits for this
    step: say Customer -> Invoice (partitioned, a step of its own) -> InvoiceLine), each step in
    the circle is split into the tables that wait for another step and the rest; a step that
    cannot be split so gives each of its tables a step."""
    groups: dict[tuple, list[TableSpec]] = {}
    for table in parents_first(project.tables):
        key = (table.source, table.target) if table.partition is None else ("table", table.name)
        groups.setdefault(key, []).append(table)
    steps = [g[i:i + TABLES_PER_STEP] for g in groups.values() for i in range(0, len(g), TABLES_PER_STEP)]
    while circular := _steps_in_a_circle(steps):
        steps = [part for step in steps
                 for part in (_split_after_outside_parents(step) if id(step) in circular else [step])]
    return steps


def _split_after_outside_parents(step: list[TableSpec]) -> list[list[TableSpec]]:
    """The step's tables that need no table of another step (not even through their parents in
    the step), then the others; a table each when that splits nothing."""
    keys = {t.asset_key for t in step}
    waiting: set[tuple[str, ...]] = set()
    for table in step:  # parents first
        if any(parent not in keys or parent in waiting for parent in table.deps):
            waiting.add(table.asset_key)
    first = [t for t in step if t.asset_key not in waiting]
    second = [t for t in step if t.asset_key in waiting]
    return [first, second] if first and second else [[t] for t in step]


def parents_first(tables: tuple[TableSpec, ...]) -> list[TableSpec]:
    """The tables in configuration order, except that each comes after its parents."""
    by_key = {t.asset_key: t for t in tables}
    order: list[TableSpec] = []
    placed: set[tuple[str, ...]] = set()  # asset keys: one stream may feed several targets

    def place(table: TableSpec, path: tuple[tuple[str, ...], ...]) -> None:
        if table.asset_key in placed or table.asset_key in path:  # a cycle is Dagster's to report
            return
        for parent in table.deps:
            if parent in by_key:
                place(by_key[parent], (*path, table.asset_key))
        placed.add(table.asset_key)
        order.append(table)

    for table in tables:
        place(table, ())
    return order


def _steps_in_a_circle(steps: list[list[TableSpec]]) -> set[int]:
    """The ids of the steps on a circle of steps waiting for one another (empty when none)."""
    import graphlib

    step_of = {t.asset_key: id(step) for step in steps for t in step}
    graph: dict[int, set[int]] = {id(step): set() for step in steps}
    for step in steps:
        for table in step:
            graph[id(step)] |= {step_of[d] for d in table.deps if d in step_of and step_of[d] != id(step)}
    try:
        graphlib.TopologicalSorter(graph).prepare()
        return set()
    except graphlib.CycleError as cycle:
        return set(cycle.args[1])


def step_name(tables: list[TableSpec], taken: set[str]) -> str:
    """A readable op name: ``sync_<source>_to_<target>`` (``_2``, ``_3`` ... for further steps of
    the pair), or ``sync_`` and a partitioned table's key."""
    first = tables[0]
    raw = (f"sync_{first.source}_to_{first.target}" if len(tables) > 1 or first.partition is None
           else "sync_" + "_".join(first.asset_key))
    base = name = re.sub(r"[^A-Za-z0-9_]", "_", raw)
    number = 1
    while name in taken:
        number += 1
        name = f"{base}_{number}"
    taken.add(name)
    return name


def build_sync_steps(project: Project,
                     specs: dict[tuple[str, ...], dg.AssetSpec] | None = None) -> list[dg.AssetsDefinition]:
    """The steps of every table; ``specs``: each table's asset spec by its key (``translator.translate``;
    default: ``assets.asset_spec``)."""
    specs = specs or {t.asset_key: asset_spec(project, t) for t in project.tables}
    taken: set[str] = set()
    return [build_sync_step(project, tables, step_name(tables, taken), [specs[t.asset_key] for t in tables])
            for tables in step_groups(project)]


@dataclass
class _TableDone:
    synced: PolicySyncResult
    checks: list[dg.AssetCheckResult] = field(default_factory=list)
    attempts: int = 1
    log: list[logging.LogRecord] = field(default_factory=list)
    window_rows: dict[str, int] | None = None
    """A partition range run: each partition's rows in the target after the sync."""


class _HeldLog(logging.Filter):
    """Holds back the ``sync_assets`` log records of the step's worker threads; the step's own
    thread writes them to the run log when it reports the table. (Dagster's capture of Python
    logs drops records that threads emit while another is being stored: most per-table lines of
    a step went missing.)"""

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        held = getattr(self._local, "held", None)
        if held is None:
            return True
        held.append(record)
        return False

    @contextlib.contextmanager
    def holding(self) -> Iterator[list[logging.LogRecord]]:
        self._local.held = held = []
        try:
            yield held
        finally:
            self._local.held = None

    @contextlib.contextmanager
    def installed(self) -> Iterator["_HeldLog"]:
        logger = logging.getLogger("sync_assets")
        logger.addFilter(self)
        try:
            yield self
        finally:
            logger.removeFilter(self)


class _ThreadConnectors:
    """One source and one target connector per connection and worker thread, each reusing its
    connections across the thread's tables; all closed when the step ends. ``specs``: each
    connection with its secrets, from the run's resources."""

    def __init__(self, specs: dict[str, ConnectionSpec], stack: contextlib.ExitStack):
        self._specs, self._stack = specs, stack
        self._local = threading.local()
        self._guard = threading.Lock()

    def get(self, name: str, read_only: bool = False) -> Connector:
        made = self._local.__dict__.setdefault("connectors", {})
        if (name, read_only) not in made:
            connector = connector_for(name, self._specs[name], read_only=read_only)
            with self._guard:
                self._stack.callback(connector.close)
                self._stack.enter_context(connector.reusing_connections())
            made[(name, read_only)] = connector
        return made[(name, read_only)]


def build_sync_step(project: Project, tables: list[TableSpec], name: str,
                    specs: list[dg.AssetSpec]) -> dg.AssetsDefinition:
    by_key = {asset_key_of(t): t for t in tables}
    partitioned = tables[0].partition is not None
    slots = Slots.of(project)
    connections = sorted({name for t in tables for name in (t.source, t.target)})

    @dg.multi_asset(
        name=name,
        specs=specs,
        check_specs=[spec for t in tables for spec in check_specs(t)],
        can_subset=True,
        required_resource_keys={resource_key(name) for name in connections},
        op_tags=op_tags(tables[0]),
        pool=pool_for(project, tables[0]),
        partitions_def=partitions_for(tables[0]) if partitioned else None,
        backfill_policy=dg.BackfillPolicy.single_run() if partitioned else None,
    )
    def _step(context: dg.AssetExecutionContext, config: SyncRunConfig) -> Iterator:
        selected = [t for key, t in by_key.items() if key in context.selected_asset_keys]
        checks_of: dict[dg.AssetKey, list[str]] = {}
        for check_key in sorted(context.selected_asset_check_keys, key=lambda k: k.to_user_string()):
            checks_of.setdefault(check_key.asset_key, []).append(check_key.name)
        keys, window = _run_partitions(context, tables[0]) if partitioned else ((), None)
        scope = CheckScope(instance=context.instance, partition_window=window, partition_keys=keys)
        options = RunOptions(
            dry_run=config.dry_run, full_refresh=config.full_refresh, window_start=config.window_start,
            window_end=config.window_end, partition_window=window,  # type: ignore[arg-type]
            detect_deletes=config.detect_deletes, trigger=context.run.tags.get(TRIGGER_TAG),
            run_id=context.run.run_id,
        )
        with contextlib.ExitStack() as stack:
            specs = {name: getattr(context.resources, resource_key(name)).connection_spec(project.connections[name])
                     for name in connections}
            connectors = _ThreadConnectors(specs, stack)
            held_log = stack.enter_context(_HeldLog().installed())

            def sync_and_check(table: TableSpec) -> _TableDone:
                source = connectors.get(table.source, read_only=True)
                target = connectors.get(table.target)
                # the checks hold the lock too: a DuckDB file takes one process
                with held_log.holding() as records, writer_lock(table, target, options):
                    try:
                        done = _sync_retrying(table, source, target, options)
                    except BaseException as exc:
                        exc.held_log = list(records)  # type: ignore[attr-defined]
                        raise
                    if not options.dry_run:
                        table_scope = scope
                        if len(keys) > 1:  # a range in one run: each partition's own figures
                            done.window_rows = rows_per_window(table, target, done.synced.result.target_schema,
                                                               windows_of(table, list(keys)), "target")
                            table_scope = replace(scope, target_window_rows=done.window_rows)
                        done.checks = _guarded_checks(table, checks_of.get(asset_key_of(table), []), source,
                                                      target, table_scope, done.synced)
                done.log = records
                return done

            failed: list[str] = []
            finished = 0
            started = reported = time.monotonic()
            for outcome in run_concurrently(selected, sync_and_check, slots, _blocks_children):
                finished += 1
                if not outcome.ok:
                    failed.append(_report_failure(context, outcome))
                    continue
                yield from _report_success(context, outcome.table, outcome.done, options,  # type: ignore[arg-type]
                                           quiet=len(selected) > QUIET_ABOVE_TABLES)
                if len(selected) > 1 and (time.monotonic() - reported > PROGRESS_EVERY_S or finished == len(selected)):
                    reported = time.monotonic()
                    context.log.info(f"{finished}/{len(selected)} tables done ({len(failed)} failed) "
                                     f"in {reported - started:.1f}s")
            synced_keys = {asset_key_of(t) for t in selected}
            for key, names in checks_of.items():
                if key not in synced_keys:  # checks selected without their table: queried from scratch
                    table = by_key[key]
                    for name in names:
                        yield evaluate(table, name, connectors.get(table.source, read_only=True),
                                       connectors.get(table.target), scope)
        if failed:
            raise dg.Failure(description=f"{len(failed)} of {len(selected)} tables failed:\n" + "\n".join(failed),
                             metadata={"failed_tables": len(failed), "tables": len(selected)})

    return _step


def _run_partitions(context: dg.AssetExecutionContext, table: TableSpec
                    ) -> tuple[tuple[str, ...], tuple[datetime, datetime] | None]:
    """The partition keys and the time window a run of a partitioned table covers; none for a
    run without a partition (its checks alone, which then cover every partition). Read from the
    run's partition (range) and the table's own partitions: a run of the checks alone for one
    partition has no partitioned asset selected, so Dagster's own window is not defined."""
    if not (context.has_partition_key or context.has_partition_key_range):
        return (), None
    partitions_def = partitions_for(table)
    keys = tuple(partitions_def.get_partition_keys_in_range(context.partition_key_range))
    first, last = (partitions_def.time_window_for_partition_key(k) for k in (keys[0], keys[-1]))
    return keys, (first.start, last.end)


def _sync_retrying(table: TableSpec, source: Connector, target: Connector, options: RunOptions) -> _TableDone:
    """Sync one table; a transient error is retried (this table only) after a backoff."""
    attempt = 0
    while True:
        try:
            return _TableDone(sync_with_policies(table, source, target, options), attempts=attempt + 1)
        except Exception as exc:
            if not is_transient(exc) or attempt >= table.retries.max_retries:
                raise
            wait = backoff_seconds(table.retries, attempt)
            log.warning(f"{table.name}: transient error, retry {attempt + 1} of "
                        f"{table.retries.max_retries} in {wait:.1f}s: {exc}")
            time.sleep(wait)
            attempt += 1


def _guarded_checks(table: TableSpec, names: list[str], source: Connector, target: Connector,
                    scope: CheckScope, synced: PolicySyncResult) -> list[dg.AssetCheckResult]:
    """The table's selected checks; one that cannot be evaluated fails with its error (the
    table's own materialization stands)."""
    results = []
    for name in names:
        try:
            results.append(evaluate(table, name, source, target, scope, synced))
        except Exception as exc:
            log.error(f"{table.name}: check {name} could not be evaluated: {exc}")
            results.append(dg.AssetCheckResult(
                asset_key=asset_key_of(table), check_name=name, passed=False,
                description=f"could not be evaluated: {exc}", metadata={"error": str(exc)}))
    return results


def _blocks_children(done: _TableDone) -> str | None:
    for check in done.checks:
        if check.check_name == PRIMARY_KEY and not check.passed:
            return f"blocking check {PRIMARY_KEY} failed"
    return None


def _report_failure(context: dg.AssetExecutionContext, outcome: TableOutcome) -> str:
    table = outcome.table
    if outcome.not_started is not None:
        context.log.warning(f"{table.name}: {outcome.not_started}")
        return f"- {table.name}: {outcome.not_started}"
    error = outcome.error
    _replay(context, getattr(error, "held_log", []))
    context.log.error(f"{table.name} failed: {type(error).__name__}: {error}",
                      exc_info=(type(error), error, error.__traceback__))  # type: ignore[arg-type]
    return f"- {table.name}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def _report_success(context: dg.AssetExecutionContext, table: TableSpec, done: _TableDone,
                    options: RunOptions, quiet: bool) -> Iterator:
    _replay(context, done.log, quiet)  # the engine's own lines: progress and figures
    result = done.synced.result
    if options.dry_run:
        context.log.info(f"DRY RUN for {table.name}: {result.expected_rows:,} rows would be read with:\n"
                         f"{result.source_sql}\n" + "\n".join(result.statements))
        return
    metadata = materialization_metadata(result)
    if done.attempts > 1:
        metadata["attempts"] = done.attempts
    if done.synced.chunk is not None:
        metadata.update(chunk_metadata(done.synced.chunk))
        context.log.info(f"{table.name}: {done.synced.chunk.describe()}")
    if done.window_rows is None:
        yield dg.MaterializeResult(asset_key=asset_key_of(table), metadata=metadata)
    else:
        yield from _per_partition(table, done.window_rows, metadata)
    yield from done.checks


def _per_partition(table: TableSpec, window_rows: dict[str, int], run: dict) -> Iterator[dg.AssetMaterialization]:
    """One materialization per partition of a range run, with that partition's own row count;
    the run's figures (rows, duration, SQL) once, as the range's."""
    keys = list(window_rows)
    shared = {"range": f"{keys[0]}...{keys[-1]} ({len(keys)} partitions, one run)",
              "range_rows_written": run["rows_written"], "range_duration_s": run["duration_s"],
              **{k: run[k] for k in ("strategy", "write", "bulk_path", "source_sql") if k in run}}
    for key, rows in window_rows.items():
        yield dg.AssetMaterialization(asset_key=asset_key_of(table), partition=key, metadata={
            "dagster/partition_row_count": rows, "rows_written": rows, **shared})


def _replay(context: dg.AssetExecutionContext, records: list[logging.LogRecord], quiet: bool = False) -> None:
    for record in records:
        if not quiet or record.levelno >= logging.WARNING:
            context.log.log(record.levelno, record.getMessage())
