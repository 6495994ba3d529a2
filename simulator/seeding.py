"""Deterministic random generators: one independent stream per (purpose, date, scale, seed).

Seeds come from SHA-256 of their parts, never from hash() (randomised per process), so a day's
orders and defects are the same whatever other days were generated, on any machine.
"""

import hashlib
import random
from datetime import date


def derive_seed(*parts: object) -> int:
    """Return a 64-bit integer seed derived from the text of `parts`."""
    text = "|".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def day_rng(purpose: str, day: date, scale: float, seed: int) -> random.Random:
    """Return the random stream for `purpose` ("orders", "defects") on `day`."""
    return random.Random(derive_seed(purpose, day.isoformat(), repr(float(scale)), int(seed)))
