"""The YAML configuration's models: every section and key a config file may hold, validated.

These pydantic models describe one file as written (connections, replications with their defaults
and streams, schedules, alerts, lineage, catalog); ``loader`` reads files into them and ``streams``
resolves each stream into a ``TableSpec``. Unknown keys are errors, so a typo is caught at load.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

DEFAULT_LOCK_TIMEOUT = timedelta(minutes=5)
"""How long a run waits for another run writing the same target table, unless a stream says."""



def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


Names = Annotated[list[str], BeforeValidator(_one_or_many), WithJsonSchema(
    {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]})]
"""Column or stream names: one as a string, several as a list (``primary_key: id``)."""

Secret = Annotated[str, WithJsonSchema({"anyOf": [
    {"type": "string"},
    {"type": "object", "properties": {"env": {"type": "string"}}, "required": ["env"], "additionalProperties": False},
]})]
"""A secret: written ``{env: NAME}`` (the loader keeps ``${NAME}`` until it is used)."""

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

def _valid_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'") from None
    return value


def parse_duration(value: Any) -> timedelta:
    """``"10 minutes"`` (or a number of seconds) as a timedelta."""
    parsed = parse_lookback(value)
    if isinstance(parsed, (int, float)):
        return timedelta(seconds=parsed)
    if parsed is None:
        raise ValueError("a duration is required")
    return parsed


class ChangeSensorSpec(_Strict):
    """Poll this source's tables for changes (one cheap query per table per tick)."""

    minimum_interval: str | int = "60 seconds"
    """Time between ticks: ``"5 minutes"`` or a number of seconds."""

    @field_validator("minimum_interval")
    @classmethod
    def _valid_interval(cls, value: Any) -> Any:
        parse_duration(value)
        return value

    @property
    def interval_seconds(self) -> int:
        return max(1, int(parse_duration(self.minimum_interval).total_seconds()))


class ConnectionSpec(_Strict):
    """One database. Kind-specific keys are checked by the connector's own ``options`` model."""

    kind: Literal["postgres", "duckdb", "mssql", "snowflake", "http"]
    role: Literal["source", "target", "both"] = "both"
    protected: bool = False
    max_concurrent_reads: int = Field(default=4, ge=1)
    max_parallel: int = Field(default=4, ge=1)
    """Tables one step syncs at once from this connection (and into it, for a database target;
    a DuckDB file takes one writer, so writes into it go one at a time whatever this says)."""
    change_sensor: ChangeSensorSpec | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _sources_only(cls, data: Any) -> Any:
        """Snowflake and HTTP APIs are sources only: their connections default to, and must keep,
        role source."""
        if isinstance(data, dict) and data.get("kind") in ("snowflake", "http"):
            data = {"role": "source", **data}
            if data["role"] != "source":
                raise ValueError(f"a {data['kind']} connection is a source only: role must be 'source'")
        return data

    @model_validator(mode="after")
    def _sensor_needs_sql(self) -> ConnectionSpec:
        if self.kind == "http" and self.change_sensor is not None:
            raise ValueError("change_sensor polls MAX(update_key) with SQL, which an HTTP API has not; "
                             "schedule the API's streams instead")
        return self

    @property
    def writable(self) -> bool:
        return self.role != "source" and not self.protected


class PartitionSpec(_Strict):
    """Date partitioning: each Dagster partition overwrites exactly its time window."""

    column: str
    granularity: Literal["hourly", "daily", "weekly", "monthly"] = "daily"
    start: date | datetime
    end_offset: int = 0
    timezone: str = "UTC"


LOOKBACK_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}


def parse_lookback(value: Any) -> timedelta | int | float | None:
    """``"7 days"`` / ``"2 hours"`` become a timedelta; a bare number is a numeric key offset."""
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+?)s?\s*", str(value).lower())
    if not match or match.group(2) not in LOOKBACK_UNITS:
        raise ValueError(
            f"lookback {value!r} is not a number or '<n> <unit>' with unit one of "
            f"{', '.join(u + 's' for u in LOOKBACK_UNITS)}"
        )
    return timedelta(seconds=float(match.group(1)) * LOOKBACK_UNITS[match.group(2)])


