"""sync_assets: keep copies of database tables in sync, as Dagster software-defined assets.

Start at ``spec.py`` (the YAML), ``planning.py`` (the sync strategies), ``engine.py`` (running a
plan), ``connectors/`` (one module per database) and ``definitions.py`` (the Dagster entry point).
"""
