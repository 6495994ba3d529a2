"""Faults of the local backends, and the two kinds of failure every outside system raises.

A transient fault (`SystemUnavailable`) is worth retrying: the asset's RetryPolicy backs off and
tries again. A permanent one (`SystemRefused`) will fail the same way on every retry, so assets turn
it into `dg.Failure(allow_retries=False)` naming the system and the fix.

Faults come from two places, both applied at every call (simulator/outages.py): the system's
outage state, switched outside any run with `orderflow-sim outage`, and a resource's `faults`
config, for one-off demos (a re-execution inherits it, so it cannot be switched off there).
"""

import dagster as dg

from foundation.failures import SystemRefused, SystemUnavailable
from simulator.outages import Faults

__all__ = ["FaultInjection", "SystemRefused", "SystemUnavailable"]


class FaultInjection(dg.Config, Faults):
    """Faults a local backend injects, for demos and tests (all off by default)."""
