"""Outages of the outside systems: a state of each system, switched on and off outside any run.

`orderflow-sim outage SYSTEM --down` writes DATA/systems/faults/SYSTEM.json atomically; the local
backends and the carrier's HTTP server read it at every call, so a running `dagster dev` or server
sees the change at once, and a run re-executed from failure after `--up` finds the system back. The
state belongs to the system, not to a run: re-execution inherits a run's config, never this.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from simulator.atomic import atomic_write_bytes

SYSTEMS = ("inventory", "carrier", "notifier", "accounting")


class OutageStateError(ValueError):
    """A state file that cannot be read as a system's outage state (the message names the fix)."""


@dataclass(frozen=True)
class Outage:
    """The faults a system has now: down, slow, erratic, refusing some keys (all off by default)."""

    down: bool = False
    """Every call fails as if the system were down (transient: retried, then the run fails)."""
    slow_seconds: float = 0.0
    """Each call waits this long before doing anything."""
    error_rate: float = 0.0
    """Each call fails transiently with this probability (0..1)."""
    reject_keys: tuple[str, ...] = ()
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
        data = json.loads(text)
        outage = Outage(
            down=data.get("down", False),
            slow_seconds=data.get("slow_seconds", 0.0),
            error_rate=data.get("error_rate", 0.0),
            reject_keys=tuple(data.get("reject_keys", ())),
        )
    except (ValueError, TypeError, AttributeError) as error:
        raise _damaged(path, error) from error
    if not (
        type(outage.down) is bool
        and type(outage.slow_seconds) in (int, float)
        and outage.slow_seconds >= 0
        and type(outage.error_rate) in (int, float)
        and 0 <= outage.error_rate <= 1
        and all(type(key) is str for key in outage.reject_keys)
    ):
        raise _damaged(path, f"unexpected values {text[:200]!r}")
    return outage


def write_outage(path: Path, outage: Outage) -> None:
    """Replace the state atomically (a reader sees the old state or the new one); none: delete."""
    if outage == Outage():
        path.unlink(missing_ok=True)
        return
    data = {**asdict(outage), "reject_keys": list(outage.reject_keys)}
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


def _damaged(path: Path, detail: object) -> OutageStateError:
    return OutageStateError(
        f"the outage state {path} cannot be read ({detail}); "
        f"reset it with `orderflow-sim outage {path.stem} --clear`"
    )
