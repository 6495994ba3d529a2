"""Running totals kept beside a system's detail rows, added to in the same transaction."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from foundation.sqldb.bulk import execute_many, insert_sql

# Type hints only: heavy libraries are imported where they are used (docs/architecture.md).
if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa


def add_to_totals(
    conn: sa.Connection,
    table: str,
    keys: Sequence[str],
    values: Sequence[str],
    rows: Iterable[tuple],
) -> None:
    """Add each row's values to the totals row with its keys, in the caller's transaction.

    A system keeps running totals (per day, say) beside its detail rows, in the same transaction
    as those rows, so a report reads a few thousand rows instead of millions. `table`, `keys`
    and `values` are identifiers from code, never from data.
    """
    added = ", ".join(f"{v} = {table}.{v} + excluded.{v}" for v in values)
    conflict = f"on conflict ({', '.join(keys)}) do update set {added}"
    # One row per statement: rows may repeat a key, which PostgreSQL refuses within one.
    execute_many(conn, insert_sql(table, [*keys, *values], 1, conflict), rows)


def summed(frame: pd.DataFrame, keys: Sequence[str], values: Sequence[str]) -> Iterator[tuple]:
    """The frame's `values` summed per distinct `keys`: rows of (*keys, *sums) in Python types."""
    if not len(frame):
        return iter(())
    totals = frame.groupby(list(keys), sort=False)[list(values)].sum().reset_index()
    columns = [totals[c].astype("int64" if c in values else object).tolist() for c in totals]
    return zip(*columns, strict=True)
