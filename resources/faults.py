"""The faults a local backend is configured with, and the two failures every outside system raises.

A re-execution inherits a run's `faults`; simulator/outages.py applies them with the outage state.
"""

import dagster as dg

from foundation.failures import SystemRefused, SystemUnavailable
from simulator.outages import Faults

__all__ = ["FaultInjection", "SystemRefused", "SystemUnavailable"]


class FaultInjection(dg.Config, Faults):
    """Faults a local backend injects, for demos and tests (all off by default)."""
