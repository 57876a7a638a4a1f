"""Proof that a copy equals its source: in-database row comparison (``diff``) and how a table's
stream is turned into the two sides to compare (``sides``)."""
