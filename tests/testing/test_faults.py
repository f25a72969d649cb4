"""Fault injection: the chosen error reaches the code under test as the database would raise it."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import create_engine, event, insert, text

import uow
from tests.conftest import Backend
from tests.drivers import Flavour
from tests.models import User
from uow.testing import fail_commit, fail_statement, rolled_back_sessions


def driver_code(error: BaseException) -> object:
    """The code the driver reported: SQLSTATE, MariaDB error number, or SQLite extended result code."""
    orig: Any = getattr(error, "orig", None)
    code = getattr(orig, "sqlite_errorcode", None) or getattr(orig, "sqlstate", None)
    if code is None or (
        isinstance(code, str) and getattr(orig, "args", None) and isinstance(orig.args[0], int)
    ):
        return orig.args[0]
    return code


TRANSIENT = {"postgresql": ("40001", "40P01"), "mariadb": (1213, 1213), "sqlite": (5, 5)}


def test_an_injected_duplicate_key_is_translated_like_a_real_one(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit() as unit, fail_statement(flavour.engine, "duplicate_key", matching="INSERT") as fault:
        unit.repository(User).add(User(id="1", name="ann"))
        with pytest.raises(uow.DuplicateKeyError) as caught:
            unit.commit()
        assert isinstance(caught.value.__cause__, sqlalchemy.exc.IntegrityError)

    assert fault.fired == 1
    assert backend.users() == []


def test_an_injected_integrity_error_is_not_a_duplicate_key(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit() as unit, fail_statement(flavour.engine, "integrity_error", matching="INSERT"):
        unit.repository(User).add(User(id="1", name="ann"))
        with pytest.raises(uow.IntegrityError) as caught:
            unit.commit()
        assert not isinstance(caught.value, uow.DuplicateKeyError)

    assert backend.users() == []


@pytest.mark.parametrize("kind", ["serialization_failure", "deadlock"])
def test_an_injected_transient_error_carries_the_backends_own_code(
    flavour: Flavour, backend: Backend, kind: str
) -> None:
    with flavour.unit() as unit, fail_statement(flavour.engine, kind):  # type: ignore[arg-type]
        with pytest.raises(sqlalchemy.exc.DBAPIError) as caught:
            unit.repository(User).count()
        unit.rollback()

    expected = TRANSIENT[backend.kind][kind == "deadlock"]
    assert driver_code(caught.value) == expected
    assert "injected by uow.testing" in str(caught.value)


def test_an_injected_error_reaches_error_listeners_as_the_drivers_own(
    flavour: Flavour, backend: Backend
) -> None:
    engine = getattr(flavour.engine, "sync_engine", flavour.engine)
    seen: list[BaseException] = []

    def record(context: Any) -> None:
        seen.append(context.original_exception)

    event.listen(engine, "handle_error", record)
    try:
        with flavour.unit() as unit, fail_statement(flavour.engine, "deadlock"):
            with pytest.raises(sqlalchemy.exc.DBAPIError) as caught:
                unit.repository(User).count()
            unit.rollback()
    finally:
        event.remove(engine, "handle_error", record)

    assert seen == [caught.value.orig]


def test_a_statement_for_many_rows_fails_as_one(flavour: Flavour, backend: Backend) -> None:
    rows = [{"id": "1", "name": "ann"}, {"id": "2", "name": "ben"}]
    with flavour.unit() as unit, fail_statement(flavour.engine, "duplicate_key", matching="INSERT") as fault:
        with pytest.raises(sqlalchemy.exc.IntegrityError):
            unit.execute(insert(User), rows)
        unit.rollback()

    assert fault.fired == 1
    assert backend.users() == []


def test_an_injected_disconnect_invalidates_the_connection_and_the_unit_goes_on(
    flavour: Flavour, backend: Backend
) -> None:
    with flavour.unit() as unit:
        with fail_statement(flavour.engine, "disconnect"), pytest.raises(sqlalchemy.exc.DBAPIError) as caught:
            unit.repository(User).count()
        assert caught.value.connection_invalidated
        unit.rollback()
        unit.repository(User).add(User(id="2", name="ben"))
        unit.commit()

    assert flavour.checked_out() == 0
    assert backend.users() == [("2", "ben")]


def test_only_the_nth_matching_statement_fails(flavour: Flavour, backend: Backend) -> None:
    with (
        flavour.unit() as unit,
        fail_statement(flavour.engine, "deadlock", nth=2, matching=r"count\(") as fault,
    ):
        users = unit.repository(User)
        users.count()
        unit.execute(text("SELECT 1"))
        with pytest.raises(sqlalchemy.exc.DBAPIError):
            users.count()
        unit.rollback()
        users.count()

    assert (fault.seen, fault.fired) == (3, 1)


def test_an_exception_instance_is_raised_as_it_is(flavour: Flavour, backend: Backend) -> None:
    error = LookupError("from the test")
    with flavour.unit() as unit, fail_statement(flavour.engine, error), pytest.raises(LookupError) as caught:
        unit.repository(User).count()

    assert caught.value is error
    assert flavour.checked_out() == 0


def test_a_failed_commit_commits_nothing_and_the_unit_goes_on(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        with (
            fail_commit(flavour.engine, "serialization_failure") as fault,
            pytest.raises(sqlalchemy.exc.DBAPIError),
        ):
            unit.commit()
        assert backend.users() == []
        unit.repository(User).add(User(id="2", name="ben"))
        unit.commit()

    assert fault.fired == 1
    assert backend.users() == [("2", "ben")]


def test_a_commit_fault_fails_that_many_commits_then_lets_them_through(
    flavour: Flavour, backend: Backend
) -> None:
    outcomes = []
    with fail_commit(flavour.engine, "deadlock", nth=2, times=2) as fault:
        for attempt in range(4):
            with flavour.unit() as unit:
                unit.repository(User).add(User(id=str(attempt), name="x"))
                try:
                    unit.commit()
                except sqlalchemy.exc.DBAPIError:
                    outcomes.append("failed")
                else:
                    outcomes.append("committed")

    assert outcomes == ["committed", "failed", "failed", "committed"]
    assert (fault.seen, fault.fired) == (4, 2)
    assert backend.users() == [("0", "x"), ("3", "x")]


def test_a_disconnect_at_commit_commits_nothing(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        with fail_commit(flavour.engine, "disconnect"), pytest.raises(sqlalchemy.exc.DBAPIError) as caught:
            unit.commit()
        assert caught.value.connection_invalidated

    assert flavour.checked_out() == 0
    assert backend.users() == []


# -- with the sessions of rolled_back_sessions ------------------------------------------------------


SYNC = pytest.mark.parametrize("flavour", ["sync"], indirect=True)


@SYNC
def test_a_commit_fault_on_rolled_back_sessions_fails_the_units_commit_and_undoes_its_work(
    flavour: Flavour, backend: Backend
) -> None:
    with rolled_back_sessions(flavour.engine) as factory:  # type: ignore[arg-type]
        with uow.UnitOfWork(factory) as unit:
            unit.repository(User).add(User(id="1", name="kept"))
            unit.commit()
            unit.repository(User).add(User(id="2", name="lost"))
            with (
                fail_commit(factory, "serialization_failure") as fault,
                pytest.raises(sqlalchemy.exc.DBAPIError),
            ):
                unit.commit()
        with uow.UnitOfWork(factory) as unit:
            assert [user.id for user in unit.repository(User).list(order_by="id")] == ["1"]

    assert fault.fired == 1
    assert backend.users() == []


@SYNC
def test_a_savepoint_of_the_unit_is_not_taken_for_its_commit(flavour: Flavour, backend: Backend) -> None:
    with (
        rolled_back_sessions(flavour.engine) as factory,  # type: ignore[arg-type]
        uow.UnitOfWork(factory) as unit,
        fail_commit(factory, "deadlock") as fault,
    ):
        with unit.savepoint():
            unit.repository(User).add(User(id="1", name="ann"))
        assert fault.seen == 0
        with pytest.raises(sqlalchemy.exc.DBAPIError):
            unit.commit()

    assert (fault.seen, fault.fired) == (1, 1)


@SYNC
def test_a_unit_run_with_retries_commits_after_the_injected_failures(
    flavour: Flavour, backend: Backend
) -> None:
    def work(unit: uow.UnitOfWork) -> None:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.commit()

    retry = uow.Retry(attempts=3, sleep=lambda seconds: None)
    with fail_commit(flavour.engine, "serialization_failure", times=2) as fault:
        uow.UnitOfWork(flavour.session_factory).run(work, retry=retry)

    assert fault.fired == 2
    assert backend.users() == [("1", "ann")]


# -- refused arguments --------------------------------------------------------------------------------


def test_a_target_that_is_no_engine_connection_or_session_factory_is_refused() -> None:
    with pytest.raises(uow.InvalidArgumentError, match="Engine"), fail_statement("sqlite://", "deadlock"):
        pass


@pytest.mark.parametrize(
    "arguments",
    [{"error": "meltdown"}, {"error": "deadlock", "nth": 0}, {"error": "deadlock", "times": True}],
    ids=str,
)
def test_an_unknown_error_or_a_count_that_is_not_positive_is_refused(arguments: dict[str, Any]) -> None:
    engine = create_engine("sqlite://")
    with pytest.raises(uow.InvalidArgumentError), fail_statement(engine, **arguments):
        pass


def test_a_synthesized_sqlite_error_is_the_drivers_own_class() -> None:
    engine = create_engine("sqlite://")
    with (
        engine.connect() as connection,
        fail_statement(connection, "duplicate_key"),
        pytest.raises(sqlalchemy.exc.IntegrityError) as caught,
    ):
        connection.exec_driver_sql("SELECT 1")
    assert isinstance(caught.value.orig, sqlite3.IntegrityError)
    assert caught.value.orig.sqlite_errorcode == 2067
