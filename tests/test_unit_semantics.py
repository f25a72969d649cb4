"""What a unit of work does on commit, rollback, exception and leaving its block."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import Column, Integer, MetaData, Table, event, insert, text
from sqlalchemy.schema import CreateTable

import uow
from tests.conftest import Backend
from tests.drivers import Flavour
from tests.models import Account, User


@contextmanager
def failing(flavour: Flavour, operation: str) -> Iterator[None]:
    """Make every COMMIT or ROLLBACK sent through the flavour's engine fail, as a dead server would."""
    engine = getattr(flavour.engine, "sync_engine", flavour.engine)

    def fail(connection: Any) -> None:
        raise RuntimeError(f"{operation} failed")

    event.listen(engine, operation, fail)
    try:
        yield
    finally:
        event.remove(engine, operation, fail)


@contextmanager
def failing_session_rollbacks(flavour: Flavour) -> Iterator[None]:
    """Make ``Session.rollback()`` of the flavour's sessions fail."""
    maker = getattr(flavour.session_factory, "class_", None)
    target = getattr(maker, "sync_session_class", None) or flavour.session_factory

    def fail(session: Any, transaction: Any) -> None:
        raise RuntimeError("rollback failed")

    event.listen(target, "after_soft_rollback", fail)
    try:
        yield
    finally:
        event.remove(target, "after_soft_rollback", fail)


# -- commit and rollback ------------------------------------------------------------------------


