"""TPC-H's money in integer cents: the SQL every layer computes amounts with, and their text.

⌊⌊extendedprice·(100−discount)/100⌋·(100+tax)/100⌋ per line, as TPC-H defines it: the staging
checks, the invoices and the marts use the same arithmetic, so their amounts agree to the cent.
"""


def line_net_cents_sql(ep: str, discount: str) -> str:
    """SQL for a line's amount after discount in integer cents: ⌊ep·(100−d)/100⌋."""
    return f"(({ep} * 100)::BIGINT * (100 - ({discount} * 100)::BIGINT) // 100)"


def line_cents_sql(ep: str, discount: str, tax: str) -> str:
    """SQL for a line's amount with tax in integer cents: ⌊⌊ep·(100−d)/100⌋·(100+t)/100⌋."""
    return f"({line_net_cents_sql(ep, discount)} * (100 + ({tax} * 100)::BIGINT) // 100)"


def supply_cost_cents_sql(supplycost: str, quantity: str) -> str:
    """SQL for a line's cost of goods in integer cents: ps_supplycost · quantity."""
    return f"(({supplycost} * 100)::BIGINT * {quantity}::BIGINT)"


def money(cents: int) -> str:
    """Cents as dollars for a message, without going through binary floats."""
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents) // 100:,}.{abs(cents) % 100:02d}"
