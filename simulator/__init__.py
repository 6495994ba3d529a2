"""The store's outside world for local use: the order system's export and the outside systems.

`history`, `days` and `live` write the landing zone; `carrier`, `accounting` and `inventory` keep
the systems' books, each with an outage state (`outages`).
"""
