"""PostgreSQL: connector, type mapping, ADBC Arrow reads and writes, and the binary COPY pass-through.
"""
