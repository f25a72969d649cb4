"""The contract, continued: savepoints, hooks, domain events, read-only and durable units.

Run, like ``test_contract.py``, on the in-memory unit and on the real units of every backend.
"""

from __future__ import annotations

import warnings

import pytest

import uow
from tests.models import Account, User
from tests.testing.world import World


def names(world: World) -> list[str | None]:
    return [name for _, name in world.users()]


# -- savepoints -----------------------------------------------------------------------------------


def test_a_savepoint_that_raises_rolls_back_only_its_own_work(world: World) -> None:
    with world.unit() as unit:
        users = unit.repository(User)
        users.add(User(id="1", name="before"))
        with pytest.raises(LookupError), unit.savepoint():
            users.add(User(id="2", name="inside"))
            users.get_one("1").name = "changed"
            raise LookupError
        assert [(user.id, user.name) for user in users.list(order_by="id")] == [("1", "before")]
        unit.commit()

    assert names(world) == ["before"]


def test_a_savepoint_that_ends_normally_leaves_its_work_to_the_units_commit_or_rollback(world: World) -> None:
    with world.unit() as unit:
        with unit.savepoint():
            unit.repository(User).add(User(id="1", name="inside"))
        with unit.savepoint():
            unit.repository(User).add(User(id="2", name="dropped"))
        unit.rollback()
        with unit.savepoint():
            unit.repository(User).add(User(id="3", name="inside"))
        unit.commit()

    assert world.users() == [("3", "inside")]


def test_nested_savepoints_roll_back_one_level_at_a_time(world: World) -> None:
    with world.unit() as unit:
        users = unit.repository(User)
        with unit.savepoint():
            users.add(User(id="1", name="outer"))
            with pytest.raises(LookupError), unit.savepoint():
                users.add(User(id="2", name="inner"))
                raise LookupError
            users.add(User(id="3", name="after"))
        unit.commit()

    assert names(world) == ["outer", "after"]


def test_a_failure_caught_inside_a_savepoint_rolls_it_back_when_it_ends(world: World) -> None:
    world.insert(User(id="1", name="ann"))
    with world.unit() as unit:
        users = unit.repository(User)
        users.add(User(id="2", name="kept"))
        with pytest.raises(uow.StateError, match="incomplete"), unit.savepoint():
            users.add(User(id="3", name="lost"))
            with pytest.raises(uow.DuplicateKeyError):
                users.insert_many([{"id": "1", "name": "twin"}])
        unit.commit()

    assert names(world) == ["ann", "kept"]


# -- hooks ----------------------------------------------------------------------------------------


def test_on_commit_hooks_run_once_after_the_commit_in_order(world: World) -> None:
    seen: list[str] = []
    with world.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.on_commit(lambda: seen.append(f"first saw {len(world.users())}"))
        unit.on_commit(lambda: seen.append("second"))
        assert seen == []
        unit.commit()
        unit.commit()

    assert seen == ["first saw 1", "second"]


def test_a_rollback_drops_the_on_commit_hooks_and_runs_the_on_rollback_ones(world: World) -> None:
    seen: list[str] = []
    with world.unit() as unit:
        unit.on_commit(lambda: seen.append("committed"))
        unit.on_rollback(lambda: seen.append("rolled back"))
        unit.rollback()
        unit.commit()

    assert seen == ["rolled back"]


def test_leaving_without_commit_runs_the_on_rollback_hooks(world: World) -> None:
    seen: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", uow.UncommittedWorkWarning)
        with world.unit() as unit:
            unit.repository(User).add(User(id="1", name="ann"))
            unit.on_rollback(lambda: seen.append("rolled back"))

    assert seen == ["rolled back"]


def test_the_hooks_of_a_savepoint_that_rolls_back_go_with_it(world: World) -> None:
    seen: list[str] = []
    with world.unit() as unit:
        with pytest.raises(LookupError), unit.savepoint():
            unit.on_commit(lambda: seen.append("inner committed"))
            unit.on_rollback(lambda: seen.append("inner rolled back"))
            raise LookupError
        unit.on_commit(lambda: seen.append("outer committed"))
        unit.commit()

    assert seen == ["inner rolled back", "outer committed"]


def test_a_failing_hook_keeps_the_commit_and_the_other_hooks(world: World) -> None:
    seen: list[str] = []

    def fail() -> None:
        raise ValueError("hook failed")

    with world.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.on_commit(fail)
        unit.on_commit(lambda: seen.append("ran"))
        with pytest.raises(uow.HookError) as caught:
            unit.commit()
        assert caught.value.committed

    assert seen == ["ran"]
    assert names(world) == ["ann"]


def test_a_coroutine_hook_is_refused_by_the_sync_unit(world: World) -> None:
    async def hook() -> None:
        pass

    with world.unit() as unit:
        if world.is_async:
            unit.on_commit(hook)
        else:
            with pytest.raises(uow.InvalidArgumentError, match="coroutine"):
                unit.on_commit(hook)


# -- domain events --------------------------------------------------------------------------------


def test_events_are_dispatched_after_the_commit_in_recording_order(world: World) -> None:
    world.insert(Account(id=1, owner="ann"))
    dispatched: list[object] = []
    with world.unit(dispatch=dispatched.append) as unit:
        ann = unit.repository(Account).get_one(1)
        ben = unit.repository(Account).add(Account(id=2, owner="ben"))
        ann.record_event("ann 1")
        ben.record_event("ben 1")
        ann.record_event("ann 2")
        assert dispatched == []
        unit.commit()

    assert dispatched == ["ann 1", "ben 1", "ann 2"]


def test_events_of_rolled_back_work_are_never_dispatched(world: World) -> None:
    dispatched: list[object] = []
    with world.unit(dispatch=dispatched.append) as unit:
        accounts = unit.repository(Account)
        ann = accounts.add(Account(id=1, owner="ann"))
        ann.record_event("kept")
        with pytest.raises(LookupError), unit.savepoint():
            ann.record_event("in the savepoint")
            raise LookupError
        unit.commit()
        ann.record_event("rolled back")
        unit.rollback()
        unit.commit()

    assert dispatched == ["kept"]


# -- read-only and durable units ------------------------------------------------------------------


def test_a_read_only_unit_reads_but_refuses_to_commit_changes(world: World) -> None:
    world.insert(User(id="1", name="ann"))
    with world.unit(read_only=True) as unit:
        users = unit.repository(User)
        assert users.get_one("1").name == "ann"
        unit.commit()
        users.add(User(id="2", name="ben"))
        with pytest.raises(uow.StateError, match="read-only"):
            unit.commit()
        unit.rollback()

    assert names(world) == ["ann"]


def test_a_durable_unit_refuses_to_run_inside_another_unit(world: World) -> None:
    with world.unit() as outer:
        with pytest.raises(uow.StateError, match="durable"), world.unit(durable=True):
            pass
        assert outer.active
    with world.unit(durable=True) as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.commit()

    assert names(world) == ["ann"]
