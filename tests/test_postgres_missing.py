"""Without Debian's PostgreSQL server the tests that need it skip, saying how to install it; where
CI requires it (ORDERFLOW_REQUIRE_POSTGRES, set by .ci/run), they fail instead."""

from __future__ import annotations

import pytest

from tests import postgres


def test_missing_server_binaries_skip_with_how_to_install_them(tmp_path, monkeypatch):
    monkeypatch.setattr(postgres, "SERVER_PACKAGES", tmp_path)
    monkeypatch.delenv(postgres.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"apt-get install -y postgresql"):
        postgres.server_binaries()


def test_missing_server_binaries_fail_where_they_are_required(tmp_path, monkeypatch):
    monkeypatch.setattr(postgres, "SERVER_PACKAGES", tmp_path)
    monkeypatch.setenv(postgres.REQUIRE_ENV, "1")
    with pytest.raises(
        pytest.fail.Exception, match=r"apt-get install.*ORDERFLOW_REQUIRE_POSTGRES is set"
    ):
        postgres.server_binaries()
