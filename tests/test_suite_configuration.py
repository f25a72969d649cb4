"""How the suite treats database servers it cannot use: skipped with a reason, or failed when required."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
ONE_POSTGRESQL_TEST = (
    "tests/test_state_errors.py::test_a_unit_is_active_only_inside_its_block[postgresql-sync]"
)


def run_suite(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("UOW_TEST_") and not key.startswith("PYTEST_")
    }
    env.update(environment)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", ONE_POSTGRESQL_TEST],
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
