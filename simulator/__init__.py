"""The store's outside world for local use: the order system's export and the outside systems.

The landing zone: `history.generate_store` writes the TPC-H history (dates moved 28 years later)
and the catalog; `days` and `live` keep the store trading after it with TPC-H's own value
distributions; the same options give the same bytes. The systems (`carrier`, `accounting`,
`inventory`) keep their books in SQL, with an outage state each (`outages`).
"""
