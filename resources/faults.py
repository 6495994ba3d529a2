"""The faults a local backend is configured with, and the two failures every outside system raises.

A resource's `faults` config is for one-off demos: a re-execution inherits it, so it cannot be
switched off there. simulator/outages.py applies it at every call, with the system's outage state.
"""

import dagster as dg

from foundation.failures import SystemRefused, SystemUnavailable
from simulator.outages import Faults

__all__ = ["FaultInjection", "SystemRefused", "SystemUnavailable"]


class FaultInjection(dg.Config, Faults):
    """Faults a local backend injects, for demos and tests (all off by default)."""
