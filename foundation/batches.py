"""Consecutive slices of a sequence: how a bulk call is cut into requests of bounded size."""

from collections.abc import Iterator, Sequence


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    """Consecutive slices of at most `size` items."""
    for begin in range(0, len(items), size):
        yield items[begin : begin + size]
