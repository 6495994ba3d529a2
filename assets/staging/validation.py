"""Set-based validation of raw order records in DuckDB: every record is staged or rejected.

A chunk of raw records (`raw_chunk`: record_id, batch_day, source_file, line_number, raw_text,
read_problem) goes through temporary tables: parse → type and range checks per field and line →
known keys → totals tie out in TPC-H's integer-cent arithmetic → duplicates (first copy by file and line wins).
All SQL text is built from the field lists below, never from data; values are bound parameters.
"""

from __future__ import annotations

import duckdb

from foundation.money import line_cents_sql

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
    missing = f"when {expr} is null then 'missing {name}'"
    if kind == "text":  # any JSON value reads as text
        return f"case {missing} end"
    check = KIND_CHECKS[kind].format(x=expr)
    return (
        f"case {missing} "
        f"when not {check} then '{name} is not {KIND_NAMES[kind]}: ' || left({expr}, 40) end"
    )


def _checked_fields(prefix: str, fields: tuple[tuple[str, str], ...]) -> tuple[str, str]:
    """SQL for the fields' problem texts and their typed values, read from `prefix`.<field>."""
    problems = ",\n        ".join(_field_problem(f"{prefix}.{n}", n, k) for n, k in fields)
    typed = ",\n        ".join(f"{_typed(f'{prefix}.{n}', k)} as {n}" for n, k in fields)
    return problems, typed


def _typed(expr: str, kind: str) -> str:
    return f"try_cast({expr} as {SQL_TYPES[kind]})"


# One JSON parse per record: try() turns a malformed line into NULL; only those rare lines are
# parsed again to tell malformed JSON from JSON that is not an object.
PARSE_SQL = f"""
create or replace temp table parsed as
select record_id, batch_day, source_file, line_number, doc,
    case when read_problem is not null then read_problem
         when doc is null and not is_object then 'not a JSON object'
         when doc is null then 'malformed JSON' end as parse_error
from (
    select record_id, batch_day::DATE as batch_day, source_file, line_number, read_problem,
        starts_with(ltrim(raw_text), '{{') as is_object,
        case when read_problem is null and starts_with(ltrim(raw_text), '{{')
             then try(json_transform(raw_text, '{_transform_spec()}')) end as doc
    from raw_chunk
)
"""  # noqa: S608 - identifiers and the JSON shape come from this module

_line_problems, _line_typed = _checked_fields("line", LINE_FIELDS)

LINES_SQL = f"""
create or replace temp table checked_lines as
with unnested as (
    select record_id, unnest(doc.lines) as line,
        generate_subscripts(doc.lines, 1) as pos
    from parsed where doc.lines is not null
), typed as (
    select record_id, pos,
        concat_ws(', ', {_line_problems}) as field_problems,
        {_line_typed}
    from unnested
)
select t.*,
    nullif(concat_ws(', ',
        nullif(t.field_problems, ''),
        case when t.l_linenumber < 1 then 'l_linenumber must be 1 or more' end,
        case when t.l_quantity <= 0 then 'l_quantity must be positive, got ' || t.l_quantity end,
        case when t.l_extendedprice < 0 then 'l_extendedprice must not be negative' end,
        case when t.l_discount not between 0 and 1 then 'l_discount must be within 0..1' end,
        case when t.l_tax not between 0 and 1 then 'l_tax must be within 0..1' end,
        case when t.l_partkey is not null and t.l_suppkey is not null and ps.ps_partkey is null
             then 'unknown part ' || t.l_partkey || ' from supplier ' || t.l_suppkey end
    ), '') as problem,
    {line_cents_sql("t.l_extendedprice", "t.l_discount", "t.l_tax")} as line_cents
from typed t
left join staging.partsupp ps on ps.ps_partkey = t.l_partkey and ps.ps_suppkey = t.l_suppkey
"""  # noqa: S608

_order_problems, _order_typed = _checked_fields("p.doc", ORDER_FIELDS)

