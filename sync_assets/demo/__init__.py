"""The Chinook demo as its own code location: config, source builder, and a downstream asset.

The product's definitions never import this package; ``sync-assets demo`` and
``dagster dev -m sync_assets.demo.definitions`` do.
"""