class SyncWindow(_Strict):
    """A daily time window in which a table may sync; ``19:00-07:00`` wraps past midnight."""

    start: time
    end: time
    timezone: str = "UTC"

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        """``"19:00-07:00"`` is short for ``{start: "19:00", end: "07:00"}`` (UTC)."""
        if isinstance(data, str):
            match = re.fullmatch(r"\s*(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*", data)
            if not match:
                raise ValueError(f"window {data!r} is not 'HH:MM-HH:MM'")
            return {"start": match.group(1), "end": match.group(2)}
        return data

    @field_validator("timezone")
    @classmethod
    def _valid_tz(cls, value: str) -> str:
        return _valid_timezone(value)

    @model_validator(mode="after")
    def _not_empty(self) -> SyncWindow:
        if self.start == self.end:
            raise ValueError("window start and end are equal; leave the window out to allow any time")
        return self

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(ZoneInfo(self.timezone)).time()
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def describe(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M} {self.timezone}"


class ChunkSpec(_Strict):
    """Copy a large table over several runs: at most ``rows`` rows, or one ``range`` of the
    update key, beyond the target's watermark per run, until the copy has caught up."""

    rows: int | None = Field(default=None, ge=1)
    range: str | int | float | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ChunkSpec:
        if (self.rows is None) == (self.range is None):
            raise ValueError("give exactly one of 'rows' (rows per run) or 'range' (update-key span per run)")
        if self.range is not None:
            parse_lookback(self.range)
        return self

    @property
    def key_range(self) -> timedelta | int | float | None:
        return parse_lookback(self.range)


class SchemaDriftPolicy(_Strict):
    """What a difference between source and target columns does: ``add`` a new column, ``warn``
    (the schema_drift check fails with severity WARN and the sync goes on) or ``fail`` (the sync
    refuses to write and the check fails with severity ERROR)."""

    added: Literal["add", "warn", "fail"] | None = None
    dropped: Literal["warn", "fail"] = "warn"
    type_changed: Literal["warn", "fail"] = "warn"


class RetrySpec(_Strict):
    """Retries for transient errors (connection drops, deadlocks, serialization failures) only."""

    max_retries: int = Field(default=3, ge=0)
    delay: str | int = "10 seconds"
    max_delay: str | int = "10 minutes"

    @field_validator("delay", "max_delay")
    @classmethod
    def _valid_duration(cls, value: Any) -> Any:
        parse_duration(value)
        return value


class DeleteDetection(_Strict):
    """Mirror rows deleted at the source (incremental and smart tables): compare the complete set
    of source keys with the target's and delete (``hard``) or mark (``soft``: ``_sync_deleted_at``)
    the target rows whose key is gone, in the same transaction as the merge. Runs on every run, on
    every ``every``-th run, or only on runs of the named ``schedule``."""

    detect: Literal["hard", "soft"]
    every: int | None = Field(default=None, ge=1)
    schedule: str | None = None

    @model_validator(mode="after")
    def _one_cadence(self) -> DeleteDetection:
        if self.every is not None and self.schedule is not None:
            raise ValueError("give 'every' (runs) or 'schedule' (a schedule's name), not both")
        return self


class VerifySpec(_Strict):
    """The ``rows_match`` check: ``checksum`` compares per-bucket row counts and checksums of the
    synced slice in both databases; ``full`` also bisects to the differing rows and names them."""

    mode: Literal["checksum", "full"] = "checksum"
    every: int | None = Field(default=None, ge=1)
    """Compare on every N-th evaluation of the check; the others repeat the last verdict."""