def test_the_reference_scenario_commits_only_hanmeimei(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit() as unit:
        users = unit.repository(User)
        users.add(User(id="5", name="Bob"))
        users.add(User(id="5", name="LILY"))
        unit.rollback()
        users.add(User(id="7", name="hanmeimei"))
        unit.commit()
        user = users.one(id="7")
        assert type(user) is User
        assert user.name == "hanmeimei"

    assert backend.users() == [("7", "hanmeimei")]


def test_commit_makes_the_work_visible_to_other_connections(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.commit()
        assert backend.users() == [("1", "ann")]


def test_rollback_discards_pending_objects_and_the_unit_goes_on(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit() as unit:
        users = unit.repository(User)
        bob = users.add(User(id="5", name="Bob"))
        unit.rollback()
        assert bob not in unit.session
        users.add(User(id="7", name="hanmeimei"))
        unit.commit()

    assert backend.users() == [("7", "hanmeimei")]


def test_rollback_undoes_flushed_changes(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.flush()
        unit.rollback()
        unit.commit()

    assert backend.users() == []


def test_commit_after_commit_starts_a_new_transaction(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit() as unit:
        users = unit.repository(User)
        users.add(User(id="1", name="ann"))
        unit.commit()
        users.add(User(id="2", name="ben"))
        unit.commit()

    assert backend.users() == [("1", "ann"), ("2", "ben")]


def test_changes_to_loaded_objects_are_committed(flavour: Flavour, backend: Backend) -> None:
    backend.insert(User(id="1", name="ann"))
    with flavour.unit() as unit:
        ann = unit.repository(User).get_one("1")
        ann.name = "anne"
        unit.commit()

    assert backend.users() == [("1", "anne")]


# -- integrity errors ---------------------------------------------------------------------------


def test_committing_the_same_id_twice_raises_duplicate_key_and_commits_nothing(
    flavour: Flavour, backend: Backend
) -> None:
    with flavour.unit() as unit:
        users = unit.repository(User)
        users.add(User(id="5", name="Bob"))
        users.add(User(id="5", name="LILY"))
        with pytest.raises(uow.DuplicateKeyError) as caught:
            unit.commit()
        assert isinstance(caught.value, sqlalchemy.exc.IntegrityError)
        assert isinstance(caught.value.__cause__, sqlalchemy.exc.IntegrityError)
        assert caught.value.orig is caught.value.__cause__.orig

        users.add(User(id="7", name="hanmeimei"))
        unit.commit()

    assert backend.users() == [("7", "hanmeimei")]


def test_a_row_that_already_exists_raises_duplicate_key(flavour: Flavour, backend: Backend) -> None:
    backend.insert(User(id="5", name="Bob"))
    with flavour.unit() as unit:
        unit.repository(User).add(User(id="5", name="LILY"))
        with pytest.raises(uow.DuplicateKeyError):
            unit.commit()

    assert backend.users() == [("5", "Bob")]


def test_a_unique_column_violation_raises_duplicate_key(flavour: Flavour, backend: Backend) -> None:
    backend.insert(Account(id=1, owner="ann", email="a@example.org"))
    with flavour.unit() as unit:
        unit.repository(Account).add(Account(id=2, owner="ben", email="a@example.org"))
        with pytest.raises(uow.DuplicateKeyError):
            unit.commit()

    assert backend.accounts() == [(1, "ann", 0)]


def test_a_not_null_violation_raises_integrity_error_but_not_duplicate_key(
    flavour: Flavour, backend: Backend
) -> None:
    with flavour.unit() as unit:
        unit.repository(Account).add(Account(id=1, owner=None))
        with pytest.raises(uow.IntegrityError) as caught:
            unit.commit()
        assert not isinstance(caught.value, uow.DuplicateKeyError)
        assert isinstance(caught.value, sqlalchemy.exc.IntegrityError)
        assert caught.value.__cause__ is not None

    assert backend.accounts() == []


def test_a_failed_commit_discards_the_whole_transaction(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit() as unit:
        unit.repository(Account).add(Account(id=1, owner="ann"))
        unit.repository(User).add(User(id="1", name="ann"))
        unit.repository(User).add(User(id="1", name="twin"))
        with pytest.raises(uow.DuplicateKeyError):
            unit.commit()

    assert backend.accounts() == []
    assert backend.users() == []


# -- leaving the block --------------------------------------------------------------------------


def test_leaving_without_commit_rolls_back_and_warns(flavour: Flavour, backend: Backend) -> None:
    with pytest.warns(uow.UncommittedWorkWarning, match=r"1 new object"), flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))

    assert backend.users() == []


def test_leaving_after_a_flush_without_commit_rolls_back_and_warns(
    flavour: Flavour, backend: Backend
) -> None:
    with pytest.warns(uow.UncommittedWorkWarning, match="flushed"), flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.flush()

    assert backend.users() == []


def test_leaving_with_changed_and_deleted_objects_names_them_in_the_warning(
    flavour: Flavour, backend: Backend
) -> None:
    backend.insert(User(id="1", name="ann"), User(id="2", name="ben"))
    with (
        pytest.warns(uow.UncommittedWorkWarning, match=r"1 changed object.*1 deleted object"),
        flavour.unit() as unit,
    ):
        users = unit.repository(User)
        ann, ben = users.get_one("1"), users.get_one("2")
        ann.name = "anne"
        users.remove(ben)

    assert backend.users() == [("1", "ann"), ("2", "ben")]


def test_a_block_that_only_read_does_not_warn(flavour: Flavour, backend: Backend) -> None:
    backend.insert(User(id="1", name="ann"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with flavour.unit() as unit:
            users = unit.repository(User)
            assert users.get_one("1").name == "ann"
            assert users.count() == 1


def test_leaving_after_commit_does_not_warn(flavour: Flavour, backend: Backend) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with flavour.unit() as unit:
            unit.repository(User).add(User(id="1", name="ann"))
            unit.commit()

    assert backend.users() == [("1", "ann")]


def test_leaving_after_an_explicit_rollback_does_not_warn(flavour: Flavour, backend: Backend) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with flavour.unit() as unit:
            unit.repository(User).add(User(id="1", name="ann"))
            unit.flush()
            unit.rollback()

    assert backend.users() == []


def test_raw_writes_without_commit_are_rolled_back(flavour: Flavour, backend: Backend) -> None:
    with warnings.catch_warnings():
        # Statements sent through unit.session are not tracked (that would tax every query).
        warnings.simplefilter("ignore", uow.UncommittedWorkWarning)
        with flavour.unit() as unit:
            unit.execute(insert(User).values(id="1", name="ann"))

    assert backend.users() == []


def test_bulk_inserts_without_commit_are_rolled_back_and_warn(flavour: Flavour, backend: Backend) -> None:
    with pytest.warns(uow.UncommittedWorkWarning, match="flushed"), flavour.unit() as unit:
        unit.repository(User).insert_many([{"id": "1", "name": "ann"}])

    assert backend.users() == []


# -- exceptions -----------------------------------------------------------------------------------


def test_an_exception_rolls_back_and_propagates_unchanged(flavour: Flavour, backend: Backend) -> None:
    error = ValueError("boom")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError) as caught, flavour.unit() as unit:
            unit.repository(User).add(User(id="1", name="ann"))
            unit.flush()
            raise error

    assert caught.value is error
    assert not hasattr(error, "__notes__")
    assert backend.users() == []


def test_keyboard_interrupt_rolls_back_and_propagates_unchanged(flavour: Flavour, backend: Backend) -> None:
    interrupt = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt) as caught, flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.flush()
        raise interrupt

    assert caught.value is interrupt
    assert backend.users() == []


def test_an_exception_after_commit_keeps_the_committed_work(flavour: Flavour, backend: Backend) -> None:
    with pytest.raises(LookupError), flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.commit()
        unit.repository(User).add(User(id="2", name="ben"))
        raise LookupError

    assert backend.users() == [("1", "ann")]


def test_a_failing_rollback_does_not_hide_the_original_exception(flavour: Flavour, backend: Backend) -> None:
    error = ValueError("the user's error")
    with failing(flavour, "rollback"), pytest.raises(ValueError) as caught, flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.flush()
        raise error

    assert caught.value is error
    assert any("rollback failed" in note for note in error.__notes__)
    assert backend.users() == []


def test_a_failing_rollback_after_a_failed_commit_does_not_hide_the_commit_error(
    flavour: Flavour, backend: Backend
) -> None:
    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        with (
            failing(flavour, "commit"),
            failing_session_rollbacks(flavour),
            pytest.raises(RuntimeError, match="commit failed") as caught,
        ):
            unit.commit()
        assert any("rollback failed" in note for note in caught.value.__notes__)

    assert backend.users() == []


def test_a_failing_rollback_on_normal_exit_raises_it(flavour: Flavour, backend: Backend) -> None:
    with (
        failing(flavour, "rollback"),
        pytest.raises(RuntimeError, match="rollback failed"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", uow.UncommittedWorkWarning)
        with flavour.unit() as unit:
            unit.repository(User).add(User(id="1", name="ann"))
            unit.flush()

    assert backend.users() == []


# -- connections --------------------------------------------------------------------------------


EXIT_PATHS = ["commit", "rollback", "nothing", "read", "exception", "interrupt", "failed-commit"]


@pytest.mark.parametrize("path", EXIT_PATHS)
def test_every_exit_path_returns_the_connection_to_the_pool(
    flavour: Flavour, backend: Backend, path: str
) -> None:
    before = flavour.checked_out()
    with warnings.catch_warnings(), pytest.raises((ValueError, KeyboardInterrupt)):
        warnings.simplefilter("ignore", uow.UncommittedWorkWarning)
        with flavour.unit() as unit:
            users = unit.repository(User)
            users.add(User(id="1", name="ann"))
            unit.flush()
            assert flavour.checked_out() == before + 1
            if path == "commit":
                unit.commit()
            elif path == "rollback":
                unit.rollback()
            elif path == "read":
                users.count()
            elif path == "exception":
                raise ValueError(path)
            elif path == "interrupt":
                raise KeyboardInterrupt
            elif path == "failed-commit":
                users.add(User(id="1", name="twin"))
                with pytest.raises(uow.DuplicateKeyError):
                    unit.commit()
        raise ValueError("block left normally")

    assert flavour.checked_out() == before


def test_a_failing_rollback_still_returns_the_connection(flavour: Flavour, backend: Backend) -> None:
    before = flavour.checked_out()
    with failing(flavour, "rollback"), pytest.raises(ValueError), flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.flush()
        raise ValueError

    assert flavour.checked_out() == before


MARIADB = pytest.mark.parametrize("backend_setup", ["mariadb"], indirect=True)


@MARIADB
@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE uow_scratch (id INT)",
        "  create index uow_scratch_name ON user (name)",
        "DROP TABLE IF EXISTS uow_scratch",
        "TRUNCATE TABLE user",
        "LOCK TABLES user WRITE",
    ],
)
def test_a_statement_that_commits_implicitly_on_mariadb_is_refused_before_it_is_sent(
    flavour: Flavour, backend: Backend, statement: str
) -> None:
    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="uncommitted"))
        unit.flush()
        with pytest.raises(uow.StateError, match="implicitly"):
            unit.execute(text(statement))
        unit.rollback()

    assert backend.users() == []


@MARIADB
def test_ddl_constructs_on_mariadb_are_refused_too(flavour: Flavour, backend: Backend) -> None:
    scratch = Table("uow_scratch", MetaData(), Column("id", Integer))
    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="uncommitted"))
        unit.flush()
        with pytest.raises(uow.StateError, match="implicitly"):
            unit.execute(CreateTable(scratch))
        unit.rollback()

    assert backend.users() == []


