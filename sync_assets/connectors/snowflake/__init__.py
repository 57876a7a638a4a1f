"""Snowflake (a source): connector, type mapping, and the stage-unload fast path.
"""
