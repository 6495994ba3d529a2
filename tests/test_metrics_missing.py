"""Without Debian's Prometheus and Pushgateway the tests that need them skip, saying how to install
them; where CI requires them (ORDERFLOW_REQUIRE_METRICS, set by .ci/run), they fail instead."""

from __future__ import annotations

import pytest

from tests import metrics


def test_missing_servers_skip_with_how_to_install_them(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(metrics.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"prometheus-pushgateway.*apt-get install"):
        metrics.require_binaries()


def test_missing_servers_fail_where_they_are_required(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv(metrics.REQUIRE_ENV, "1")
    with pytest.raises(
        pytest.fail.Exception, match=r"apt-get install.*ORDERFLOW_REQUIRE_METRICS is set"
    ):
        metrics.require_binaries()


def test_installed_servers_are_found():
    # This machine has them (.ci/run installs them): the tests above skip for want of PATH only.
    metrics.require_binaries()
