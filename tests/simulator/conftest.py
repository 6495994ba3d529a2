"""Fixtures for the simulator tests: small SF 0.01 stores generated once per session."""

import shutil
from pathlib import Path

import pytest

from foundation.layout import catalog_dir, store_path


@pytest.fixture(scope="session")
def sim_store(store_dir) -> Path:
    """A data dir with a clean SF 0.01 store: the session's shared store (do not write into it)."""
    return store_dir


@pytest.fixture
def day_store(sim_store, tmp_path) -> Path:
    """A fresh data dir holding only the store description and catalog (for simulated days)."""
    shutil.copytree(catalog_dir(sim_store), catalog_dir(tmp_path))
    store_path(tmp_path).parent.mkdir(parents=True)
    shutil.copy(store_path(sim_store), store_path(tmp_path))
    return tmp_path
