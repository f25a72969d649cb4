"""``python -m uow.examples.users`` reproduces the reference scenario, SQL log included."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Backend

DATA = Path(__file__).parent / "data"
RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO sqlalchemy\.engine\.Engine ?", re.M)
TIMING = re.compile(r"^\[(?:raw sql|generated in [\d.]+s|cached since [\d.]+s ago|no key [\d.]+s)\] ")
TYPE_LINE = "type: <class '__main__.User'>"
NAME_LINE = "name: hanmeimei"


def run_example(*args: str) -> subprocess.CompletedProcess[str]:
    return run_python("-m", "uow.examples.users", *args)


def run_python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )


def log_records(output: str) -> list[str]:
    """The engine log as a list of records, with timestamps and timings taken out.

    Lines the program printed itself stay in the record they follow, as in the terminal.
    """
    records = []
    for raw in RECORD.split(output)[1:]:
        record = " ".join(raw.split())
        records.append(TIMING.sub("[params] ", record))
    return records


def statements(output: str) -> list[str]:
    """Only the SQL statements and their parameters, without what the program printed."""
    return [record.replace(TYPE_LINE, "").replace(NAME_LINE, "").strip() for record in log_records(output)]


def without_column_labels(records: list[str]) -> list[str]:
    """The legacy ``Query`` API labels its columns (``user.id AS user_id``); ``select()`` does not."""
    return [re.sub(r" AS \w+", "", record) for record in records]


SEED = (DATA / "reference_output.txt").read_text()


def test_the_seed_output_is_the_statement_sequence_the_scenario_requires() -> None:
    heads = [record.split(" ")[0] for record in statements(SEED)]
    assert heads == [
        "BEGIN", "PRAGMA", "[params]", "PRAGMA", "[params]", "CREATE", "[params]", "COMMIT",
        "BEGIN", "INSERT", "[params]", "COMMIT",
        "BEGIN", "SELECT", "[params]", "ROLLBACK",
    ]  # fmt: skip


@pytest.mark.parametrize("flags", [[], ["--async"]], ids=["sync", "async"])
def test_the_example_prints_the_seed_sql_and_reads_back_hanmeimei(flags: list[str]) -> None:
    result = run_example(*flags)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert without_column_labels(statements(result.stdout)) == without_column_labels(statements(SEED))
    printed = [line for line in result.stdout.splitlines() if not RECORD.match(line)]
    assert TYPE_LINE in printed
    assert NAME_LINE in printed
    # read back after the SELECT, before leaving the block rolls back
    select_record = next(r for r in log_records(result.stdout) if r.startswith("[params] ('7',)"))
    assert select_record == f"[params] ('7',) {TYPE_LINE} {NAME_LINE}"
    assert log_records(result.stdout)[-1] == "ROLLBACK"


def test_the_example_sends_exactly_the_sql_of_plain_sqlalchemy() -> None:
    ours = run_example()
    plain = run_python(str(DATA / "plain_scenario.py"))

    assert plain.returncode == 0, plain.stderr
    assert ours.returncode == 0, ours.stderr
    assert log_records(ours.stdout) == log_records(plain.stdout)


def test_quiet_prints_only_what_the_scenario_reads() -> None:
    result = run_example("--quiet")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [TYPE_LINE, NAME_LINE]


@pytest.mark.parametrize("flags", [[], ["--async"]], ids=["sync", "async"])
def test_the_example_runs_on_every_backend_and_commits_only_hanmeimei(
    backend: Backend, flags: list[str]
) -> None:
    url = backend.async_url if flags else backend.url
    if backend.name == "sqlite-memory":
        url = "sqlite+aiosqlite://" if flags else "sqlite://"

    result = run_example("--quiet", "--url", url, *flags)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [TYPE_LINE, NAME_LINE]
    if backend.name != "sqlite-memory":  # a private in-memory database dies with the process
        assert backend.users() == [("7", "hanmeimei")]


def test_running_twice_on_one_database_reports_the_existing_row_in_one_line(workdir: Path) -> None:
    url = f"sqlite:///{workdir / 'users.db'}"
    assert run_example("--quiet", "--url", url).returncode == 0

    again = run_example("--quiet", "--url", url)

    assert again.returncode == 1
    assert again.stdout == ""
    assert len(again.stderr.splitlines()) == 1
    assert again.stderr.startswith("error: ")
    assert "UNIQUE constraint failed" in again.stderr


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("not a url", 2, "cannot use database URL"),
        ("nosuchdb://", 2, "cannot use database URL"),
        ("postgresql+psycopg://postgres@127.0.0.1:1/uow", 1, "error: "),
        ("mysql+pymysql://root@127.0.0.1:1/uow", 1, "error: "),
    ],
    ids=["malformed", "unknown-dialect", "postgresql-unreachable", "mariadb-unreachable"],
)
@pytest.mark.parametrize("flags", [[], ["--async"]], ids=["sync", "async"])
def test_a_bad_url_or_unreachable_server_gives_one_line_and_a_nonzero_exit(
    url: str, status: int, message: str, flags: list[str]
) -> None:
    if flags:
        url = url.replace("+psycopg", "+asyncpg").replace("+pymysql", "+aiomysql")

    result = run_example("--url", url, *flags)

    assert result.returncode == status
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def assert_one_line_error(result: subprocess.CompletedProcess[str], *parts: str) -> None:
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ")
    for part in parts:
        assert part in result.stderr


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite://",
        "postgresql+asyncpg://postgres@127.0.0.1:1/uow",
        "mysql+aiomysql://root@127.0.0.1:1/uow",
    ],
    ids=["sqlite", "postgresql", "mariadb"],
)
def test_an_async_url_without_async_asks_for_async_in_one_line(url: str) -> None:
    result = run_example("--url", url)

    assert_one_line_error(result, "is an async driver: add --async")


@pytest.mark.parametrize(
    ("url", "problem", "needed"),
    [
        (
            "sqlite://",
            "sqlite+pysqlite is a sync driver",
            "sqlite needs an async driver such as sqlite+aiosqlite",
        ),
        (
            "mysql+pymysql://root@127.0.0.1:1/uow",
            "mysql+pymysql is a sync driver",
            "mysql needs an async driver such as mysql+aiomysql",
        ),
        (
            "postgresql+psycopg2://postgres@127.0.0.1:1/uow",
            "psycopg2 is not installed",
            "postgresql needs an async driver such as postgresql+asyncpg",
        ),
    ],
    ids=["sqlite", "mariadb", "postgresql"],
)
def test_async_with_a_sync_driver_names_the_async_driver_the_url_needs(
    url: str, problem: str, needed: str
) -> None:
    result = run_example("--async", "--url", url)

    assert_one_line_error(result, f"--async: {problem}", needed)


@pytest.mark.parametrize(
    ("missing", "arguments", "needed"),
    [
        ("greenlet", ["--async"], "sqlite needs an async driver such as sqlite+aiosqlite"),
        (
            "asyncpg",
            ["--async", "--url", "postgresql+asyncpg://postgres@127.0.0.1:1/uow"],
            "postgresql needs an async driver such as postgresql+asyncpg (pip install 'uow[asyncpg]')",
        ),
        (
            "aiomysql",
            ["--async", "--url", "mysql+aiomysql://root@127.0.0.1:1/uow"],
            "mysql needs an async driver such as mysql+aiomysql (pip install 'uow[aiomysql]')",
        ),
    ],
    ids=["greenlet", "asyncpg", "aiomysql"],
)
def test_async_without_greenlet_or_the_driver_names_the_driver_to_install(
    missing: str, arguments: list[str], needed: str
) -> None:
    """`missing` is made impossible to import, as if it were not installed."""
    program = (
        f"import sys; sys.modules[{missing!r}] = None; "
        f"from uow.examples.users import main; sys.exit(main({arguments!r}))"
    )
    result = run_python("-c", program)

    assert_one_line_error(result, f"--async: {missing} is not installed", needed)
