"""Fixtures of the landing-zone sensor's tests (helpers in landing_zone.py)."""

from pathlib import Path

import pytest

from sensors.landing import FIRST_TICK_ENV


@pytest.fixture
def instance(dagster_instance):
    """The kind of instance the sensor daemon of `make dev` evaluates the sensor on."""
    return dagster_instance


@pytest.fixture
def first_tick_requests_everything(monkeypatch):
    # These tests follow every file from an empty cursor; the default first tick is a baseline.
    monkeypatch.setenv(FIRST_TICK_ENV, "all")


@pytest.fixture
def landing(tmp_path) -> Path:
    (tmp_path / "landing" / "orders").mkdir(parents=True)
    return tmp_path / "landing"
