"""The business rules as a resource: rules.yaml's values and version, read when definitions load.

The resource shows every rule and the version in the UI (Deployment > orderflow > Resources >
rules). Assets ask it for the validated rules; a run whose config changed a value without changing
the file is refused, since its decisions would record a version that does not describe them.
"""

from pathlib import Path

import dagster as dg

from foundation import settings
from foundation.rules import (
    AlertRules,
    AllocationRules,
    CarrierRules,
    Rules,
    StockRules,
    load_rules,
)


class AllocationConfig(dg.Config, AllocationRules):
    """Who gets the stock first, and what becomes of a line the stock cannot cover."""


class StockConfig(dg.Config, StockRules):
    """The inventory's stock and restock rule (the simulated inventory applies it)."""


class CarrierConfig(dg.Config, CarrierRules):
    """The carrier's days (the simulated carrier applies them): [fewest, most]."""


class AlertConfig(dg.Config, AlertRules):
    """When an admin is alerted; a rate left empty (null) alerts never."""


class RulesResource(dg.ConfigurableResource):
    """The store's business rules (rules.yaml): allocation, back-orders, stock, carrier, alerts."""

    file: str
    """The rules file these values were read from (`$ORDERFLOW_RULES`, else rules.yaml)."""
    version: str
    """The rules version every decision records: a hash of the values below."""
    allocation: AllocationConfig
    stock: StockConfig
    carrier: CarrierConfig
    alerts: AlertConfig

    @classmethod
    def from_file(cls, path: Path | None = None) -> "RulesResource":
        """The rules in `path` (default: settings.rules_file()); RulesError names a wrong field."""
        path = path or settings.rules_file()
        rules = load_rules(path)
        return cls(
            file=str(path),
            version=rules.version,
            allocation=AllocationConfig(**rules.allocation.model_dump()),
            stock=StockConfig(**rules.stock.model_dump()),
            carrier=CarrierConfig(**rules.carrier.model_dump()),
            alerts=AlertConfig(**rules.alerts.model_dump()),
        )

    def rules(self) -> Rules:
        """The validated rules; a value changed in a run's config (not in the file) is refused."""
        rules = Rules(
            allocation=self.allocation.model_dump(),
            stock=self.stock.model_dump(),
            carrier=self.carrier.model_dump(),
            alerts=self.alerts.model_dump(),
        )
        if rules.version != self.version:
            raise dg.Failure(
                description=(
                    f"The rules in this run's config (version {rules.version}) are not those of "
                    f"{self.file} (version {self.version}): change rules in the file, not in a "
                    "run's config, so that every decision records the rules it was made under."
                ),
                allow_retries=False,
            )
        return rules

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Refuse a run whose config changed the rules before any step decides anything."""
        self.rules()
