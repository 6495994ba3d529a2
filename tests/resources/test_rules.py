"""The business rules: rules.yaml as committed is today's behaviour; a wrong value names its field.

The file is read through foundation/rules.py (the simulator's way) and resources/rules.py (the
pipeline's way, shown in the UI); both are checked on real files in `tmp_path`.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from foundation.rules import RulesError, load_rules
from foundation.settings import PROJECT_ROOT
from resources.rules import RulesResource

COMMITTED = PROJECT_ROOT / "rules.yaml"


def rules_file(tmp_path: Path, old: str = "", new: str = "", name: str = "rules.yaml") -> Path:
    """A copy of the committed rules with `old` replaced by `new`."""
    text = COMMITTED.read_text()
    assert old in text, old
    path = tmp_path / name
    path.write_text(text.replace(old, new, 1))
    return path


def test_the_committed_rules_are_todays_behaviour():
    rules = load_rules(COMMITTED)
    assert rules.allocation.model_dump() == {"order": "fcfs", "backorder": "line"}
    assert rules.stock.model_dump() == {"base_level_divisor": 12, "restock": "month"}
    assert rules.carrier.handling_days == [1, 3]
    assert rules.carrier.transit_days == {
        "AIR": [1, 3],
        "REG AIR": [2, 5],
        "TRUCK": [3, 8],
        "MAIL": [4, 12],
        "FOB": [5, 15],
        "RAIL": [7, 25],
        "SHIP": [14, 60],
    }
    assert rules.alerts.model_dump() == {
        "max_backorder_rate": None,
        "min_on_time_rate": None,
        "reconciliation_tolerance": 0.0,
    }


def test_the_version_is_the_values_not_the_layout(tmp_path):
    version = load_rules(COMMITTED).version
    assert len(version) == 12
    commented = rules_file(tmp_path, "allocation:", "# a comment\nallocation:", "commented.yaml")
    assert load_rules(commented).version == version
    changed = rules_file(tmp_path, "order: fcfs", "order: priority", "changed.yaml")
    assert load_rules(changed).version != version


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "order: fcfs",
            "order: priority_first",
            "allocation.order: 'priority_first' is not one of ['fcfs', 'priority']",
        ),
        ("backorder: line", "backorder: all", "allocation.backorder: 'all' is not one of"),
        ("base_level_divisor: 12", "base_level_divisor: 0", "stock.base_level_divisor: input"),
        ("restock: month", "restock: daily", "stock.restock: 'daily' is not one of"),
        ("restock: month", "restocks: month", "stock.restocks: unknown field"),
        ("handling_days: [1, 3]", "handling_days: [3, 1]", "carrier.handling_days: fewest days"),
        ("TRUCK: [3, 8]", "TRUK: [3, 8]", "carrier.transit_days: unknown ship mode 'TRUK'"),
        ("SHIP: [14, 60]", "SHIP: [14]", "carrier.transit_days.SHIP: list should have at least 2"),
        (
            "max_backorder_rate: null",
            "max_backorder_rate: 1.5",
            "alerts.max_backorder_rate: input should be less than or equal to 1, not 1.5",
        ),
        ("reconciliation_tolerance: 0.0", "", "alerts.reconciliation_tolerance: missing"),
        ("allocation:", "allocation: [\n", "not valid YAML"),
    ],
)
def test_a_wrong_value_is_refused_naming_the_file_and_the_field(tmp_path, old, new, message):
    path = rules_file(tmp_path, old, new)
    with pytest.raises(RulesError) as refused:
        load_rules(path)
    assert str(refused.value).startswith(f"{path}: ")
    assert message in str(refused.value)
    # The resource refuses it the same way: the definitions do not load.
    with pytest.raises(RulesError, match=message.replace("[", r"\[").replace("]", r"\]")):
        RulesResource.from_file(path)


def test_a_missing_file_names_the_variable(tmp_path):
    with pytest.raises(RulesError, match="ORDERFLOW_RULES"):
        load_rules(tmp_path / "nowhere.yaml")


def test_the_resource_shows_every_rule_and_the_version(tmp_path):
    path = rules_file(tmp_path, "order: fcfs", "order: priority")
    resource = RulesResource.from_file(path)
    assert resource.file == str(path)
    assert resource.version == load_rules(path).version
    assert resource.allocation.order == "priority"
    assert resource.carrier.transit_days["SHIP"] == [14, 60]
    assert resource.rules() == load_rules(path)
    # Every section is typed config, shown field by field in the UI's resource view.
    fields = RulesResource.to_config_schema().as_field().config_type.fields
    assert set(fields) == {"file", "version", "allocation", "stock", "carrier", "alerts"}
    choices = fields["allocation"].config_type.fields["order"].config_type.enum_values
    assert [choice.config_value for choice in choices] == ["fcfs", "priority"]


def test_rules_changed_in_a_runs_config_are_refused(tmp_path):
    @dg.asset
    def decides(rules: RulesResource) -> None:
        rules.rules()

    rules = load_rules(COMMITTED)
    edited = {"file": str(COMMITTED), "version": rules.version, **rules.model_dump()}
    edited["allocation"]["order"] = "priority"
    result = dg.materialize(
        [decides],
        resources={"rules": RulesResource.from_file(COMMITTED)},
        run_config={"resources": {"rules": {"config": edited}}},
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_failure)
    assert "change rules in the file, not in a run's config" in str(failure.event_specific_data)
