"""Each connection kind's ``options``: one model per engine, checked when the config loads.

They live in config, not with the connectors, so loading a project validates every connection
without importing a database driver; each connector reads its options back through its model.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sync_assets.errors import ConfigError


class PostgresOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = 5432
    database: str
    user: str = "postgres"
    password: str | None = None
    sslmode: str = "prefer"
    connect_timeout: int = 15
    statement_timeout_s: int | None = None
    application_name: str = "sync_assets"


class DuckDBOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    memory_limit: str = "64MB"
    threads: int | None = None
    string_compression: bool = True
    """False skips DuckDB's dictionary+FSST string compression on loads: about 1.15-1.6x faster
    bulk loads of text-heavy tables (less CPU), for files about 60% larger (measured in bench/)."""
    open_wait_s: float = 15.0
    """How long opening the file waits while another process holds it (DuckDB takes one writing
    process, or any number of reading ones, per file): a source written now and then by its own
    application is read between its writes."""


class MssqlOptions(BaseModel):
    """``options`` of a ``kind: mssql`` connection."""

    model_config = ConfigDict(extra="forbid")
    server: str
    port: int = 1433
    database: str
    auth: Literal["sql", "windows"] = "sql"
    user: str | None = None
    password: str | None = None
    driver: str | None = None
    """An ODBC driver name registered with unixODBC, or a path to the driver library."""
    encrypt: Literal["yes", "no", "strict"] = "yes"
    trust_server_certificate: bool = False
    application_intent: Literal["readonly", "readwrite"] | None = None
    """Default: ``readonly`` for a ``role: source`` connection, else ``readwrite``."""
    login_timeout_s: int = Field(default=15, ge=1)
    query_timeout_s: int = Field(default=300, ge=0)
    max_text_bytes: int = Field(default=8000, ge=1)
    """Largest value of an ``(n)varchar(max)``/``xml`` column the reader takes (larger ones fail)."""
    max_binary_bytes: int = Field(default=1 << 20, ge=1)
    """Largest value of a ``varbinary(max)``/spatial column the reader takes (larger ones fail)."""
    tds_version: str = "7.4"
    """FreeTDS only: the TDS protocol version."""

    @model_validator(mode="after")
    def _credentials_match_auth(self) -> MssqlOptions:
        if self.auth == "sql" and (not self.user or self.password is None):
            raise ValueError("auth 'sql' needs user and password (password as {env: VARIABLE})")
        if self.auth == "windows" and self.password is not None:
            raise ValueError("auth 'windows' uses the Kerberos ticket of the process; remove password")
        return self


class SnowflakeOptions(BaseModel):
    """Connection options; ``password`` and ``private_key_passphrase`` come from the environment."""

    model_config = ConfigDict(extra="forbid")
    account: str
    user: str
    password: str | None = None
    private_key_file: str | None = None
    private_key_passphrase: str | None = None
    warehouse: str | None = None
    database: str
    schema_: str = Field(default="PUBLIC", alias="schema")
    role: str | None = None
    login_timeout: int = Field(default=60, ge=1)
    network_timeout: int = Field(default=300, ge=1)
    """Seconds one HTTP request to Snowflake may take (the driver's ``request_timeout``)."""
    statement_timeout_s: int | None = Field(default=None, ge=1)
    host: str | None = None
    """Override the account's host name (private link, or a local emulator in tests)."""
    port: int | None = None
    protocol: str | None = None
    unload_min_rows: int | None = Field(default=None, ge=0)
    """Read unfiltered streams of at least this many rows through a stage as Parquet; None: never."""
    unload_max_file_mb: int = Field(default=256, ge=1)
    unload_local_dir: str | None = None
    """Where unloaded Parquet files are downloaded (default: the system temporary folder)."""

    @model_validator(mode="after")
    def _one_authentication(self) -> SnowflakeOptions:
        if (self.password is None) == (self.private_key_file is None):
            raise ValueError("give exactly one of 'password' or 'private_key_file' (key-pair authentication)")
        if self.private_key_passphrase and not self.private_key_file:
            raise ValueError("'private_key_passphrase' needs 'private_key_file'")
        return self

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        return super().model_dump(by_alias=True, **kwargs)


class HttpAuth(BaseModel):
    """``bearer`` (``token``), ``basic`` (``username``, ``password``) or ``api_key`` (``key`` sent as
    header or query parameter ``name``); secrets as ``{env: NAME}``."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["bearer", "basic", "api_key"]
    token: str | None = None
    username: str | None = None
    password: str | None = None
    key: str | None = None
    name: str = "X-API-Key"
    location: Literal["header", "query"] = "header"

    @model_validator(mode="after")
    def _secrets_for_kind(self) -> HttpAuth:
        needed = {"bearer": ("token",), "basic": ("username", "password"), "api_key": ("key",)}[self.kind]
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"auth {self.kind!r} needs {' and '.join(missing)}")
        return self


class HttpOptions(BaseModel):
    """``options`` of a ``kind: http`` connection: a JSON API read page by page."""

    model_config = ConfigDict(extra="forbid")
    base_url: str
    headers: dict[str, str] = Field(default_factory=dict)
    """Sent with every request; values may be secrets (``{env: NAME}``)."""
    auth: HttpAuth | None = None
    timeout_s: float = Field(default=30, gt=0)
    max_retries: int = Field(default=5, ge=0)
    """Retries of a request answered 429 or 5xx, or lost on the way (exponential backoff; ``Retry-After`` wins)."""
    backoff_s: float = Field(default=1.0, ge=0)
    """The first retry's wait; each further retry waits twice as long (at most ``max_backoff_s``)."""
    max_backoff_s: float = Field(default=60, ge=0)
    rate_limit_per_s: float | None = Field(default=None, gt=0)
    """At most this many requests per second."""
    verify_tls: bool = True


OPTIONS_BY_KIND: dict[str, type[BaseModel]] = {
    "postgres": PostgresOptions, "duckdb": DuckDBOptions, "mssql": MssqlOptions, "snowflake": SnowflakeOptions,
    "http": HttpOptions,
}


def validate_options(kind: str, options: dict[str, Any], where: str) -> dict[str, Any]:
    """Check a connection's ``options`` against its connector's model; errors name the key."""
    if kind not in OPTIONS_BY_KIND:
        raise ConfigError(f"{where}: connection kind {kind!r} is not supported yet; "
                          f"supported: {', '.join(OPTIONS_BY_KIND)}")
    model = OPTIONS_BY_KIND[kind]
    try:
        return model.model_validate(options).model_dump()
    except ValidationError as exc:
        problems = "; ".join(
            f"key 'options.{'.'.join(str(p) for p in e['loc'])}': "
            f"{'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"{where}: {problems}") from None