def _known_type_names(types: dict[str, str]) -> dict[str, str]:
    from sync_assets.types.declared import parse_type

    for column, text in types.items():
        try:
            parse_type(text)
        except ValueError as exc:
            raise ValueError(f"column {column!r}: {exc}") from None
    return types


class Pagination(_Strict):
    """How an HTTP stream walks its pages: ``page`` (a page number, from ``start``), ``offset``
    (rows skipped), ``cursor`` (the next cursor read from the body at ``next``), ``link_header``
    (the ``rel="next"`` URL of the ``Link`` header) or ``next_url`` (a URL read from the body at
    ``next``). Pages end at an empty page, a short page (``page``/``offset``), or no next cursor/URL."""

    style: Literal["page", "offset", "cursor", "link_header", "next_url"]
    param: str | None = None
    """The query parameter carrying the page number, offset or cursor (default: page, offset, cursor)."""
    size_param: str | None = "limit"
    """The query parameter carrying ``page_size`` (None: the API's own page size)."""
    next: str | None = None
    """``cursor``/``next_url``: the dotted path of the next cursor or URL in the response body."""
    start: int = 1
    """``page``: the number of the first page."""

    @model_validator(mode="after")
    def _next_where_needed(self) -> Pagination:
        if self.style in ("cursor", "next_url") and not self.next:
            raise ValueError(f"pagination style {self.style!r} needs 'next': the dotted path of the next "
                             f"{'cursor' if self.style == 'cursor' else 'URL'} in the response body")
        return self


class HttpEndpoint(_Strict):
    """Where an HTTP stream's records come from (stream keys of a ``kind: http`` source)."""

    path: str
    params: dict[str, Any] = Field(default_factory=dict)
    records: str | None = None
    """The dotted path (``data.items``, or ``$.data.items``) of the record list in a response;
    None: the response body is the list."""
    pagination: Pagination | None = None
    page_size: int = Field(default=1000, ge=1)
    since_param: str | None = None
    """The query parameter an incremental run sets to the target's watermark on ``update_key``."""
    column_types: dict[str, str] = Field(default_factory=dict)
    """Declared column types (``int64``, ``decimal(12,2)``, ``timestamptz``...): they win over inference."""

    @field_validator("column_types")
    @classmethod
    def _known_types(cls, value: dict[str, str]) -> dict[str, str]:
        return _known_type_names(value)


class TimezoneShift(_Strict):
    """``from``: the zone a timestamp without one is in (default UTC); ``to``: the zone it is given."""

    from_: str = Field(default="UTC", alias="from")
    to: str = "UTC"

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        return {"to": data} if isinstance(data, str) else data

    @field_validator("from_", "to")
    @classmethod
    def _valid_tz(cls, value: str) -> str:
        return _valid_timezone(value)


class DateFormats(_Strict):
    """``parse_dates``: strptime formats tried in order; the column becomes a date, or a timestamp
    when a format reads a time (``%H``...), zoned when it reads an offset (``%z``)."""

    formats: list[str] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"formats": [data]}
        return {"formats": data} if isinstance(data, list) else data


class TransformSpec(_Strict):
    """Column transforms, applied to every batch in this order (vectorised, in DuckDB over Arrow).
    Every step after ``rename`` names columns by their new names."""

    rename: dict[str, str] = Field(default_factory=dict)
    cast: dict[str, str] = Field(default_factory=dict)
    """Column -> type (``int64``, ``decimal(12,2)``, ``date``, ``timestamptz``, ``string``, ...)."""
    cast_errors: Literal["fail", "null"] = "fail"
    """A value ``cast`` or ``parse_dates`` cannot convert: ``fail`` makes the row bad (``on_bad_rows``
    fails the run or quarantines it), ``null`` stores NULL instead."""
    trim: Names = Field(default_factory=list)
    empty_to_null: Names = Field(default_factory=list)
    lowercase: Names = Field(default_factory=list)
    uppercase: Names = Field(default_factory=list)
    timezone: dict[str, TimezoneShift] = Field(default_factory=dict)
    parse_dates: dict[str, DateFormats] = Field(default_factory=dict)
    computed: dict[str, str] = Field(default_factory=dict)
    """New column -> a DuckDB SQL expression over the transformed columns (``amount * rate``)."""
    drop: Names = Field(default_factory=list)

    @field_validator("cast")
    @classmethod
    def _known_types(cls, value: dict[str, str]) -> dict[str, str]:
        return _known_type_names(value)


