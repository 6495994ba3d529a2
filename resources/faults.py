"""Faults of the local backends, and the two kinds of failure every outside system raises.

A transient fault (`SystemUnavailable`) is worth retrying: the asset's RetryPolicy backs off and
tries again. A permanent one (`SystemRefused`) will fail the same way on every retry, so assets turn
it into `dg.Failure(allow_retries=False)` naming the system and the fix.

Faults come from two places, both applied at every call: the system's outage state, switched
outside any run with `orderflow-sim outage` (simulator/outages.py), and a resource's `faults`
config, for one-off demos (a re-execution inherits it, so it cannot be switched off there).
"""

from __future__ import annotations

import fcntl
import random
import time
from pathlib import Path

import dagster as dg

from foundation import layout, settings
from simulator.outages import OutageStateError, outage_path, read_outage


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


def inject(
    system: str, faults: FaultInjection, state_file: Path, systems_dir: Path | None = None
) -> FaultInjection:
    """Apply the system's outage state and the configured faults before a call.

    Raises `SystemUnavailable` when a fault fires; returns the faults in force for this call (its
    `reject_keys` are the state's and the config's). The outage state is read from
    `systems_dir` (default: the data dir's systems/). The count of `outage_calls` lives in
    `state_file` beside the system's data, so that an outage of N calls spans processes and runs
    (each retry of a step is a new resource instance).
    """
    try:
        outage = read_outage(
            outage_path(systems_dir or layout.systems_dir(settings.data_dir()), system)
        )
    except OutageStateError as error:
        # Transient: someone can fix the file while the step retries.
        raise SystemUnavailable(f"{system}: {error}") from error
    slow = max(faults.slow_seconds, outage.slow_seconds)
    if slow > 0:
        time.sleep(slow)
    if outage.down:
        raise SystemUnavailable(
            f"{system} is down (an outage of the system; `orderflow-sim outage {system} --up` "
            "ends it)"
        )
    if faults.down:
        raise SystemUnavailable(
            f"{system} is down (injected outage: faults.down is set in the run's config, which a "
            "re-execution inherits: launch a new run without it)"
        )
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
    for rate, source in ((outage.error_rate, "outage state"), (faults.error_rate, "injected")):
        if rate > 0 and random.random() < rate:
            raise SystemUnavailable(
                f"{system} answered with a transient error ({source}: error rate {rate:g})"
            )
    if not outage.reject_keys:
        return faults
    return faults.model_copy(update={"reject_keys": [*faults.reject_keys, *outage.reject_keys]})
