"""Fault injection for the local backends, and the two kinds of failure every outside system raises.

A transient fault (`SystemUnavailable`) is worth retrying: the asset's RetryPolicy backs off and
tries again. A permanent one (`SystemRefused`) will fail the same way on every retry, so assets turn
it into `dg.Failure(allow_retries=False)` naming the system and the fix.
"""

from __future__ import annotations

import fcntl
import random
import time
from pathlib import Path

import dagster as dg


class SystemUnavailable(Exception):
    """An outside system could not be reached or answered with a transient error: retry later."""


class SystemRefused(Exception):
    """An outside system refused a request permanently: retrying cannot help."""


class FaultInjection(dg.Config):
    """Faults a local backend injects, for demos and tests (all off by default)."""

    down: bool = False
    """Every call fails as if the system were down (an outage longer than any retry)."""
    outage_calls: int = 0
    """The first N calls ever made to this system's store fail, then it recovers."""
    slow_seconds: float = 0.0
    """Each call waits this long before doing anything."""
    error_rate: float = 0.0
    """Each call fails transiently with this probability (0..1)."""
    reject_keys: list[str] = []  # noqa: RUF012 - pydantic copies field defaults
    """Idempotency keys the system refuses permanently (e.g. order keys for the carrier)."""


def inject(system: str, faults: FaultInjection, state_file: Path) -> None:
    """Apply the configured faults before a call; raise `SystemUnavailable` when one fires.

    The count of calls lives in `state_file` beside the system's data, so that an outage of N
    calls spans processes and runs (each retry of a step is a new resource instance).
    """
    if faults.slow_seconds > 0:
        time.sleep(faults.slow_seconds)
    if faults.down:
        raise SystemUnavailable(f"{system} is down (injected outage: faults.down is set)")
    if faults.outage_calls > 0:
        state_file.parent.mkdir(parents=True, exist_ok=True)
        with state_file.open("a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            calls = int(handle.read().strip() or 0) + 1
            handle.seek(0)
            handle.truncate()
            handle.write(str(calls))
        if calls <= faults.outage_calls:
            raise SystemUnavailable(
                f"{system} is unavailable (injected outage: call {calls} of the first "
                f"{faults.outage_calls} fails)"
            )
    if faults.error_rate > 0 and random.random() < faults.error_rate:
        raise SystemUnavailable(
            f"{system} answered with a transient error (injected error rate {faults.error_rate})"
        )