class ColumnRules(_Strict):
    """Rules one column's values must keep; a row breaking one is a bad row (``on_bad_rows``)."""

    not_null: bool = False
    unique: bool = False
    min: int | float | str | None = None
    max: int | float | str | None = None
    regex: str | None = None
    """A regular expression every value matches as a whole (RE2 syntax)."""
    one_of: list[Any] | None = None
    max_length: int | None = Field(default=None, ge=0)

    @field_validator("regex")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"regex {value!r} does not compile: {exc}") from None
        return value


def _valid_cron(value: str) -> str:
    from dagster._utils.schedules import is_valid_cron_string

    if not is_valid_cron_string(value):
        raise ValueError(f"{value!r} is not a valid cron expression (five fields, e.g. '0 19 * * *')")
    return value


class AutomationSpec(_Strict):
    """Dagster's declarative automation instead of a named schedule: ``on_cron`` (the table is
    requested once per cron tick, after its parents have updated) or ``eager`` (whenever a parent
    updates). Evaluated by Dagster's automation sensor (``default_automation_condition_sensor``)."""

    on_cron: str | None = None
    timezone: str = "UTC"
    eager: bool = False

    @field_validator("on_cron")
    @classmethod
    def _valid_on_cron(cls, value: str | None) -> str | None:
        return None if value is None else _valid_cron(value)

    @field_validator("timezone")
    @classmethod
    def _valid_tz(cls, value: str) -> str:
        return _valid_timezone(value)

    @model_validator(mode="after")
    def _one_condition(self) -> AutomationSpec:
        if (self.on_cron is not None) == self.eager:
            raise ValueError("set exactly one of on_cron: '<cron>' and eager: true")
        return self


