"""SQL plumbing shared by the systems kept in a relational database (inventory, carrier, ledger).

The SQL is portable between SQLite (the local default) and PostgreSQL (a `postgresql://` URL): only
`ON CONFLICT` (do nothing, or add to a total), plain types and bound parameters. Write
transactions are serialised by the database itself (SQLite's `BEGIN IMMEDIATE`, a PostgreSQL
table lock), so two overlapping runs cannot both decide on the same stock or post the same
entry.
"""
