"""Misuse of a unit raises StateError saying what to do instead, and breaks nothing."""

from __future__ import annotations

import pytest

import uow
from tests.conftest import Backend
from tests.drivers import Flavour, UnitDriver
from tests.models import User

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
