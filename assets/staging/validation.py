"""Set-based validation of raw order records in DuckDB: every record is staged or rejected.

A chunk of raw records (`raw_chunk`: batch_day, source_file, line_number, raw_text, utf8_valid)
goes through temporary tables: parse → type and range checks per field and line → known keys →
totals tie out in TPC-H's integer-cent arithmetic → duplicates (first copy by file and line wins).
All SQL text is built from the field lists below, never from data; values are bound parameters.
"""

from __future__ import annotations

import duckdb

# (field, kind) as the order system exports them; kinds map to a check and a SQL type.
ORDER_FIELDS = (
    ("o_orderkey", "int"),
    ("o_custkey", "int"),
    ("o_orderstatus", "text"),
    ("o_totalprice", "money"),
    ("o_orderdate", "date"),
    ("o_orderpriority", "text"),
    ("o_clerk", "text"),
    ("o_shippriority", "int"),
    ("o_comment", "text"),
)
LINE_FIELDS = (
    ("l_linenumber", "int"),
    ("l_partkey", "int"),
    ("l_suppkey", "int"),
    ("l_quantity", "money"),
    ("l_extendedprice", "money"),
    ("l_discount", "money"),
    ("l_tax", "money"),
    ("l_commitdate", "date"),
    ("l_shipinstruct", "text"),
    ("l_shipmode", "text"),
    ("l_comment", "text"),
)
SQL_TYPES = {"int": "BIGINT", "money": "DECIMAL(15,2)", "date": "DATE", "text": "VARCHAR"}
KIND_CHECKS = {
    "int": "regexp_full_match({x}, '-?[0-9]{{1,18}}')",
    # Amounts are decimals with at most two places; anything finer would be silently rounded.
    "money": "regexp_full_match({x}, '-?[0-9]{{1,13}}(\\.[0-9]{{1,2}})?')",
    "date": "(regexp_full_match({x}, '[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}')"
    " and try_cast({x} as date) is not null)",
    "text": "true",
}
KIND_NAMES = {
    "int": "an integer",
    "money": "a decimal with two places",
    "date": "a date",
    "text": "text",
}


def _transform_spec() -> str:
    order = ", ".join(f'"{name}": "VARCHAR"' for name, _ in ORDER_FIELDS)
    line = ", ".join(f'"{name}": "VARCHAR"' for name, _ in LINE_FIELDS)
    return "{" + order + ', "lines": [{' + line + "}]}"


def _field_problem(expr: str, name: str, kind: str) -> str:
    check = KIND_CHECKS[kind].format(x=expr)
    return (
        f"case when {expr} is null then 'missing {name}' "
        f"when not {check} then '{name} is not {KIND_NAMES[kind]}: ' || left({expr}, 40) end"
    )


def _typed(expr: str, kind: str) -> str:
    return f"try_cast({expr} as {SQL_TYPES[kind]})"


def _line_cents(ep: str, discount: str, tax: str) -> str:
    # TPC-H's own arithmetic in integer cents: ⌊⌊ep·(100−d)/100⌋·(100+t)/100⌋.
    return (
        f"(({ep} * 100)::BIGINT * (100 - ({discount} * 100)::BIGINT) // 100"
        f" * (100 + ({tax} * 100)::BIGINT) // 100)"
    )


PARSE_SQL = f"""
create or replace temp table parsed as
select batch_day, source_file, line_number, raw_text,
    case when not utf8_valid then 'not valid UTF-8'
         when not json_ok then 'malformed JSON'
         when not is_object then 'not a JSON object' end as parse_error,
    case when json_ok and is_object then json_transform(raw_text, '{_transform_spec()}') end as doc
from (
    select batch_day::DATE as batch_day, source_file, line_number, raw_text, utf8_valid,
        utf8_valid and json_valid(raw_text) as json_ok,
        starts_with(ltrim(raw_text), '{{') as is_object
    from raw_chunk
)
"""  # noqa: S608 - identifiers and the JSON shape come from this module

_line_problems = ",\n        ".join(
    _field_problem(f"line.{name}", name, kind) for name, kind in LINE_FIELDS
)
_line_typed = ",\n        ".join(
    f"{_typed(f'line.{name}', kind)} as {name}" for name, kind in LINE_FIELDS
)

LINES_SQL = f"""
create or replace temp table checked_lines as
with unnested as (
    select source_file, line_number, unnest(doc.lines) as line,
        generate_subscripts(doc.lines, 1) as pos
    from parsed where doc.lines is not null
), typed as (
    select source_file, line_number, pos,
        concat_ws(', ', {_line_problems}) as field_problems,
        {_line_typed}
    from unnested
)
select t.*,
    nullif(concat_ws(', ',
        nullif(t.field_problems, ''),
        case when t.l_linenumber < 1 then 'l_linenumber must be 1 or more' end,
        case when count(*) over (partition by t.source_file, t.line_number, t.l_linenumber) > 1
             then 'l_linenumber ' || t.l_linenumber || ' repeated' end,
        case when t.l_quantity <= 0 then 'l_quantity must be positive, got ' || t.l_quantity end,
        case when t.l_extendedprice < 0 then 'l_extendedprice must not be negative' end,
        case when t.l_discount not between 0 and 1 then 'l_discount must be within 0..1' end,
        case when t.l_tax not between 0 and 1 then 'l_tax must be within 0..1' end,
        case when t.l_partkey is not null and t.l_suppkey is not null and ps.ps_partkey is null
             then 'unknown part ' || t.l_partkey || ' from supplier ' || t.l_suppkey end
    ), '') as problem,
    {_line_cents("t.l_extendedprice", "t.l_discount", "t.l_tax")} as line_cents
from typed t
left join staging.partsupp ps on ps.ps_partkey = t.l_partkey and ps.ps_suppkey = t.l_suppkey
"""  # noqa: S608

