"""The ``sync-assets`` command and what only it needs: status, sampling and discovery.
"""
