"""SQL Server: connector, type mapping, ODBC transport, and the staging + partition switch.
"""
