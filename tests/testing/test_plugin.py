"""The pytest plugin, run as a user runs it: a small application's test suite, through ``pytester``.

The example suite is the one the "Testing your application" guide shows. It runs on SQLite (a file),
PostgreSQL and MariaDB, sync and async; afterwards its table must be empty, whatever its tests
committed.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from tests.conftest import SERVERS, required_backends

APP = """
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from uow import AsyncUnitOfWorkProtocol, UnitOfWorkProtocol


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "uow_plugin_note"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    text: Mapped[str] = mapped_column(String(40))


def write(unit: UnitOfWorkProtocol, note_id: int, words: str) -> None:
    with unit:
        unit.repository(Note).add(Note(id=note_id, text=words))
        unit.commit()


async def write_async(unit: AsyncUnitOfWorkProtocol, note_id: int, words: str) -> None:
    async with unit:
        await unit.repository(Note).add(Note(id=note_id, text=words))
        await unit.commit()
"""

CONFTEST = """
import pytest

from app import Base


@pytest.fixture(scope="session")
def uow_engine(uow_engine):
    Base.metadata.drop_all(uow_engine)
    Base.metadata.create_all(uow_engine)
    return uow_engine
"""

TESTS = """
import pytest
import sqlalchemy

from app import Note, write
from uow import UnitOfWork
from uow.testing import fail_commit


def test_a_committed_note_is_seen_by_the_next_unit(uow_session_factory):
    write(UnitOfWork(uow_session_factory), 1, "hello")

    with UnitOfWork(uow_session_factory) as unit:
        assert unit.repository(Note).get_one(1).text == "hello"


def test_the_next_test_starts_from_an_empty_table(uow_session_factory):
    with UnitOfWork(uow_session_factory) as unit:
        assert unit.repository(Note).count() == 0
    write(UnitOfWork(uow_session_factory), 1, "again")


def test_a_rollback_inside_the_test_undoes_only_the_units_work(uow_session_factory):
    write(UnitOfWork(uow_session_factory), 1, "kept")
    with UnitOfWork(uow_session_factory) as unit:
        unit.repository(Note).add(Note(id=2, text="dropped"))
        unit.rollback()
        assert [note.id for note in unit.repository(Note).list()] == [1]


def test_a_savepoint_of_the_unit_nests_inside_the_tests_transaction(uow_session_factory):
    with UnitOfWork(uow_session_factory) as unit:
        unit.repository(Note).add(Note(id=1, text="outer"))
        with pytest.raises(LookupError), unit.savepoint():
            unit.repository(Note).add(Note(id=2, text="inner"))
            raise LookupError
        unit.commit()
        assert [note.id for note in unit.repository(Note).list()] == [1]


def test_an_injected_commit_failure_reaches_the_application(uow_session_factory):
    with fail_commit(uow_session_factory, "serialization_failure") as fault:
        with pytest.raises(sqlalchemy.exc.DBAPIError):
            write(UnitOfWork(uow_session_factory), 1, "lost")
    assert fault.fired == 1
    with UnitOfWork(uow_session_factory) as unit:
        assert unit.repository(Note).count() == 0
"""

ASYNC_TESTS = """
import pytest
import sqlalchemy

from app import Note, write_async
from uow import AsyncUnitOfWork
from uow.testing import fail_commit

pytestmark = pytest.mark.anyio


async def test_an_async_unit_commits_into_the_tests_transaction(uow_async_session_factory):
    await write_async(AsyncUnitOfWork(uow_async_session_factory), 1, "hello")

    async with AsyncUnitOfWork(uow_async_session_factory) as unit:
        assert (await unit.repository(Note).get_one(1)).text == "hello"


async def test_the_next_async_test_starts_from_an_empty_table(uow_async_session_factory):
    async with AsyncUnitOfWork(uow_async_session_factory) as unit:
        assert await unit.repository(Note).count() == 0
    await write_async(AsyncUnitOfWork(uow_async_session_factory), 1, "again")


async def test_an_injected_commit_failure_reaches_async_code(uow_async_session_factory):
    await write_async(AsyncUnitOfWork(uow_async_session_factory), 1, "kept")
    with fail_commit(uow_async_session_factory, "deadlock") as fault:
        with pytest.raises(sqlalchemy.exc.DBAPIError):
            await write_async(AsyncUnitOfWork(uow_async_session_factory), 2, "lost")
    assert fault.fired == 1
    async with AsyncUnitOfWork(uow_async_session_factory) as unit:
        assert [note.id for note in await unit.repository(Note).list()] == [1]
"""


def server_url(name: str) -> str:
    url = os.environ.get(SERVERS[name], "")
    if not url:
        message = f"{name}: set {SERVERS[name]} to run the plugin's example suite on it"
        if name in required_backends():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return url


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    return server_url(request.param)


def write_ini(pytester: pytest.Pytester, *lines: str) -> None:
    # Every in-process run imports the plugins' packages anew; rewriting their asserts takes seconds.
    options = "\n".join(
        [
            "filterwarnings = error",
            "addopts = --assert=plain -p no:cacheprovider -p no:hypothesispytest",
            *lines,
        ]
    )
    pytester.makeini(f"[pytest]\n{options}\n")


def write_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        app=textwrap.dedent(APP),
        conftest=textwrap.dedent(CONFTEST),
        test_app=textwrap.dedent(TESTS),
        test_async_app=textwrap.dedent(ASYNC_TESTS),
    )
    write_ini(pytester)


def rows_left(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("uow_plugin_note"):
                return -1
            return int(connection.execute(text("SELECT count(*) FROM uow_plugin_note")).scalar_one())
    finally:
        engine.dispose()


def test_the_example_suite_passes_and_leaves_nothing_behind(
    pytester: pytest.Pytester, database_url: str
) -> None:
    write_suite(pytester)

    result = pytester.runpytest("--uow-url", database_url)

    result.assert_outcomes(passed=8)
    assert rows_left(database_url) == 0


def test_the_plugin_does_nothing_until_its_fixtures_are_used(pytester: pytest.Pytester) -> None:
    write_ini(pytester)
    pytester.makepyfile(test_plain="def test_nothing_to_do_with_databases():\n    assert True\n")

    result = pytester.runpytest()

    result.assert_outcomes(passed=1)


def test_a_missing_database_url_is_a_usage_error_naming_the_ways_to_give_one(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_needs_db="def test_it(uow_session_factory):\n    pass\n")

    result = pytester.runpytest()

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*--uow-url*uow_url*override the uow_engine fixture*"])


def test_the_url_can_come_from_the_ini_file(pytester: pytest.Pytester, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ini.db'}"
    write_ini(pytester, f"uow_url = {url}")
    pytester.makepyfile(
        test_ini=f"""
        from uow import UnitOfWork

        def test_it(uow_session_factory, uow_engine):
            assert str(uow_engine.url) == {url!r}
            with UnitOfWork(uow_session_factory) as unit:
                assert unit.session.connection().exec_driver_sql("SELECT 1").scalar() == 1
        """
    )

    result = pytester.runpytest()

    result.assert_outcomes(passed=1)
