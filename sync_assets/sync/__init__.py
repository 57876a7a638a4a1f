"""Syncing one table: planning (the strategies), running a plan, drift policy, chunking and retries.

Sits between the Dagster wiring (and the CLI) above and the connectors below; knows nothing of Dagster.
"""