_order_problems = ",\n        ".join(
    _field_problem(f"p.doc.{name}", name, kind) for name, kind in ORDER_FIELDS
)
_order_typed = ",\n        ".join(
    f"{_typed(f'p.doc.{name}', kind)} as {name}" for name, kind in ORDER_FIELDS
)

ORDERS_SQL = f"""
create or replace temp table checked_orders as
with line_summary as (
    select source_file, line_number, count(*) as line_count,
        string_agg(case when problem is not null then 'line ' || pos || ': ' || problem end,
                   '; ' order by pos) as line_problems,
        sum(line_cents) as total_cents
    from checked_lines group by source_file, line_number
), typed as (
    select p.batch_day, p.source_file, p.line_number, p.raw_text, p.parse_error, p.doc,
        case when p.doc is not null then concat_ws('; ', {_order_problems}) end
            as field_problems,
        {_order_typed},
        s.line_count, s.line_problems, s.total_cents
    from parsed p left join line_summary s using (source_file, line_number)
)
select t.batch_day, t.source_file, t.line_number, t.raw_text,
    {", ".join(name for name, _ in ORDER_FIELDS)},
    nullif(concat_ws('; ',
        t.parse_error,
        nullif(t.field_problems, ''),
        case when t.doc is not null and (t.doc.lines is null or t.line_count is null)
             then 'lines is missing, empty or not an array' end,
        case when o_orderstatus not in ('O', 'F', 'P')
             then 'o_orderstatus must be O, F or P' end,
        case when o_totalprice < 0 then 'o_totalprice must not be negative' end,
        case when o_orderdate <> t.batch_day
             then 'o_orderdate ' || o_orderdate || ' is not the batch day ' || t.batch_day end,
        case when o_custkey is not null and c.c_custkey is null
             then 'unknown customer ' || o_custkey end,
        t.line_problems,
        case when t.line_problems is null and o_totalprice is not null
                  and (o_totalprice * 100)::BIGINT <> t.total_cents
             then 'o_totalprice ' || o_totalprice || ' does not equal the sum of its lines '
                  || (t.total_cents / 100)::DECIMAL(15,2) end
    ), '') as reason
from typed t
left join staging.customer c on c.c_custkey = t.o_custkey
"""  # noqa: S608

VERDICTS_SQL = """
create or replace temp table verdicts as
select *,
    case when reason is null then
        row_number() over (partition by o_orderkey, reason is null
                           order by source_file, line_number) end as copy_number,
    case when reason is null then
        first_value(source_file || ':' || line_number) over (
            partition by o_orderkey, reason is null order by source_file, line_number) end
        as first_copy
from checked_orders
"""

_order_columns = ", ".join(name for name, _ in ORDER_FIELDS)
_line_columns = ", ".join(f"l.{name}" for name, _ in LINE_FIELDS if name != "l_linenumber")

INSERT_ORDERS_SQL = f"""
insert into staging.orders ({_order_columns})
select {_order_columns} from verdicts where copy_number = 1 order by o_orderkey
"""  # noqa: S608

INSERT_LINES_SQL = f"""
insert into staging.lineitem (l_orderkey, l_linenumber, {_line_columns.replace("l.", "")},
    l_orderdate)
select v.o_orderkey, l.l_linenumber, {_line_columns}, v.o_orderdate
from verdicts v join checked_lines l using (source_file, line_number)
where v.copy_number = 1
order by v.o_orderkey, l.l_linenumber
"""  # noqa: S608

INSERT_REJECTS_SQL = """
insert into staging.order_rejects
    (batch_day, source_file, line_number, o_orderkey, reason, raw_text)
select batch_day, source_file, line_number, o_orderkey,
    coalesce(reason, 'duplicate of order ' || o_orderkey || ' first received in ' || first_copy),
    raw_text
from verdicts where copy_number is distinct from 1
order by source_file, line_number
"""


def stage_chunk(con: duckdb.DuckDBPyConnection) -> tuple[int, int, int]:
    """Validate `raw_chunk` and append it to the staging tables; return (read, staged, rejected)."""
    for sql in (PARSE_SQL, LINES_SQL, ORDERS_SQL, VERDICTS_SQL):
        con.execute(sql)
    staged = con.execute(INSERT_ORDERS_SQL).fetchall()[0][0]
    con.execute(INSERT_LINES_SQL)
    rejected = con.execute(INSERT_REJECTS_SQL).fetchall()[0][0]
    read = con.execute("select count(*) from raw_chunk").fetchall()[0][0]
    return read, staged, rejected
