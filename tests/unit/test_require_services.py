"""tests/conftest.py's `require_service`: a test needing a service that did not start is skipped
locally and FAILS under EMPIRE_TEST_REQUIRE_SERVICES=1 (as .ci/run sets), so a CI run where
apt-get could not install PostgreSQL, Redis, Prometheus or Alertmanager cannot go green without
their suites.

The real conftest.py is copied next to a small test file and run by a pytest of its own, once per
mode, with every EMPIRE_TEST_* variable removed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

TESTS = """
import pytest

from conftest import require_service


@pytest.fixture(scope="module")
def exporter():
    raise AssertionError("a module fixture was set up before the service check")


@pytest.mark.prometheus
def test_marked(exporter):
    pass


@pytest.mark.alertmanager
def test_marked_alertmanager():
    pass


def test_redis(redis_url):
    pass


def test_database(database_url):
    assert database_url.startswith("sqlite")  # the PostgreSQL variant needs the service


def test_helper():
    require_service("postgres")
"""


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("services")
    shutil.copy(CONFTEST, d / "conftest.py")
    (d / "test_needs_services.py").write_text(TESTS)
    (d / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        "markers =\n    prometheus\n    alertmanager\n    postgres\n    redis\n"
    )
    return d


def run(suite: Path, strict: str | None) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMPIRE_TEST_")}
    if strict is not None:
        env["EMPIRE_TEST_REQUIRE_SERVICES"] = strict
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "--rootdir", str(suite), str(suite)],
        cwd=suite, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return res.returncode, res.stdout + res.stderr


def test_without_services_they_are_skipped(suite: Path) -> None:
    code, out = run(suite, None)
    assert code == 0 and "1 passed, 5 skipped" in out, out
    assert "set EMPIRE_TEST_PROMETHEUS_URL and EMPIRE_TEST_EXPORTER_PORT (make test starts prometheus)" in out
    assert "set EMPIRE_TEST_REDIS_URL (make test starts redis)" in out
    assert "module fixture was set up" not in out


@pytest.mark.parametrize("value", ["1", "true"])
def test_required_services_fail_with_the_reason(suite: Path, value: str) -> None:
    code, out = run(suite, value)
    # a fixture or the marker hook fails in setup (an error); require_service in a test body fails it
    assert code == 1 and "1 failed, 1 passed, 4 errors" in out, out
    for var, name in [
        ("EMPIRE_TEST_PROMETHEUS_URL and EMPIRE_TEST_EXPORTER_PORT are", "prometheus"),
        ("EMPIRE_TEST_ALERTMANAGER_URL is", "alertmanager"),
        ("EMPIRE_TEST_REDIS_URL is", "redis"),
        ("EMPIRE_TEST_POSTGRES_URL is", "postgres"),
    ]:
        assert f"EMPIRE_TEST_REQUIRE_SERVICES=1 but {var} unset: {name} did not start" in out, out
    assert "module fixture was set up" not in out


def test_zero_means_not_required(suite: Path) -> None:
    assert "1 passed, 5 skipped" in run(suite, "0")[1]
