"""The store's business rules: one YAML file (rules.yaml), validated, with a version.

The pipeline reads it through resources/rules.py (shown in the UI, recorded with every decision);
the simulated inventory and carrier read the same file through the same model for the rules that
are theirs (stock and restock, days per ship mode). The version is a hash of the validated values,
so a comment or a layout change keeps it, and any change of a value makes a new one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator

from foundation import settings

# TPC-H's ship modes: the carrier offers those with days in the rules and refuses the others.
SHIP_MODES = ("AIR", "REG AIR", "TRUCK", "MAIL", "FOB", "RAIL", "SHIP")
Rate = Annotated[float, Field(ge=0, le=1)]
Days = Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]


def _fewest_first(days: list[int], mode: str = "") -> list[int]:
    if days[0] > days[1]:
        where = f"{mode}: " if mode else ""
        raise ValueError(f"{where}fewest days first, e.g. [1, 3], not {days}")
    return days


class Section(BaseModel):
    """A section of the rules: every key required, none unknown."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class AllocationRules(Section):
    """Who gets the stock first, and what becomes of a line the stock cannot cover."""

    order: Literal["fcfs", "priority"]
    """fcfs: by order date, order key, line. priority: each day's orders by o_orderpriority
    (1-URGENT first .. 5-LOW), then order key and line."""
    backorder: Literal["line", "order"]
    """line: a line the stock cannot cover is back-ordered, the rest of its order ships.
    order: the whole order is back-ordered (nothing of it is reserved, invoiced or shipped)."""


class StockRules(Section):
    """The inventory's stock and restock rule (the simulated inventory applies it)."""

    base_level_divisor: PositiveInt
    """A (part, supplier) stocked from now on starts at ps_availqty // divisor units (at least 1)."""
    restock: Literal["month", "week"]
    """The supplier tops the stock back up to its base level at the start of every month, or of
    every week (Monday)."""


class CarrierRules(Section):
    """The carrier's days (the simulated carrier applies them): [fewest, most] per consignment."""

    handling_days: Days
    """Days from the order to the carrier's pickup."""
    transit_days: dict[str, Days]
    """Days from pickup to delivery per TPC-H ship mode; a mode left out is refused."""

    @field_validator("handling_days")
    @classmethod
    def _handling(cls, days: list[int]) -> list[int]:
        return _fewest_first(days)

    @field_validator("transit_days")
    @classmethod
    def _transit(cls, modes: dict[str, list[int]]) -> dict[str, list[int]]:
        unknown = sorted(set(modes) - set(SHIP_MODES))
        if unknown:
            raise ValueError(f"unknown ship mode {unknown[0]!r}: the modes are {list(SHIP_MODES)}")
        for mode, days in modes.items():
            _fewest_first(days, mode)
        return modes


class AlertRules(Section):
    """When an admin is alerted; a rate left empty (null) alerts never."""

    max_backorder_rate: Rate | None
    """A day whose back-ordered lines / lines exceeds this."""
    min_on_time_rate: Rate | None
    """A day whose shipped lines delivered by their commit date / shipped lines is below this."""
    reconciliation_tolerance: Rate
    """Relative difference allowed between the warehouse and an outside system (0: exact)."""


class Rules(Section):
    """Every business rule, as rules.yaml holds them."""

    allocation: AllocationRules
    stock: StockRules
    carrier: CarrierRules
    alerts: AlertRules

    @property
    def version(self) -> str:
        """A hash of the values: what each decision records as the rules it was made under."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


class RulesError(ValueError):
    """A rules file that cannot be used: the message names the file, the field and the fix."""


_cache: dict[tuple[str, int, int], Rules] = {}


def load_rules(path: Path | None = None) -> Rules:
    """The rules in `path` (default `settings.rules_file()`), validated; RulesError names the field."""
    import yaml

    path = path or settings.rules_file()
    try:
        stat = path.stat()
    except OSError as error:
        raise RulesError(
            f"{path}: cannot read the rules file ({error.strerror}); restore rules.yaml or point "
            f"{settings.RULES_ENV} at one"
        ) from None
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _cache:
        try:
            with path.open(encoding="utf-8") as stream:
                values = yaml.safe_load(stream)
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise RulesError(f"{path}: not valid YAML: {error}") from None
        try:
            _cache[key] = Rules.model_validate(values)
        except ValidationError as error:
            problems = "; ".join(_describe(problem) for problem in error.errors())
            raise RulesError(f"{path}: {problems}") from None
    return _cache[key]


def _describe(problem: dict) -> str:
    """One validation problem as `field: what is wrong`."""
    field = ".".join(str(part) for part in problem["loc"]) or "(top level)"
    kind, value = problem["type"], problem.get("input")
    if kind == "literal_error":
        expected = problem["ctx"]["expected"].replace(" or ", ", ")
        return f"{field}: {value!r} is not one of [{expected}]"
    if kind == "missing":
        return f"{field}: missing (every rule is required; see README, Business rules)"
    if kind == "extra_forbidden":
        return f"{field}: unknown field"
    if kind == "model_type":
        return f"{field}: expected a mapping of keys to values, not {value!r}"
    if kind == "value_error":
        return f"{field}: {problem['ctx']['error']}"
    return f"{field}: {problem['msg'].lower()}, not {value!r}"
