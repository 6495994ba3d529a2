"""Small helpers that turn warehouse rows into Dagster metadata (previews, column schemas)."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
import duckdb


def column_schema(columns: Sequence[tuple[str, str, str]]) -> dg.TableSchema:
    """A Dagster column schema from (name, SQL type, description) triples."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, sql_type, description) for name, sql_type, description in columns
        ]
    )


def markdown_preview(
    con: duckdb.DuckDBPyConnection, query: str, params: Sequence[object] = (), width: int = 60
) -> dg.MarkdownMetadataValue:
    """The query's rows as a Markdown table (cells cut to `width` characters)."""
    # The caller's connection, not a cursor: it must see the caller's uncommitted writes.
    result = con.execute(query, list(params))
    rows = result.fetchall()
    names = [d[0] for d in result.description]

    def cell(value: object) -> str:
        text = "" if value is None else str(value)
        text = text.replace("|", "\\|").replace("\n", " ")
        return text if len(text) <= width else text[: width - 1] + "…"

    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    if not rows:
        lines.append("| " + " | ".join("" for _ in names) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def result_with_preview(
    con: duckdb.DuckDBPyConnection,
    row_count: int,
    query: str,
    params: Sequence[object] = (),
    *,
    asset_key: dg.AssetKey | None = None,
    preview: str = "preview",
    **metadata: object,
) -> dg.MaterializeResult:
    """A MaterializeResult: the row count, `metadata`, then `preview`: the query's rows in Markdown."""
    return dg.MaterializeResult(
        asset_key=asset_key,
        metadata={
            "dagster/row_count": row_count,
            **metadata,
            preview: markdown_preview(con, query, params),
        },
    )


def markdown_list(lines: Sequence[str], limit: int = 20) -> dg.MarkdownMetadataValue:
    """The lines as a Markdown bullet list of at most `limit` items ("none" when empty)."""
    shown = [f"- {line}" for line in lines[:limit]]
    if len(lines) > limit:
        shown.append(f"- and {len(lines) - limit} more")
    return dg.MetadataValue.md("\n".join(shown) or "none")
