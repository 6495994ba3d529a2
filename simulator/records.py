"""The JSON text of one exported order, byte-compatible with the history that DuckDB renders.

Compact separators, keys in contract order, amounts as JSON numbers with exactly two decimals
(decimal.Decimal in Python, e.g. 172799.49, 17.00, 0.04), dates as "YYYY-MM-DD" strings.
"""

import json
from decimal import Decimal
from typing import Any

ORDER_KEYS = (
    "o_orderkey",
    "o_custkey",
    "o_orderstatus",
    "o_totalprice",
    "o_orderdate",
    "o_orderpriority",
    "o_clerk",
    "o_shippriority",
    "o_comment",
    "lines",
)
LINE_KEYS = (
    "l_linenumber",
    "l_partkey",
    "l_suppkey",
    "l_quantity",
    "l_extendedprice",
    "l_discount",
    "l_tax",
    "l_commitdate",
    "l_shipinstruct",
    "l_shipmode",
    "l_comment",
)
CENT = Decimal("0.01")


def cents_to_decimal(cents: int) -> Decimal:
    """Return an amount in integer cents as a two-place Decimal."""
    return (Decimal(cents) * CENT).quantize(CENT)


def to_json_text(value: Any) -> str:
    """Serialise `value` compactly, writing Decimals verbatim so no binary float is involved."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{_dumps(k)}:{to_json_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(to_json_text(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return format(value, "f")
    return _dumps(value)


def parse_record(text: str | bytes) -> dict[str, Any]:
    """Parse one export line, reading numbers with decimals as Decimal."""
    return json.loads(text, parse_float=Decimal)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
