"""The shared SQL plumbing of the systems, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from foundation.sqldb import bulk
from foundation.sqldb.bulk import (
    ROWS_PER_STATEMENT,
    STATEMENTS_PER_ROUND_TRIP,
    add_to_totals,
    execute_many,
    insert_many,
    summed,
    update_many,
)
from foundation.sqldb.connections import sqlite_url
from tests.postgres import new_database

TABLES = (
    "create table items (k bigint not null, name varchar(20), primary key (k))",
    "create table totals (day varchar(10) not null, kind varchar(8) not null,"
    " n bigint not null, amount bigint not null, primary key (day, kind))",
)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        url = sqlite_url(tmp_path / "plumbing.sqlite")
    else:
        server = request.getfixturevalue("postgres_server")
        url = server.url(new_database(server, "plumbing"))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in TABLES:
            conn.exec_driver_sql(statement)
    yield engine
    engine.dispose()


def name(k: int) -> str | None:
    """Text with what a bulk path must escape (tabs, newlines, backslashes, a literal \\N), or NULL."""
    return None if k % 3 == 0 else f"item {k}" if k % 2 else f"it\tem\n{k}\\N\r\\"


def test_insert_many_writes_every_row_across_statements_and_counts_the_new(engine, monkeypatch):
    monkeypatch.setattr(bulk, "ROWS_PER_COPY", 50)  # PostgreSQL: three copies and their inserts
    with engine.begin() as conn:
        count = 2 * ROWS_PER_STATEMENT + 7  # SQLite: two full statements and a short one
        rows = ((k, name(k)) for k in range(count))  # streamed, with NULLs
        assert insert_many(conn, "items", ("k", "name"), rows) == count
        # Repeats (one twice in the same statement) are skipped and not counted.
        again = [(5, "other"), (count, "new"), (count, "new twice"), (1, "x")]
        assert insert_many(conn, "items", ("k", "name"), again, "on conflict do nothing") == 1
        assert insert_many(conn, "items", ("k", "name"), []) == 0
    with engine.connect() as conn:
        stored = conn.exec_driver_sql("select k, name from items order by k").fetchall()
    assert [tuple(row) for row in stored] == [
        *((k, name(k)) for k in range(count)),
        (count, "new"),
    ]


@pytest.mark.parametrize(
    "names",
    [
        [
            "plain",
            None,
            "2021-01-05",
        ],  # nothing to escape: PostgreSQL's copy takes the rows as joined
        ["plain", None, "\\N"],  # the text of a NULL, as a value: escaped
        ["tab\tin", None, ""],
    ],
)
def test_insert_many_keeps_each_value_as_it_was(engine, names):
    with engine.begin() as conn:
        assert insert_many(conn, "items", ("k", "name"), enumerate(names)) == len(names)
    with engine.connect() as conn:
        stored = conn.exec_driver_sql("select k, name from items order by k").fetchall()
    assert [tuple(row) for row in stored] == list(enumerate(names))


def test_execute_many_runs_the_statement_for_every_row_across_round_trips(engine):
    count = 2 * STATEMENTS_PER_ROUND_TRIP + 3  # PostgreSQL: two full round trips and a short one
    with engine.begin() as conn:
        insert_many(conn, "items", ("k", "name"), ((k, None) for k in range(count + 1)))
        execute_many(
            conn, "update items set name = ? where k = ?", ((f"n{k}", k) for k in range(count))
        )
    with engine.connect() as conn:
        stored = conn.exec_driver_sql("select k, name from items order by k").fetchall()
    assert [tuple(row) for row in stored] == [*((k, f"n{k}") for k in range(count)), (count, None)]


def test_update_many_sets_the_values_of_each_key_and_leaves_the_rest(engine, monkeypatch):
    monkeypatch.setattr(bulk, "ROWS_PER_COPY", 2)  # PostgreSQL: two copies, one update
    with engine.begin() as conn:
        insert_many(
            conn,
            "totals",
            ("day", "kind", "n", "amount"),
            [("2021-01-01", "a", 1, 10), ("2021-01-01", "b", 2, 20), ("2021-01-02", "a", 3, 30)],
        )
        update_many(
            conn,
            "totals",
            ("n", "amount"),
            ("day", "kind"),
            iter(
                [(7, 70, "2021-01-02", "a"), (5, 50, "2021-01-01", "a"), (9, 90, "2021-01-03", "a")]
            ),
        )
    with engine.connect() as conn:
        got = conn.exec_driver_sql("select * from totals order by day, kind").fetchall()
    # The key that is not there changes nothing; the one not asked about is left as it was.
    assert [tuple(row) for row in got] == [
        ("2021-01-01", "a", 5, 50),
        ("2021-01-01", "b", 2, 20),
        ("2021-01-02", "a", 7, 70),
    ]


def test_execute_many_fails_like_any_statement_and_keeps_nothing(engine):
    with engine.begin() as conn:
        insert_many(conn, "items", ("k", "name"), [(1, "one"), (2, "two")])
    # The last statement of the first round trip breaks the key: the earlier ones are undone.
    rows = [(k + 10, 1) for k in range(STATEMENTS_PER_ROUND_TRIP - 1)] + [(2, 10)]
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        execute_many(conn, "update items set k = ? where k = ?", rows)
    with engine.connect() as conn:
        stored = conn.exec_driver_sql("select k, name from items order by k").fetchall()
    assert [tuple(row) for row in stored] == [(1, "one"), (2, "two")]


def test_insert_many_fails_like_any_statement_on_a_broken_key(engine):
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        insert_many(conn, "items", ("k", "name"), [(k % 70, "dup") for k in range(140)])
    with engine.connect() as conn:
        assert conn.exec_driver_sql("select count(*) from items").scalar_one() == 0


def test_totals_add_up_per_key_and_can_move_between_keys(engine):
    frame = pd.DataFrame(
        {
            "day": ["2021-01-01", "2021-01-01", "2021-01-02", "2021-01-01"],
            "kind": ["a", "b", "a", "a"],
            "n": 1,
            "amount": [5, 7, 11, 13],
        }
    )
    keys, values = ("day", "kind"), ("n", "amount")
    with engine.begin() as conn:
        add_to_totals(conn, "totals", keys, values, summed(frame, keys, values))
        add_to_totals(conn, "totals", keys, values, summed(frame, keys, values))
        add_to_totals(conn, "totals", keys, values, [("2021-01-01", "a", -1, -5)])
        add_to_totals(conn, "totals", keys, values, [("2021-01-01", "c", 1, 5)])
    with engine.connect() as conn:
        got = conn.exec_driver_sql("select * from totals order by day, kind").fetchall()
    assert [tuple(row) for row in got] == [
        ("2021-01-01", "a", 3, 31),
        ("2021-01-01", "b", 2, 14),
        ("2021-01-01", "c", 1, 5),
        ("2021-01-02", "a", 2, 22),
    ]
