"""The helpers every fulfillment step shares: addresses and amounts in messages."""

import duckdb
import pytest

from assets.fulfillment.common import customer_email, customer_email_sql
from foundation.money import money

NAMES = ["Customer#000000001", "Customer#000149999", "ACME Corp", "Zoë #7", "A#B#C"]


def test_the_warehouse_computes_the_same_customer_address_as_python():
    with duckdb.connect() as con:
        got = con.execute(
            f"select {customer_email_sql('name')} from unnest(?) as t(name)",
            [NAMES],
        ).fetchall()
    assert [row[0] for row in got] == [customer_email(name) for name in NAMES]
    assert customer_email(NAMES[0]) == "customer000000001@customers.orderflow.example"


@pytest.mark.parametrize(
    ("cents", "text"),
    [(0, "$0.00"), (5, "$0.05"), (123_456_78, "$123,456.78"), (-1_005, "-$10.05")],
)
def test_money_is_dollars_and_cents_without_floats(cents, text):
    assert money(cents) == text
