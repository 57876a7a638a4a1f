"""The exceptions sync_assets raises, each meant to be read by a person.

Every message names what it is about: the config file and stream for configuration errors,
the table and column (and row key, where there is one) for data and schema errors.
"""


class SyncAssetsError(Exception):
    """Base class for every error this package raises on purpose."""


class ConfigError(SyncAssetsError):
    """The YAML configuration is invalid; the message names the file, the stream and the key."""


class SchemaMismatchError(SyncAssetsError):
    """Source and target columns cannot be reconciled; the message names table and column."""


class DataError(SyncAssetsError):
    """A value cannot be loaded; the message names the table, the column and the row key."""


class ConnectionFailed(SyncAssetsError):
    """A database could not be reached, or refused the login; the message carries the server's.
    Retried unless the server refused for good (authentication, unknown database: ``retries``)."""


class SourceReadError(SyncAssetsError):
    """Reading a source failed; the message names the connection and the stream and carries the
    database's own message. Retried only when the database's error is transient (``retries``)."""


class TargetLocked(SyncAssetsError):
    """Another run holds the target table's writer lock past ``lock_timeout``; the message names
    the table, and the holder and since when where the engine can say. Not retried: the run has
    already waited ``lock_timeout`` (raise that setting to wait longer)."""