ORDERS_SQL = f"""
create or replace temp table checked_orders as
with line_summary as (
    select record_id, count(*) as line_count,
        count(distinct l_linenumber) < count(*) as repeated_line_numbers,
        string_agg(case when problem is not null then 'line ' || pos || ': ' || problem end,
                   '; ' order by pos) as line_problems,
        sum(line_cents) as total_cents
    from checked_lines group by record_id
), typed as (
    select p.record_id, p.batch_day, p.source_file, p.line_number, p.parse_error, p.doc.lines is null as no_lines,
        case when p.doc is not null then concat_ws('; ', {_order_problems}) end
            as field_problems,
        {_order_typed},
        s.line_count, s.repeated_line_numbers, s.line_problems, s.total_cents
    from parsed p left join line_summary s using (record_id)
)
select t.record_id, t.batch_day, t.source_file, t.line_number,
    {", ".join(name for name, _ in ORDER_FIELDS)},
    nullif(concat_ws('; ',
        t.parse_error,
        nullif(t.field_problems, ''),
        case when t.parse_error is null and (t.no_lines or t.line_count is null)
             then 'lines is missing, empty or not an array' end,
        case when o_orderstatus not in ('O', 'F', 'P')
             then 'o_orderstatus must be O, F or P' end,
        case when o_totalprice < 0 then 'o_totalprice must not be negative' end,
        case when o_orderdate <> t.batch_day
             then 'o_orderdate ' || o_orderdate || ' is not the batch day ' || t.batch_day end,
        case when o_custkey is not null and c.c_custkey is null
             then 'unknown customer ' || o_custkey end,
        t.line_problems,
        case when t.repeated_line_numbers then 'l_linenumber repeated within the order' end,
        case when t.line_problems is null and not t.repeated_line_numbers and o_totalprice is not null
                  and (o_totalprice * 100)::BIGINT <> t.total_cents
             then 'o_totalprice ' || o_totalprice || ' does not equal the sum of its lines '
                  || (t.total_cents / 100)::DECIMAL(15,2) end
    ), '') as reason
from typed t
left join staging.customer c on c.c_custkey = t.o_custkey
"""  # noqa: S608

# A re-sent order: the first valid copy by (file, line) is staged, later copies are rejected.
# Only keys seen more than once need ranking, so a small table of them replaces a window.
DUPLICATES_SQL = """
create or replace temp table first_copies as
select o_orderkey, min({'file': source_file, 'line': line_number}) as first_copy
from checked_orders where reason is null
group by o_orderkey having count(*) > 1
"""

_order_columns = ", ".join(name for name, _ in ORDER_FIELDS)
_line_columns = ", ".join(name for name, _ in LINE_FIELDS)

VERDICTS_SQL = """
create or replace temp table verdicts as
select c.record_id, c.batch_day, c.source_file, c.line_number, c.o_orderkey,
    coalesce(c.reason, 'duplicate of order ' || c.o_orderkey || ' first received in '
        || f.first_copy.file || ':' || f.first_copy.line) as reason
from checked_orders c left join first_copies f using (o_orderkey)
where c.reason is not null
   or {'file': c.source_file, 'line': c.line_number} <> f.first_copy
"""

INSERT_ORDERS_SQL = f"""
insert into staging.orders ({_order_columns})
select {_order_columns} from checked_orders c
where c.reason is null and c.record_id not in (select record_id from verdicts)
"""  # noqa: S608

INSERT_LINES_SQL = f"""
insert into staging.lineitem (l_orderkey, {_line_columns}, l_orderdate)
select c.o_orderkey, {", ".join("l." + name for name, _ in LINE_FIELDS)}, c.o_orderdate
from checked_orders c join checked_lines l using (record_id)
where c.reason is null and c.record_id not in (select record_id from verdicts)
"""  # noqa: S608

INSERT_REJECTS_SQL = """
insert into staging.order_rejects
    (batch_day, source_file, line_number, o_orderkey, reason, raw_text)
select v.batch_day, v.source_file, v.line_number, v.o_orderkey, v.reason, r.raw_text
from verdicts v join raw_chunk r using (record_id)
"""


def stage_chunk(con: duckdb.DuckDBPyConnection, records: int) -> tuple[int, int]:
    """Validate `raw_chunk` (`records` rows) into the staging tables; return (staged, rejected)."""
    for sql in (PARSE_SQL, LINES_SQL, ORDERS_SQL, DUPLICATES_SQL, VERDICTS_SQL):
        con.execute(sql)
    staged = con.execute(INSERT_ORDERS_SQL).fetchall()[0][0]
    con.execute(INSERT_LINES_SQL)
    rejected = con.execute(INSERT_REJECTS_SQL).fetchall()[0][0]
    if staged + rejected != records:
        raise RuntimeError(
            f"validation lost records: {records} read, {staged} staged, {rejected} rejected"
        )
    return staged, rejected
