"""`orderflow-sim outage`: an outside system's faults, set and cleared outside any run."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from foundation import settings
from simulator.cli import main
from simulator.outages import Outage, OutageStateError, read_outage


def orderflow_sim(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The installed console script, as a user runs it."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("orderflow-sim")), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def state(data: Path, system: str) -> dict | None:
    path = data / "systems" / "faults" / f"{system}.json"
    return json.loads(path.read_text()) if path.exists() else None


def test_down_then_up_sets_and_clears_the_state_file(tmp_path):
    data = tmp_path / "data"
    done = orderflow_sim("outage", "inventory", "--down", "--data-dir", str(data))
    assert done.returncode == 0, done.stderr
    assert "inventory: down" in done.stdout
    assert state(data, "inventory")["down"] is True
    # No temporary file is left beside it: the state was written under another name, then renamed.
    assert [p.name for p in (data / "systems" / "faults").iterdir()] == ["inventory.json"]
    done = orderflow_sim("outage", "inventory", "--up", "--data-dir", str(data))
    assert done.returncode == 0, done.stderr
    assert "inventory: up" in done.stdout
    assert not (state(data, "inventory") or {}).get("down")


def test_each_fault_is_set_and_clear_turns_them_all_off(tmp_path, capsys):
    data = str(tmp_path)
    assert main(["outage", "carrier", "--slow", "2.5", "--data-dir", data]) == 0
    assert main(["outage", "carrier", "--error-rate", "0.25", "--data-dir", data]) == 0
    assert main(["outage", "carrier", "--reject", "7", "42", "--data-dir", data]) == 0
    assert main(["outage", "carrier", "--down", "--data-dir", data]) == 0
    # Each option changes its own fault and keeps the others.
    assert state(tmp_path, "carrier") == {
        "down": True,
        "slow_seconds": 2.5,
        "error_rate": 0.25,
        "reject_keys": ["7", "42"],
    }
    out = capsys.readouterr().out.splitlines()[-1]
    assert out == "carrier: down; slow 2.5 s per call; error rate 0.25; refuses 7, 42"
    assert main(["outage", "carrier", "--up", "--data-dir", data]) == 0
    assert state(tmp_path, "carrier")["down"] is False
    assert state(tmp_path, "carrier")["slow_seconds"] == 2.5
    assert main(["outage", "carrier", "--clear", "--data-dir", data]) == 0
    assert state(tmp_path, "carrier") is None
    assert capsys.readouterr().out.splitlines()[-1] == "carrier: up, no faults"


def test_without_a_system_every_systems_state_is_shown(tmp_path, capsys):
    data = str(tmp_path)
    assert main(["outage", "notifier", "--down", "--data-dir", data]) == 0
    capsys.readouterr()
    assert main(["outage", "--data-dir", data]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "inventory: up, no faults",
        "carrier: up, no faults",
        "notifier: down",
        "accounting: up, no faults",
    ]
    assert main(["outage", "--show", "--data-dir", data]) == 0
    assert "notifier: down" in capsys.readouterr().out
    # A system with no option shows its own state and changes nothing.
    assert main(["outage", "notifier", "--data-dir", data]) == 0
    assert capsys.readouterr().out == "notifier: down\n"
    assert state(tmp_path, "notifier")["down"] is True


def test_the_default_data_dir_is_the_pipelines(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ORDERFLOW_DATA_DIR", str(tmp_path / "pipeline-data"))
    monkeypatch.chdir(tmp_path)
    assert main(["outage", "accounting", "--down"]) == 0
    assert state(settings.data_dir(), "accounting")["down"] is True
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["outage", "warehouse", "--down"], "invalid choice: 'warehouse'"),
        (["outage", "carrier", "--down", "--up"], "not allowed with argument --down"),
        (["outage", "carrier", "--error-rate", "1.5"], "not a probability in 0..1"),
        (["outage", "carrier", "--slow", "-1"], "not a duration in seconds"),
        (["outage", "--down"], "name the SYSTEM"),
    ],
)
def test_bad_options_exit_2_and_change_nothing(tmp_path, args, error, capsys):
    with pytest.raises(SystemExit) as stopped:
        main([*args, "--data-dir", str(tmp_path)])
    assert stopped.value.code == 2
    assert error in capsys.readouterr().err
    assert not (tmp_path / "systems").exists()


def test_a_damaged_state_file_is_named_with_the_fix(tmp_path, capsys):
    path = tmp_path / "systems" / "faults" / "inventory.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"down": "perhaps"}')
    assert main(["outage", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "--clear" in err
    assert main(["outage", "inventory", "--clear", "--data-dir", str(tmp_path)]) == 0
    assert not path.exists()


def test_a_single_refused_key_must_be_a_list_not_split_into_characters(tmp_path):
    path = tmp_path / "carrier.json"
    path.write_text('{"reject_keys": "42"}')
    with pytest.raises(OutageStateError, match="reject_keys"):
        read_outage(path)
    with pytest.raises(ValueError, match="reject_keys"):
        Outage(reject_keys="42")
    path.write_text('{"reject_keys": ["42"]}')
    assert read_outage(path).describe() == "up; refuses 42"
