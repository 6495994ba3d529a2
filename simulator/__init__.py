"""The store's outside world for local use: the order system's export (landing zone).

`generate_store` writes the TPC-H history (dates moved 28 years later) and the catalog;
`simulate_day` and `catch_up` keep the store trading after the history with TPC-H's own value
distributions. Everything is deterministic: the same scale factor and options give the same bytes.
"""

from simulator.days import catch_up, simulate_day
from simulator.defects import CORRUPTION_KINDS, DEFECT_KINDS, DefectKind
from simulator.errors import SimulatorError
from simulator.history import GenerateSummary, generate_store
from simulator.store import StoreInfo, load_store

__all__ = [
    "CORRUPTION_KINDS",
    "DEFECT_KINDS",
    "DefectKind",
    "GenerateSummary",
    "SimulatorError",
    "StoreInfo",
    "catch_up",
    "generate_store",
    "load_store",
    "simulate_day",
]
