"""SQLAlchemy's own transaction API through ``unit.session`` keeps the unit's promises.

Commits through ``session.commit()`` or ``session.begin()`` run the hooks and dispatch the events as
``unit.commit()`` does; nested transactions begun with ``session.begin_nested()`` (SQLAlchemy's
documented recipes) keep or drop their hooks and clear the partial-commit guard as
``unit.savepoint()`` does; a savepoint that fails to release or to roll back never lets its work be
committed.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import select

import uow
from tests.conftest import Backend
from tests.drivers import Flavour, UnitDriver, block
from tests.models import Account, User
from uow.testing import fail_statement


def session_block(flavour: Flavour, manager: Any) -> AbstractContextManager[Any]:
    """``with`` (sync) or ``async with`` (async) over one of the session's transaction managers."""
    return block(flavour.runner, manager)


def begin_nested(flavour: Flavour, unit: UnitDriver) -> Any:
    return session_block(flavour, unit.session.begin_nested())


def recorder(flavour: Flavour, calls: list[str], name: str) -> Any:
    return flavour.hook(lambda: calls.append(name))


# -- commits and rollbacks through the session ---------------------------------------------------


@pytest.mark.parametrize("how", ["session.commit()", "with session.begin()"])
def test_a_commit_through_the_session_runs_the_commit_hooks_and_dispatches_the_events(
    flavour: Flavour, backend: Backend, how: str
) -> None:
    calls: list[str] = []
    with flavour.unit(dispatch=calls.append) as unit:
        unit.on_rollback(recorder(flavour, calls, "rolled back"))
        if how == "session.commit()":
            unit.repository(Account).add(Account(id=1, owner="ann")).record_event("opened")
            unit.on_commit(recorder(flavour, calls, "committed"))
            flavour.run(unit.session.commit())
        else:
            with session_block(flavour, unit.session.begin()):
                unit.repository(Account).add(Account(id=1, owner="ann")).record_event("opened")
                unit.on_commit(recorder(flavour, calls, "committed"))
        assert calls == ["opened", "committed"]

    assert calls == ["opened", "committed"]
    assert backend.accounts() == [(1, "ann", 0)]


def test_a_rollback_through_the_session_runs_the_rollback_hooks_and_drops_the_rest(
    flavour: Flavour, backend: Backend
) -> None:
    calls: list[str] = []
    with flavour.unit(dispatch=calls.append) as unit:
        unit.repository(Account).add(Account(id=1, owner="ann")).record_event("opened")
        unit.on_commit(recorder(flavour, calls, "committed"))
        unit.on_rollback(recorder(flavour, calls, "rolled back"))
        flavour.run(unit.session.rollback())
        assert calls == ["rolled back"]
        unit.commit()

    assert calls == ["rolled back"]
    assert backend.accounts() == []


def test_a_failing_commit_hook_after_a_commit_through_the_session_raises_hook_error(
    flavour: Flavour, backend: Backend
) -> None:
    def fail() -> None:
        raise LookupError("hook")

    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="kept"))
        unit.on_commit(flavour.hook(fail))
        with pytest.raises(uow.HookError) as caught:
            flavour.run(unit.session.commit())
        assert caught.value.committed

    assert backend.users() == [("1", "kept")]


# -- nested transactions through the session ------------------------------------------------------


def test_sqlalchemys_loop_that_skips_duplicates_with_begin_nested_commits_the_rest(
    flavour: Flavour, backend: Backend
) -> None:
    backend.insert(User(id="1", name="existing"))
    skipped: list[str] = []
    with flavour.unit() as unit:
        for user_id in ("1", "2", "3"):
            try:
                with begin_nested(flavour, unit):
                    unit.session.add(User(id=user_id, name="new"))
            except sqlalchemy.exc.IntegrityError:
                skipped.append(user_id)
        unit.commit()

    assert skipped == ["1"]
    assert backend.users() == [("1", "existing"), ("2", "new"), ("3", "new")]


def test_a_race_safe_get_or_create_with_begin_nested_commits(flavour: Flavour, backend: Backend) -> None:
    backend.insert(User(id="7", name="hanmeimei"))
    with flavour.unit() as unit:
        try:
            with begin_nested(flavour, unit):
                unit.session.add(User(id="7", name="someone else"))
        except sqlalchemy.exc.IntegrityError:
            found = flavour.run(unit.session.scalar(select(User).where(User.id == "7")))
        assert found.name == "hanmeimei"
        unit.repository(User).add(User(id="8", name="lily"))
        unit.commit()

    assert backend.users() == [("7", "hanmeimei"), ("8", "lily")]


