"""How the suite treats database servers it cannot use: skipped with a reason, or failed when required."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import make_url

ROOT = Path(__file__).parent.parent
ONE_POSTGRESQL_TEST = (
    "tests/test_state_errors.py::test_a_unit_is_active_only_inside_its_block[postgresql-sync]"
)


ONE_MARIADB_TEST = "tests/test_state_errors.py::test_a_unit_is_active_only_inside_its_block[mariadb-sync]"


def run_suite(
    environment: dict[str, str], test: str = ONE_POSTGRESQL_TEST
) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("UOW_TEST_") and not key.startswith("PYTEST_")
    }
    env.update(environment)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_an_unset_server_is_skipped_with_the_variable_to_set() -> None:
    result = run_suite({})

    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout
    assert "set UOW_TEST_POSTGRESQL_URL" in result.stdout


def test_an_unset_server_that_is_required_fails_the_run() -> None:
    result = run_suite({"UOW_TEST_REQUIRE": "postgresql"})

    assert result.returncode != 0
    assert "UOW_TEST_REQUIRE names it" in result.stdout


def test_an_unreachable_server_that_is_required_fails_the_run() -> None:
    result = run_suite(
        {
            "UOW_TEST_POSTGRESQL_URL": "postgresql+psycopg://postgres@127.0.0.1:1/nowhere",
            "UOW_TEST_REQUIRE": "postgresql",
        }
    )

    assert result.returncode != 0
    assert "unreachable" in result.stdout


def test_forbidding_skips_turns_a_skip_into_a_failed_run() -> None:
    result = run_suite({"UOW_TEST_FORBID_SKIPS": "1"})

    assert result.returncode != 0
    assert "skipped while UOW_TEST_FORBID_SKIPS=1" in result.stdout


@pytest.mark.parametrize(
    ("server", "variable", "test"),
    [
        ("postgresql", "UOW_TEST_POSTGRESQL_URL", ONE_POSTGRESQL_TEST),
        ("mariadb", "UOW_TEST_MARIADB_URL", ONE_MARIADB_TEST),
    ],
)
def test_a_missing_database_on_a_reachable_server_is_named_with_how_to_create_it(
    server: str, variable: str, test: str
) -> None:
    if not os.environ.get(variable):
        pytest.skip(f"{server}: set {variable} to run the tests on it")
    database = f"uow_missing_{uuid.uuid4().hex[:8]}"
    url = make_url(os.environ[variable]).set(database=database).render_as_string(hide_password=False)

    result = run_suite({variable: url, "UOW_TEST_REQUIRE": server}, test)

    assert result.returncode != 0
    assert f"{server}: database '{database}' does not exist on the server" in result.stdout
    assert "create it with" in result.stdout
    assert "unreachable" not in result.stdout


ONE_REPLICA_TEST = "tests/test_replicas.py::test_a_session_used_without_a_unit_goes_to_the_primary"
ONE_GALERA_TEST = "tests/test_galera.py::test_a_certification_failure_is_a_transient_error"


def test_an_unset_cluster_is_skipped_with_the_variable_to_set_and_the_script_that_makes_it() -> None:
    result = run_suite({}, ONE_REPLICA_TEST)

    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout
    assert "set UOW_TEST_PG_PRIMARY_URL" in result.stdout
    assert ".ci/clusters/postgresql-replica start" in result.stdout


def test_an_unset_cluster_that_is_required_fails_the_run() -> None:
    result = run_suite({"UOW_TEST_REQUIRE": "galera"}, ONE_GALERA_TEST)

    assert result.returncode != 0
    assert "set UOW_TEST_GALERA_URLS" in result.stdout
    assert "UOW_TEST_REQUIRE names galera" in result.stdout
