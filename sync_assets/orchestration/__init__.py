"""Dagster wiring: assets, checks, schedules and windows, sensors, alerts and IO managers.

Named ``orchestration`` so it never shadows the ``dagster`` package. ``sync_assets.definitions``
is the entry point that builds a project's Definitions from here.
"""
