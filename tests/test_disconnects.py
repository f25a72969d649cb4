"""A server that drops the unit's connection: the user's exception still wins, the pool gets it back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import text

import uow
from tests.conftest import Backend
from tests.drivers import Flavour, UnitDriver
from tests.models import User

SERVERS = pytest.mark.parametrize("backend_setup", ["postgresql", "mariadb"], indirect=True)


def kill_connection_of(unit: UnitDriver, backend: Backend) -> None:
    """Terminate the unit's server session from another connection, as an operator or failover would."""
    if backend.kind == "postgresql":
        pid = unit.execute(text("SELECT pg_backend_pid()")).scalar_one()
        kill = text("SELECT pg_terminate_backend(:pid)").bindparams(pid=pid)
    else:
        pid = unit.execute(text("SELECT CONNECTION_ID()")).scalar_one()
        kill = text(f"KILL {int(pid)}")
    with backend.check.begin() as connection:
        connection.execute(kill)


@SERVERS
def test_a_rollback_on_a_dead_connection_does_not_hide_the_original_exception(
    flavour: Flavour, backend: Backend
) -> None:
    error = ValueError("the user's error")
    before = flavour.checked_out()

    with pytest.raises(ValueError) as caught, flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.flush()
        kill_connection_of(unit, backend)
        raise error

    assert caught.value is error
    assert flavour.checked_out() == before
    assert backend.users() == []


@SERVERS
def test_a_commit_on_a_dead_connection_raises_and_the_unit_goes_on(
    flavour: Flavour, backend: Backend
) -> None:
    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.flush()
        kill_connection_of(unit, backend)
        with pytest.raises(sqlalchemy.exc.DBAPIError) as caught:
            unit.commit()
        assert caught.value.connection_invalidated

        unit.repository(User).add(User(id="2", name="ben"))
        unit.commit()

    assert flavour.checked_out() == 0
    assert backend.users() == [("2", "ben")]


POSTGRESQL = pytest.mark.parametrize("backend_setup", ["postgresql"], indirect=True)


@POSTGRESQL
def test_a_connection_the_server_ended_before_commit_is_a_transient_failure_and_retried(
    flavour: Flavour, backend: Backend
) -> None:
    attempts: list[int] = []

    def work(unit: UnitDriver) -> None:
        attempts.append(1)
        unit.repository(User).add(User(id=str(len(attempts)), name="retried"))
        unit.flush()
        if len(attempts) == 1:  # the server ends the idle transaction before COMMIT is sent
            unit.execute(text("SET idle_in_transaction_session_timeout = '100ms'"))
            time.sleep(0.5)
        unit.commit()

    retry = uow.Retry(attempts=3, sleep=lambda _: None, async_sleep=no_pause)
    for attempt in attempts_of(flavour, retry):
        with attempt as unit:
            work(unit)

    assert len(attempts) == 2
    assert backend.users() == [("2", "retried")]


@POSTGRESQL
def test_a_connection_the_server_ended_before_commit_is_not_an_unknown_outcome(
    flavour: Flavour, backend: Backend
) -> None:
    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="lost"))
        unit.flush()
        unit.execute(text("SET idle_in_transaction_session_timeout = '100ms'"))
        time.sleep(0.5)
        with pytest.raises(uow.TransientError) as caught:
            unit.commit()
        assert not isinstance(caught.value, uow.CommitOutcomeUnknownError)

    assert backend.users() == []


async def no_pause(seconds: float) -> None:
    return None


def attempts_of(flavour: Flavour, retry: uow.Retry) -> Iterator[Any]:
    """The attempts of a unit of the flavour, each used as ``with attempt as unit:``."""
    unit = flavour.unit()
    if not flavour.is_async:
        for attempt in unit.real.attempts(retry):

            @contextmanager
            def one(attempt: Any = attempt) -> Iterator[UnitDriver]:
                with attempt:
                    yield unit

            yield one()
        return
    attempts = unit.real.attempts(retry)
    while True:
        try:
            attempt = flavour.run(attempts.__anext__())
        except StopAsyncIteration:
            return

        @contextmanager
        def one_async(attempt: Any = attempt) -> Iterator[UnitDriver]:
            flavour.run(attempt.__aenter__())
            try:
                yield unit
            except BaseException as exc:
                if not flavour.run(attempt.__aexit__(type(exc), exc, exc.__traceback__)):
                    raise
            else:
                flavour.run(attempt.__aexit__(None, None, None))

        yield one_async()
