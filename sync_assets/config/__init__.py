"""Configuration: the YAML models, the loader, table names, wildcards, lineage and source-SQL checks.

The first layer of the data flow (config -> plan -> source connector -> Arrow batches -> target
connector -> Dagster). It imports nothing from connectors, sync or Dagster wiring.
"""