@MARIADB
@pytest.mark.parametrize("how", ["execute(text())", "execute(CreateTable())", "metadata.create_all()"])
def test_a_statement_that_commits_implicitly_on_mariadb_is_refused_through_the_sessions_connection_too(
    flavour: Flavour, backend: Backend, how: str
) -> None:
    metadata = MetaData()
    scratch = Table("uow_scratch", metadata, Column("id", Integer))
    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="uncommitted"))
        unit.flush()
        connection = flavour.run(unit.session.connection())
        with pytest.raises(uow.StateError, match="implicitly"):
            if how == "metadata.create_all()":
                if flavour.is_async:
                    flavour.run(connection.run_sync(metadata.create_all))
                else:
                    metadata.create_all(connection)
            elif how == "execute(text())":
                flavour.run(connection.execute(text("CREATE TABLE uow_scratch (id INT)")))
            else:
                flavour.run(connection.execute(CreateTable(scratch)))
        unit.rollback()

    assert backend.users() == []


@MARIADB
def test_a_temporary_table_on_mariadb_is_allowed_and_commits_nothing(
    flavour: Flavour, backend: Backend
) -> None:
    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="uncommitted"))
        unit.flush()
        unit.execute(text("CREATE TEMPORARY TABLE uow_scratch (id INT)"))
        unit.execute(text("DROP TEMPORARY TABLE uow_scratch"))
        unit.rollback()

    assert backend.users() == []


def _cycle_garbage(work: Any) -> list[str]:
    """The types of the objects that only the cycle collector could free after ``work()``."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        work()
        gc.collect()
        return sorted({type(found).__name__ for found in gc.garbage})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


@pytest.mark.parametrize("work", ["commit", "rollback", "savepoint and hooks"])
def test_a_unit_leaves_no_reference_cycles_behind(flavour: Flavour, backend: Backend, work: str) -> None:
    def one_unit(user_id: str) -> None:
        with flavour.unit() as unit:
            unit.on_commit(flavour.hook(lambda: None))
            users = unit.repository(User)
            users.add(User(id=user_id, name="ann"))
            if work == "rollback":
                unit.rollback()
            elif work == "savepoint and hooks":
                with unit.savepoint():
                    unit.on_rollback(flavour.hook(lambda: None))
                    users.add(User(id=f"{user_id}-s", name="kept"))
            if work != "rollback":
                unit.commit()

    one_unit("warm-up")  # listeners, caches and the pool are set up once
    assert _cycle_garbage(lambda: one_unit("measured")) == []
