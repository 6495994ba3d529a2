"""How a run's window is cut into chunks: on the calendar, and sized to the store by default."""

from datetime import date

import pytest

from foundation import settings
from foundation.partitions import CHUNK_ORDERS, month_chunks, months_for

HISTORY = (date(2020, 1, 1), date(2026, 8, 3))


def test_chunks_fall_on_the_calendar_whatever_the_window():
    assert month_chunks(date(2020, 12, 21), date(2021, 1, 10), 1) == [
        (date(2020, 12, 21), date(2021, 1, 1)),
        (date(2021, 1, 1), date(2021, 1, 10)),
    ]
    # Quarters are cut at January, April, July and October, wherever the window starts.
    assert month_chunks(date(2021, 2, 15), date(2021, 8, 1), 3) == [
        (date(2021, 2, 15), date(2021, 4, 1)),
        (date(2021, 4, 1), date(2021, 7, 1)),
        (date(2021, 7, 1), date(2021, 8, 1)),
    ]
    assert month_chunks(*HISTORY, 0) == [HISTORY]
    assert len(month_chunks(*HISTORY, 12)) == 7  # 2020 .. 2026
    assert len(month_chunks(*HISTORY, 1)) == 80


@pytest.mark.parametrize(
    ("orders", "months"),
    [
        (15_000, 0),  # SF 0.01's whole history: one chunk
        (CHUNK_ORDERS, 0),
        (150_000, 12),  # SF 0.1: ~1,900 orders a month
        (1_500_000, 1),  # SF 1: ~19,000 a month; two months would be over
        (15_000_000, 1),  # SF 10: never less than a month
    ],
)
def test_chunks_sized_to_the_store_hold_a_bounded_number_of_orders(orders, months):
    assert months_for(orders, *HISTORY) == months
    per_month = orders / (HISTORY[1] - HISTORY[0]).days * 365.25 / 12
    if months == 0:
        assert orders <= CHUNK_ORDERS
        return
    # The longest span of a divisor of a year within the target, a month at the least.
    assert months == 1 or months * per_month <= CHUNK_ORDERS
    longer = [span for span in (2, 3, 4, 6, 12) if span > months]
    assert all(span * per_month > CHUNK_ORDERS for span in longer)


def test_the_chunk_setting_is_auto_by_default_and_refuses_what_is_not_a_number(monkeypatch):
    monkeypatch.delenv("ORDERFLOW_CHUNK_MONTHS", raising=False)
    assert settings.chunk_months() is None
    for text, months in (("auto", None), ("0", 0), (" 3 ", 3)):
        monkeypatch.setenv("ORDERFLOW_CHUNK_MONTHS", text)
        assert settings.chunk_months() == months
    monkeypatch.setenv("ORDERFLOW_CHUNK_MONTHS", "monthly")
    with pytest.raises(ValueError, match=r"auto .* or a whole number of months"):
        settings.chunk_months()
