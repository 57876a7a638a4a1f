"""``python -m sync_assets.cli``: the same command as ``sync-assets``."""

from sync_assets.cli.main import main

raise SystemExit(main())
