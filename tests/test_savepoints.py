"""Savepoints, and the guard against committing half of a unit's work."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import create_engine, insert, text
from sqlalchemy.orm import sessionmaker

import uow
from tests.conftest import Backend
from tests.drivers import Flavour
from tests.models import Account, User

SQLITE = pytest.mark.parametrize("backend_setup", ["sqlite-memory", "sqlite-file"], indirect=True)


class Boom(Exception):
    pass


# -- savepoints ---------------------------------------------------------------------------------


def test_an_exception_in_a_savepoint_rolls_back_only_the_savepoint(
    flavour: Flavour, backend: Backend
) -> None:
    with flavour.unit() as unit:
        users = unit.repository(User)
        users.add(User(id="1", name="before"))
        with pytest.raises(Boom), unit.savepoint():
            maybe = users.add(User(id="2", name="inside"))
            unit.flush()
            raise Boom
        assert maybe not in unit.session
        users.add(User(id="3", name="after"))
        unit.commit()

    assert backend.users() == [("1", "before"), ("3", "after")]


def test_a_savepoint_left_normally_is_kept_with_the_unit(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit() as unit:
        with unit.savepoint():
            unit.repository(User).add(User(id="1", name="inside"))
        unit.commit()

    assert backend.users() == [("1", "inside")]


def test_savepoints_nest_and_an_inner_failure_keeps_the_outer_savepoints_work(
    flavour: Flavour, backend: Backend
) -> None:
    with flavour.unit() as unit:
        users = unit.repository(User)
        with unit.savepoint():
            users.add(User(id="1", name="level 1"))
            with unit.savepoint():
                users.add(User(id="2", name="level 2"))
                with pytest.raises(Boom), unit.savepoint():
                    users.add(User(id="3", name="level 3"))
                    raise Boom
        unit.commit()

    assert backend.users() == [("1", "level 1"), ("2", "level 2")]


def test_rolling_back_the_unit_undoes_released_savepoints_on_every_backend(
    flavour: Flavour, backend: Backend
) -> None:
    with flavour.unit() as unit:
        with unit.savepoint():
            unit.repository(User).add(User(id="1", name="released"))
        unit.rollback()
        unit.commit()

    assert backend.users() == []


def test_a_duplicate_flushed_when_a_savepoint_is_released_rolls_back_only_that_savepoint(
    flavour: Flavour, backend: Backend
) -> None:
    backend.insert(User(id="1", name="ann"))
    with flavour.unit() as unit:
        users = unit.repository(User)
        users.add(User(id="2", name="ben"))
        with pytest.raises(uow.DuplicateKeyError), unit.savepoint():
            users.add(User(id="1", name="twin"))
        unit.commit()

    assert backend.users() == [("1", "ann"), ("2", "ben")]


@pytest.mark.parametrize("call", ["commit", "rollback"])
def test_commit_and_rollback_are_refused_inside_a_savepoint(
    flavour: Flavour, backend: Backend, call: str
) -> None:
    with flavour.unit() as unit:
        with unit.savepoint():
            unit.repository(User).add(User(id="1", name="ann"))
            with pytest.raises(uow.StateError, match="inside a savepoint"):
                getattr(unit, call)()
        unit.commit()

    assert backend.users() == [("1", "ann")]


def test_a_commit_through_the_session_inside_a_savepoint_is_refused_and_the_savepoint_holds(
    flavour: Flavour, backend: Backend
) -> None:
    with flavour.unit() as unit:
        users = unit.repository(User)
        users.add(User(id="1", name="before"))
        with pytest.raises(uow.StateError, match="inside a savepoint"), unit.savepoint():
            users.add(User(id="2", name="inside"))
            flavour.run(unit.session.commit())
        unit.commit()

    assert backend.users() == [("1", "before")]


@pytest.mark.parametrize("block_raises", [True, False], ids=["block raises", "block ends normally"])
def test_after_a_rollback_through_the_session_inside_a_savepoint_the_block_owns_the_new_transaction(
    flavour: Flavour, backend: Backend, block_raises: bool
) -> None:
    with flavour.unit() as unit:
        users = unit.repository(User)
        users.add(User(id="1", name="rolled back"))
        with pytest.raises(ValueError) if block_raises else nullcontext(), unit.savepoint():
            users.add(User(id="2", name="rolled back"))
            flavour.run(unit.session.rollback())
            users.add(User(id="3", name="in the block"))
            if block_raises:
                raise ValueError("the block fails")
        users.add(User(id="4", name="after"))
        unit.commit()

    kept = [("4", "after")] if block_raises else [("3", "in the block"), ("4", "after")]
    assert backend.users() == kept


def test_a_savepoint_outside_a_block_raises_state_error(flavour: Flavour, backend: Backend) -> None:
    unit = flavour.unit()
    with pytest.raises(uow.StateError, match="savepoint"), unit.savepoint():
        pass


@SQLITE
def test_a_savepoint_on_a_sqlite_engine_that_is_not_set_up_is_refused(backend: Backend) -> None:
    engine = create_engine(backend.url, **backend.engine_options)
    try:
        with uow.UnitOfWork(sessionmaker(engine)) as unit:
            unit.repository(User).add(User(id="1", name="ann"))
            with pytest.raises(uow.StateError, match=r"configure_sqlite"), unit.savepoint():
                pass
            unit.rollback()
    finally:
        engine.dispose()
    assert backend.users() == []


@SQLITE
def test_savepoints_on_an_engine_set_up_with_sqlalchemys_sqlite_recipe_are_atomic(backend: Backend) -> None:
    engine = create_engine(backend.url, **backend.engine_options)

    @sqlalchemy.event.listens_for(engine, "connect")
    def do_connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sqlalchemy.event.listens_for(engine, "begin")
    def do_begin(connection: sqlalchemy.Connection) -> None:
        connection.exec_driver_sql("BEGIN")

    try:
        with uow.UnitOfWork(sessionmaker(engine)) as unit:
            with unit.savepoint():
                unit.repository(User).add(User(id="1", name="released"))
            unit.rollback()
            unit.repository(User).add(User(id="2", name="kept"))
            unit.commit()
    finally:
        engine.dispose()
    assert backend.users() == [("2", "kept")]


@SQLITE
def test_a_savepoint_after_the_driver_began_its_own_transaction_is_allowed_and_atomic(
    backend: Backend,
) -> None:
    engine = create_engine(backend.url, **backend.engine_options)
    try:
        with uow.UnitOfWork(sessionmaker(engine)) as unit:
            unit.session.execute(insert(User).values(id="1", name="written first"))
            with unit.savepoint():
                unit.repository(User).add(User(id="2", name="released"))
            unit.rollback()
    finally:
        engine.dispose()
    assert backend.users() == []


def test_configure_sqlite_refuses_other_databases(backend: Backend) -> None:
    if backend.kind == "sqlite":
        engine = create_engine("sqlite://")
        uow.configure_sqlite(engine)
        uow.configure_sqlite(engine)  # a second call changes nothing
        with engine.begin() as connection:
            assert connection.execute(text("SELECT 1")).scalar_one() == 1
        engine.dispose()
    else:
        with pytest.raises(uow.InvalidArgumentError, match="SQLite"):
            uow.configure_sqlite(backend.check)


# -- the partial-commit guard -------------------------------------------------------------------


def test_a_caught_failure_of_a_raw_statement_makes_commit_refuse(flavour: Flavour, backend: Backend) -> None:
    backend.insert(User(id="1", name="ann"))
    with flavour.unit() as unit:
        unit.repository(Account).add(Account(id=1, owner="ben"))
        unit.flush()
        with pytest.raises(sqlalchemy.exc.IntegrityError):
            unit.execute(insert(User).values(id="1", name="twin"))
        with pytest.raises(uow.StateError, match="roll"):
            unit.commit()
        unit.rollback()
        unit.commit()

    assert backend.accounts() == []
    assert backend.users() == [("1", "ann")]


def test_a_caught_failure_of_a_repository_call_makes_commit_refuse(
    flavour: Flavour, backend: Backend
) -> None:
    backend.insert(User(id="1", name="ann"))
    with flavour.unit() as unit:
        users = unit.repository(User)
        users.insert_many([{"id": "2", "name": "ben"}])
        with pytest.raises(uow.DuplicateKeyError):
            users.insert_many([{"id": "1", "name": "twin"}])
        with pytest.raises(uow.StateError, match="could save only part"):
            unit.commit()
        unit.rollback()

    assert backend.users() == [("1", "ann")]


def test_a_failure_inside_a_rolled_back_savepoint_does_not_block_commit(
    flavour: Flavour, backend: Backend
) -> None:
    backend.insert(User(id="1", name="ann"))
    with flavour.unit() as unit:
        users = unit.repository(User)
        users.add(User(id="2", name="ben"))
        with pytest.raises(uow.DuplicateKeyError), unit.savepoint():
            users.insert_many([{"id": "1", "name": "twin"}])
        unit.commit()

    assert backend.users() == [("1", "ann"), ("2", "ben")]


def test_a_savepoint_whose_statement_failed_and_was_caught_inside_is_rolled_back_not_released(
    flavour: Flavour, backend: Backend
) -> None:
    backend.insert(User(id="1", name="ann"))
    with flavour.unit() as unit:
        users = unit.repository(User)
        users.add(User(id="2", name="ben"))
        with pytest.raises(uow.StateError, match="rolled back instead of released"), unit.savepoint():
            users.insert_many([{"id": "3", "name": "cat"}])
            with pytest.raises(uow.DuplicateKeyError):
                users.insert_many([{"id": "1", "name": "twin"}])
        unit.commit()

    assert backend.users() == [("1", "ann"), ("2", "ben")]


def test_rollback_clears_the_failure_and_the_unit_goes_on(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit() as unit:
        with pytest.raises(sqlalchemy.exc.DBAPIError):
            unit.execute(text("SELECT * FROM no_such_table_anywhere"))
        unit.rollback()
        unit.repository(User).add(User(id="1", name="ann"))
        unit.commit()

    assert backend.users() == [("1", "ann")]
