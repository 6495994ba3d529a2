"""SQL for the systems kept in a relational database, portable between SQLite and PostgreSQL.

Only `ON CONFLICT` (do nothing, or add to a total), plain types and bound parameters. Writes are
serialised by the database itself (SQLite's `BEGIN IMMEDIATE`, a PostgreSQL table lock), so two
overlapping runs cannot both decide on the same stock or post the same entry.
"""
