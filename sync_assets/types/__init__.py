"""The canonical type system every layer shares: Arrow types with native-type metadata, and edge values.
"""
