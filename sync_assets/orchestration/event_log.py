"""Dagster's SQLite event log, with its database connections kept between events.

Dagster's ``SqliteEventLogStorage`` builds a new SQLAlchemy engine, opens the file, and disposes
of both for every event it stores or reads (10-13 ms per event on a small machine). A step that
syncs 300 tables records about 2,000 events (materializations, check evaluations, their planned
events, one log line per table), so that alone took longer than the syncs. This storage is the
same storage, the same files and the same schema; it only keeps one engine per database file
(the index and the most recent runs' files), in write-ahead-log mode, which makes an event
about 2 ms. Dagster's own lock
still serialises access within the process; other processes (the webserver, the daemon) share
the files through SQLite's locking as before.

``dagster.yaml`` selects it through the instance class (``instance_class: SyncAssetsInstance``),
whose only change to Dagster's instance is this default storage under ``$DAGSTER_HOME``: the
same SQLite files Dagster's default storage keeps. A ``storage:`` block (PostgreSQL for
production) replaces it as it replaces Dagster's default.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
import yaml
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from dagster._serdes import ConfigurableClassData
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

KEPT_RUN_FILES = 8
"""Engines kept for the most recently used run databases (plus the index's, kept always)."""
BUSY_TIMEOUT_S = 15  # Dagster's own SQLITE_BUSY_TIMEOUT_SECONDS


def _write_ahead_log(dbapi_connection: Any, _record: Any) -> None:
    """WAL journal, synced at checkpoints: a commit no longer waits for the disk (readers in other
    processes see every commit, and a crash of the process loses nothing; a power cut may lose the
    last events, never the synced tables, which live in the target databases)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class SyncAssetsInstance(dg.DagsterInstance):
    """Dagster's instance, whose default storage keeps its SQLite connections (``PooledSqliteStorage``)."""

    @classmethod
    def config_schema(cls) -> dict:
        return {}

    @staticmethod
    def config_defaults(base_dir: str) -> Mapping[str, Any]:
        return {**InstanceRef.config_defaults(base_dir), "storage": ConfigurableClassData(
            __name__, "PooledSqliteStorage", yaml.dump({"base_dir": base_dir}, default_flow_style=False))}


class PooledSqliteStorage(DagsterSqliteStorage):
    """Dagster's default SQLite storage with ``PooledSqliteEventLogStorage`` as its event log."""

    def __init__(self, base_dir: str, inst_data: Any = None):
        super().__init__(base_dir, inst_data=inst_data)
        self._event_log_storage = PooledSqliteEventLogStorage(self._event_log_storage._base_dir)  # noqa: SLF001

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> PooledSqliteStorage:
        return cls(inst_data=inst_data, **config_value)

    @property
    def event_storage_data(self) -> ConfigurableClassData | None:
        return ConfigurableClassData(__name__, "PooledSqliteEventLogStorage", yaml.dump(
            {"base_dir": self._event_log_storage._base_dir}, default_flow_style=False))  # noqa: SLF001


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    def __init__(self, base_dir: str, inst_data: Any = None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._schema_yes: set[tuple[str, str]] = set()
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> PooledSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        """The shard's engine (under ``_db_lock``), created and its schema initialised on first use."""
        engine = self._engines.get(shard)
        if engine is not None:
            self._engines.move_to_end(shard)
            return engine
        engine = create_engine(self.conn_string_for_shard(shard),
                               connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False})
        event.listen(engine, "connect", _write_ahead_log)
        if shard not in self._initialized_dbs:
            self._initdb(engine)
            self._initialized_dbs.add(shard)
        self._engines[shard] = engine
        run_files = [name for name in self._engines if name != "index"]
        while len(run_files) > KEPT_RUN_FILES:
            self._engines.pop(run_files.pop(0)).dispose()
        return engine

    @contextlib.contextmanager
    def _connect(self, shard: str) -> Iterator[Any]:
        with self._db_lock:
            with self._engine(shard).connect() as conn, conn.begin():
                yield conn

    # Dagster asks these on every check evaluation and asset lookup, each time inspecting the
    # schema through a new engine; a migration only ever adds, so a yes is kept.
    def has_table(self, table_name: str) -> bool:
        # asked while a connection holds ``_db_lock`` (Dagster's own way, which takes no lock)
        return self._known_yes(("table", table_name), lambda: super(PooledSqliteEventLogStorage, self)
                               .has_table(table_name))

    def has_secondary_index(self, name: str) -> bool:
        return self._known_yes(("secondary_index", name), lambda: super(PooledSqliteEventLogStorage, self)
                               .has_secondary_index(name))

    def has_asset_key_col(self, column_name: str) -> bool:
        return self._known_yes(("asset_key_column", column_name), lambda: super(PooledSqliteEventLogStorage, self)
                               .has_asset_key_col(column_name))

    def _known_yes(self, question: tuple[str, str], ask: Any) -> bool:
        if question in self._schema_yes:
            return True
        answer = bool(ask())
        if answer:
            self._schema_yes.add(question)
        return answer

    def upgrade(self) -> None:
        self._schema_yes.clear()
        super().upgrade()

    def _forget(self, shard: str) -> None:
        with self._db_lock:
            engine = self._engines.pop(shard, None)
            if engine is not None:
                engine.dispose()

    def delete_events(self, run_id: str) -> None:
        self._forget(run_id)
        super().delete_events(run_id)

    def wipe(self) -> None:
        self._schema_yes.clear()
        for shard in list(self._engines):
            self._forget(shard)
        super().wipe()

    def dispose(self) -> None:
        for shard in list(self._engines):
            self._forget(shard)
        super().dispose()
