"""Misuse of a unit raises StateError saying what to do instead, and breaks nothing."""

from __future__ import annotations

import sys
import threading

import pytest
from sqlalchemy.orm import sessionmaker

import uow
from tests.conftest import Backend
from tests.drivers import Flavour, UnitDriver
from tests.models import User

SYNC = pytest.mark.parametrize("flavour", ["sync"], indirect=True)

OUTSIDE_CALLS = {
    "commit": lambda unit: unit.commit(),
    "rollback": lambda unit: unit.rollback(),
    "session": lambda unit: unit.session,
    "repository": lambda unit: unit.repository(User),
}


@pytest.mark.parametrize("call", OUTSIDE_CALLS, ids=str)
def test_using_a_unit_before_its_block_raises_state_error(
    flavour: Flavour, backend: Backend, call: str
) -> None:
    unit = flavour.unit()
    with pytest.raises(uow.StateError, match=r"inside 'with unit:'") as caught:
        OUTSIDE_CALLS[call](unit)
    assert isinstance(caught.value, RuntimeError)
    assert call in str(caught.value)


@pytest.mark.parametrize("call", OUTSIDE_CALLS, ids=str)
def test_using_a_unit_after_its_block_raises_state_error(
    flavour: Flavour, backend: Backend, call: str
) -> None:
    with flavour.unit() as unit:
        unit.repository(User)
    with pytest.raises(uow.StateError, match="needs an active unit of work"):
        OUTSIDE_CALLS[call](unit)


def test_entering_an_active_unit_raises_state_error_and_keeps_the_block_going(
    flavour: Flavour, backend: Backend
) -> None:
    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        with pytest.raises(uow.StateError, match="already active"), unit:
            pass
        assert unit.active
        unit.commit()

    assert backend.users() == [("1", "ann")]


def test_a_unit_can_be_entered_again_and_gets_a_fresh_session(flavour: Flavour, backend: Backend) -> None:
    unit = flavour.unit()
    with unit:
        first_session = unit.session
        unit.repository(User).add(User(id="1", name="ann"))
        unit.commit()
    assert not unit.active
    with unit:
        assert unit.session is not first_session
        unit.repository(User).add(User(id="2", name="ben"))
        unit.commit()

    assert backend.users() == [("1", "ann"), ("2", "ben")]


def test_a_unit_is_active_only_inside_its_block(flavour: Flavour, backend: Backend) -> None:
    unit = flavour.unit()
    assert not unit.active
    assert "idle" in repr(unit.real)
    with unit:
        assert unit.active
        assert "active" in repr(unit.real)
    assert not unit.active


def test_a_factory_that_is_not_callable_is_refused(flavour: Flavour, backend: Backend) -> None:
    cls = uow.AsyncUnitOfWork if flavour.is_async else uow.UnitOfWork
    with pytest.raises(uow.InvalidArgumentError, match="sessionmaker"):
        cls(flavour.engine)  # type: ignore[arg-type]


def test_a_factory_that_returns_the_wrong_kind_of_session_is_refused(
    flavour: Flavour, backend: Backend
) -> None:
    unit = UnitDriver(
        (uow.AsyncUnitOfWork if flavour.is_async else uow.UnitOfWork)(lambda: "not a session"),  # type: ignore[arg-type, return-value]
        flavour.runner,
    )
    with pytest.raises(uow.InvalidArgumentError, match="Session"), unit:
        pass
    assert not unit.active


@pytest.mark.parametrize("call", ["add", "get", "list", "count"])
def test_a_repository_kept_after_its_block_raises_state_error(
    flavour: Flavour, backend: Backend, call: str
) -> None:
    with flavour.unit() as unit:
        users = unit.repository(User)
    arguments = {"add": (User(id="1", name="ann"),), "get": ("1",), "list": (), "count": ()}[call]
    with pytest.raises(uow.StateError, match="block has ended"):
        getattr(users, call)(*arguments)

    assert backend.users() == []


@SYNC
def test_every_thread_entering_an_active_unit_gets_state_error(flavour: Flavour, backend: Backend) -> None:
    unit = flavour.unit()
    refused: list[BaseException] = []

    def enter() -> None:
        try:
            with unit.real:
                pass
        except uow.StateError as exc:
            refused.append(exc)

    with unit:
        threads = [threading.Thread(target=enter) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert unit.active

    assert len(refused) == 16


@SYNC
def test_threads_racing_into_one_unit_never_share_its_block(flavour: Flavour, backend: Backend) -> None:
    engine = None
    if backend.kind == "sqlite":  # the unit's connections move between threads
        engine = backend.sync_engine(connect_args={"check_same_thread": False})
        uow.configure_sqlite(engine)
    unit = flavour.unit(sessionmaker(engine) if engine is not None else None)
    barrier = threading.Barrier(16)
    lock = threading.Lock()
    inside = [0]
    most_inside = [0]
    committed: list[str] = []
    refused: list[str] = []

    def race(user_id: str) -> None:
        barrier.wait()
        try:
            with unit.real as real:
                with lock:
                    inside[0] += 1
                    most_inside[0] = max(most_inside[0], inside[0])
                real.repository(User).add(User(id=user_id, name="racer"))
                real.commit()
                with lock:
                    inside[0] -= 1
            committed.append(user_id)
        except uow.StateError:
            refused.append(user_id)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: a check-then-set would lose
    try:
        for round_ in range(3):
            threads = [threading.Thread(target=race, args=(f"{round_}-{n}",)) for n in range(16)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        sys.setswitchinterval(interval)
        if engine is not None:
            engine.dispose()

    assert most_inside[0] == 1
    assert len(committed) + len(refused) == 48
    assert sorted(user_id for user_id, _ in backend.users()) == sorted(committed)