def test_a_nested_transaction_rolled_back_through_the_session_drops_its_hooks_and_events(
    flavour: Flavour, backend: Backend
) -> None:
    calls: list[str] = []
    with flavour.unit(dispatch=calls.append) as unit:
        ann = unit.repository(Account).add(Account(id=1, owner="ann"))
        ann.record_event("kept")
        unit.on_commit(recorder(flavour, calls, "outer committed"))
        with pytest.raises(LookupError), begin_nested(flavour, unit):
            ann.record_event("dropped")
            unit.on_commit(recorder(flavour, calls, "inner committed"))
            unit.on_rollback(recorder(flavour, calls, "inner rolled back"))
            raise LookupError
        assert calls == ["inner rolled back"]
        unit.commit()

    assert calls == ["inner rolled back", "kept", "outer committed"]


def test_a_nested_transaction_released_through_the_session_keeps_its_hooks_for_the_commit(
    flavour: Flavour, backend: Backend
) -> None:
    calls: list[str] = []
    with flavour.unit() as unit:
        with begin_nested(flavour, unit):
            unit.repository(User).add(User(id="1", name="inside"))
            unit.on_commit(recorder(flavour, calls, "inner committed"))
        assert calls == []
        unit.commit()

    assert calls == ["inner committed"]
    assert backend.users() == [("1", "inside")]


def test_a_failure_caught_inside_a_released_nested_transaction_makes_commit_refuse(
    flavour: Flavour, backend: Backend
) -> None:
    backend.insert(User(id="1", name="existing"))
    with flavour.unit() as unit:
        try:
            with begin_nested(flavour, unit), pytest.raises(sqlalchemy.exc.IntegrityError):
                unit.execute(sqlalchemy.insert(User).values(id="1", name="twin"))
        except sqlalchemy.exc.DBAPIError:  # PostgreSQL refuses to release it at all
            assert backend.kind == "postgresql"
        with pytest.raises(uow.StateError, match="commit"):
            unit.commit()
        unit.rollback()

    assert backend.users() == [("1", "existing")]


@pytest.mark.parametrize("how", ["session.commit()", "with session.begin()"])
def test_a_commit_through_the_session_after_a_caught_failure_is_refused_and_saves_nothing(
    flavour: Flavour, backend: Backend, how: str
) -> None:
    backend.insert(User(id="1", name="existing"))
    with flavour.unit() as unit:
        with pytest.raises(uow.StateError, match="could save only part"):
            if how == "session.commit()":
                unit.repository(Account).add(Account(id=1, owner="ann"))
                unit.flush()
                with pytest.raises(sqlalchemy.exc.IntegrityError):
                    unit.execute(sqlalchemy.insert(User).values(id="1", name="twin"))
                flavour.run(unit.session.commit())
            else:
                with session_block(flavour, unit.session.begin()):
                    unit.repository(Account).add(Account(id=1, owner="ann"))
                    unit.flush()
                    with pytest.raises(sqlalchemy.exc.IntegrityError):
                        unit.execute(sqlalchemy.insert(User).values(id="1", name="twin"))
        unit.rollback()
        unit.repository(Account).add(Account(id=2, owner="ben"))
        flavour.run(unit.session.commit())

    assert backend.accounts() == [(2, "ben", 0)]
    assert backend.users() == [("1", "existing")]


# -- a savepoint whose RELEASE or ROLLBACK TO fails ----------------------------------------------


@pytest.mark.parametrize("how", ["unit.savepoint()", "session.begin_nested()"])
@pytest.mark.parametrize("ending", ["RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT"])
def test_a_savepoint_that_fails_to_end_never_commits_its_work(
    flavour: Flavour, backend: Backend, how: str, ending: str
) -> None:
    rolls_back = ending == "ROLLBACK TO SAVEPOINT"
    # The unit's savepoint lets the block's own error through; SQLAlchemy's raises the rollback's.
    raised = ValueError if rolls_back and how == "unit.savepoint()" else sqlalchemy.exc.DBAPIError
    with flavour.unit() as unit:
        users = unit.repository(User)
        users.add(User(id="1", name="before"))
        unit.flush()
        savepoint = unit.savepoint() if how == "unit.savepoint()" else begin_nested(flavour, unit)
        with (
            fail_statement(flavour.engine, "deadlock", matching=ending) as fault,
            pytest.raises(raised),
            savepoint,
        ):
            users.add(User(id="2", name="inside"))
            if rolls_back:
                unit.flush()
                raise ValueError("the block fails")
        assert fault.fired == 1
        with pytest.raises(uow.StateError, match="commit"):
            unit.commit()
        unit.rollback()
        users.add(User(id="3", name="after"))
        unit.commit()

    assert backend.users() == [("3", "after")]
