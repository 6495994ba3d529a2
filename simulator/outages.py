"""Outages of the outside systems: a state of each system, switched on and off outside any run.

`orderflow-sim outage SYSTEM --down` writes DATA/systems/faults/SYSTEM.json atomically; the local
backends and the carrier's HTTP server read it at every call, so a running `dagster dev` or server
sees the change at once, and a run re-executed from failure after `--up` finds the system back. The
state belongs to the system, not to a run: re-execution inherits a run's config, never this.
`inject` applies it at every call, together with the faults a system is configured with
(`Faults`: a resource's `faults` config for one-off demos, or a carrier server's options).
"""

from __future__ import annotations

import fcntl
import random
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from foundation import layout, settings
from foundation.failures import SystemUnavailable
from simulator.atomic import atomic_write_bytes

SYSTEMS = ("inventory", "carrier", "notifier", "accounting")


class OutageStateError(ValueError):
    """A state file that cannot be read as a system's outage state (the message names the fix)."""


class Outage(BaseModel):
    """The faults a system has now: down, slow, erratic, refusing some keys (all off by default)."""

    model_config = ConfigDict(frozen=True)

    down: bool = False
    """Every call fails as if the system were down (transient: retried, then the run fails)."""
    slow_seconds: float = Field(0.0, ge=0)
    """Each call waits this long before doing anything."""
    error_rate: float = Field(0.0, ge=0, le=1)
    """Each call fails transiently with this probability (0..1)."""
    reject_keys: list[str] = []
    """Idempotency keys the system refuses for good (the carrier: order keys)."""

    def describe(self) -> str:
        """One line for people, e.g. `down; slow 2 s per call; refuses 7, 42`."""
        parts = ["down" if self.down else "up"]
        if self.slow_seconds:
            parts.append(f"slow {self.slow_seconds:g} s per call")
        if self.error_rate:
            parts.append(f"error rate {self.error_rate:g}")
        if self.reject_keys:
            parts.append(f"refuses {', '.join(self.reject_keys)}")
        return "; ".join(parts) if len(parts) > 1 or self.down else "up, no faults"


class Faults(Outage):
    """An outage's faults set by configuration instead of the state file, plus failing first calls."""

    outage_calls: int = 0
    """The first N calls ever made to this system's store fail, then it recovers."""


def outage_path(systems_dir: Path, system: str) -> Path:
    """Where a system's outage state lives: DATA/systems/faults/<system>.json."""
    return Path(systems_dir) / "faults" / f"{system}.json"


def read_outage(path: Path) -> Outage:
    """The state in `path`: no faults when there is no file. Read afresh at every call."""
    # A read of a small file per call, no cache: a state changed within the file system's
    # timestamp granularity would otherwise go unseen.
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Outage()
    except OSError as error:
        raise _damaged(path, error.strerror) from error
    try:
        # Strict: "down": "no" or "reject_keys": "42" is a mistake to report, not to coerce.
        return Outage.model_validate_json(text, strict=True)
    except ValidationError as error:
        found = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'the file'}: {e['msg']}" for e in error.errors()
        )
        raise _damaged(path, found) from error


def write_outage(path: Path, outage: Outage) -> None:
    """Replace the state atomically (a reader sees the old state or the new one); none: delete."""
    if outage == Outage():
        path.unlink(missing_ok=True)
        return
    atomic_write_bytes(path, (outage.model_dump_json(indent=2) + "\n").encode())


def _damaged(path: Path, detail: object) -> OutageStateError:
    return OutageStateError(
        f"the outage state {path} cannot be read ({detail}); "
        f"reset it with `orderflow-sim outage {path.stem} --clear`"
    )


def fault_state_file(url: str, system: str) -> Path:
    """Where a system's injected-fault counter lives: beside its SQLite file, else the temp dir."""
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return Path(parsed.database).with_suffix(".faults")
    return Path(tempfile.gettempdir()) / f"orderflow-{system}.faults"


def inject(
    system: str, faults: Faults, state_file: Path, systems_dir: Path | None = None
) -> Faults:
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