class StreamOptions(_Strict):
    """Per-table settings; every key may also be given once under ``defaults``."""

    sql: str | None = None
    object: str | None = None
    mode: Literal["full_refresh", "incremental", "smart", "date_partitioned", "hash_delta"] | None = None
    primary_key: Names | None = None
    update_key: str | None = None
    lookback: str | int | float | None = None
    partition: PartitionSpec | None = None
    batch_size: int | None = Field(default=None, ge=1)
    columns: Names | None = None
    exclude_columns: Names | None = None
    exclude_tables: list[str] | None = None
    where: str | None = None
    limit: int | None = Field(default=None, ge=0)
    group: str | None = None
    description: str | None = None
    owners: list[str] | None = None
    """Who answers for the table, shown on its asset: e-mail addresses or ``team:<name>``."""
    tags: dict[str, str] | None = None
    """Asset tags (``domain: finance``), filterable in the catalog; a stream's tags are added to
    the defaults' (a key set in both takes the stream's value)."""
    asset_key: list[str] | None = None
    schema_changes: Literal["evolve", "fail"] | None = None
    load_method: Literal["auto", "rename", "switch"] | None = None
    """How a full load replaces an existing target: ``rename`` builds a new table and renames it
    into place; ``switch`` (SQL Server) keeps the target's indexes, partition scheme and
    constraints and switches the new rows in; ``auto``: switch when a SQL Server target is
    partitioned, else rename."""
    disabled: bool = False
    schedule: str | None = None
    """Name of a schedule under the top-level ``schedules`` key."""
    automation: AutomationSpec | None = None
    """Dagster's automation condition instead of a schedule (not both on one stream)."""
    source_asset: bool | None = None
    """Show the source table as an external asset upstream of the copy (default true). Each costs
    Dagster an input of the step: about 0.4 s per 1,000 tables when definitions load."""
    window: SyncWindow | None = None
    chunk: ChunkSpec | None = None
    late_partitions: int | None = Field(default=None, ge=1)
    """Date-partitioned tables: re-sync the last N partitions on each schedule or sensor tick."""
    freshness: str | int | None = None
    """Maximum age of the last successful sync (``"6 hours"``), checked by a freshness check."""
    schema_drift: SchemaDriftPolicy | None = None
    retries: RetrySpec | None = None
    lock_timeout: str | int | None = None
    """How long a run waits while another run writes the same target table (``"5 minutes"``, the
    default, or seconds) before it fails naming the table and the other run."""
    on_change: bool = True
    """Include this table in its source connection's change sensor (when it has one)."""
    deletes: DeleteDetection | None = None
    verify: VerifySpec | None = None
    on_bad_rows: Literal["fail", "quarantine"] | None = None
    """What a row the target cannot take does: ``fail`` the run (nothing written), or go to the
    target's ``_sync_dead_letters`` table (``quarantine``) while the other rows load."""
    depends_on: Names | None = None
    """Streams to load before this one, besides the foreign keys in ``lineage``."""
    transform: TransformSpec | None = None
    validate_: dict[str, ColumnRules] | None = Field(default=None, alias="validate")
    """Column -> rules its values must keep (after ``transform``)."""
    parent_key: dict[str, str] | None = None
    """Column -> ``parent_stream.column``: every non-NULL value must exist in the parent's target."""
    orphans: Literal["fail", "quarantine", "wait"] | None = None
    """A row whose ``parent_key`` value its parent lacks: ``fail`` the run, ``quarantine`` it, or
    ``wait``: keep it pending in the dead letters and try it again on later runs."""
    orphan_attempts: int | None = Field(default=None, ge=1)
    """``orphans: wait``: runs that try a pending row before it stays failed (default 5)."""
    http: HttpEndpoint | None = None
    """A ``kind: http`` source: the endpoint, pagination and record path of this stream."""
    ignore_dependencies: Names | None = None
    """Parent streams whose foreign keys to ignore: how a foreign-key cycle is broken."""

    @field_validator("lookback")
    @classmethod
    def _valid_lookback(cls, value: Any) -> Any:
        parse_lookback(value)
        return value

    @field_validator("owners")
    @classmethod
    def _valid_owners(cls, value: list[str] | None) -> list[str] | None:
        for owner in value or []:
            if not (re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", owner) or re.fullmatch(r"team:[A-Za-z0-9_-]+", owner)):
                raise ValueError(f"owner {owner!r} is neither an e-mail address nor team:<name> "
                                 "(letters, digits, _ and -)")
        return value

    @field_validator("tags")
    @classmethod
    def _valid_tags(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        part = r"[A-Za-z0-9_.-]{1,63}"
        for key, text in (value or {}).items():
            if not re.fullmatch(f"({part}/)?{part}", key):
                raise ValueError(f"tag key {key!r}: letters, digits, '_', '-' and '.', at most 63, "
                                 "with an optional 'prefix/'")
            if not re.fullmatch(r"[A-Za-z0-9_.-]{0,63}", str(text)):
                raise ValueError(f"tag {key!r}: value {text!r} may hold letters, digits, '_', '-' and '.' only, "
                                 "at most 63")
        return value

    @field_validator("freshness", "lock_timeout")
    @classmethod
    def _valid_freshness(cls, value: Any) -> Any:
        if value is not None:
            parse_duration(value)
        return value


class ScheduleSpec(_Strict):
    """A named cron schedule; streams opt in with ``schedule: NAME`` (per table, or per group
    through a replication's ``defaults``)."""

    cron: str
    timezone: str = "UTC"
    description: str | None = None

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        return _valid_cron(value)

    @field_validator("timezone")
    @classmethod
    def _valid_tz(cls, value: str) -> str:
        return _valid_timezone(value)


ALERT_EVENTS = ("run_failure", "check_failure", "freshness")


AlertEvent = Literal["run_failure", "check_failure", "freshness"]


class _Channel(_Strict):
    events: list[AlertEvent] = Field(default_factory=lambda: list(ALERT_EVENTS))
    timeout_s: int = Field(default=30, ge=1)


class SlackChannel(_Channel):
    kind: Literal["slack"]
    webhook_url: Secret


class EmailChannel(_Channel):
    kind: Literal["email"]
    host: str
    port: int = 25
    starttls: bool = False
    ssl: bool = False
    username: str | None = None
    password: Secret | None = None
    sender: str
    recipients: list[str] = Field(min_length=1)


class WebhookChannel(_Channel):
    kind: Literal["webhook"]
    url: str
    headers: dict[str, Secret] = Field(default_factory=dict)
    """Header values are secrets: write each as ``{env: NAME}``."""


class FileChannel(_Channel):
    """Appends each alert to a local file (one block per alert, newest last): the demo's channel,
    and a place a log shipper can pick alerts up from."""

    kind: Literal["file"]
    path: str
    """Relative to the YAML file that configures it."""


AlertChannel = Annotated[SlackChannel | EmailChannel | WebhookChannel | FileChannel, Field(discriminator="kind")]


class AlertsSpec(_Strict):
    ui_base_url: str = "http://localhost:3000"
    """Where the Dagster UI is served; messages link to ``{ui_base_url}/runs/{run_id}``."""
    channels: dict[str, AlertChannel] = Field(default_factory=dict)


class ForeignKeySpec(_Strict):
    """One foreign key found in a source catalog: ``child`` references ``parent``."""

    connection: str
    child: str
    parent: str
    constraint: str | None = None
    columns: list[str] = Field(default_factory=list)


class LineageSpec(_Strict):
    foreign_keys: list[ForeignKeySpec] = Field(default_factory=list)


class ReplicationFile(_Strict):
    source: str
    target: str
    defaults: StreamOptions = StreamOptions()
    streams: dict[str, StreamOptions | None]


class CelerySpec(_Strict):
    """The Celery broker and result backend the Celery executor and its workers share."""

    broker: str = "redis://127.0.0.1:6379/0"
    backend: str = "redis://127.0.0.1:6379/1"


class ExecutionSpec(_Strict):
    """How a run executes its steps (one ``execution:`` block per project; ``SYNC_ASSETS_EXECUTOR``
    overrides ``executor``). See docs/deployment.md."""

    executor: Literal["in_process", "multiprocess", "celery", "k8s"] = "in_process"
    max_concurrent: int = Field(default=4, ge=1)
    """Steps at once (``multiprocess``)."""
    celery: CelerySpec = CelerySpec()
    single_machine: bool = False
    """``celery``: every worker runs on this machine, so a DuckDB target is one file they take
    turns on. Without it a distributed executor refuses DuckDB targets."""


class ConfigFile(_Strict):
    connections: dict[str, ConnectionSpec] = Field(default_factory=dict)
    replications: list[ReplicationFile] = Field(default_factory=list)
    schedules: dict[str, ScheduleSpec] = Field(default_factory=dict)
    alerts: AlertsSpec | None = None
    execution: ExecutionSpec | None = None
    lineage: LineageSpec | None = None
    catalog: dict[str, dict[str, list[str]]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _single_replication(cls, data: Any) -> Any:
        """A file may hold one replication at top level (Sling's shape) or a list of them."""
        if isinstance(data, dict) and "streams" in data:
            data = dict(data)
            single = {k: data.pop(k) for k in ("source", "target", "defaults", "streams") if k in data}
            data["replications"] = [*data.get("replications", []), single]
        return data
