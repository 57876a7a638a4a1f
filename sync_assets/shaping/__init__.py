"""Shaping rows on their way from source to target: ``transforms`` (rename, cast, trim, computed
columns...), ``validation`` (per-column rules) and ``shaped`` (both wrapped around a source stream).

Below ``sync`` (which shapes every stream it runs) and beside the connectors: it knows Arrow,
DuckDB and the config, never a target.
"""
