"""What only the async unit has to get right: cancellation, timeouts and overlapping use by tasks."""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from sqlalchemy import event, insert, text

import uow
from tests.conftest import Backend
from tests.drivers import Flavour
from tests.models import User

ASYNC = pytest.mark.parametrize("flavour", ["async"], indirect=True)
SERVERS = pytest.mark.parametrize("backend_setup", ["postgresql", "mariadb"], indirect=True)


def unit_of(flavour: Flavour) -> uow.AsyncUnitOfWork:
    return uow.AsyncUnitOfWork(flavour.session_factory)


def play(flavour: Flavour, scenario: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``scenario`` on the flavour's loop, then check no connection was leaked or left for GC."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = flavour.run(scenario())
        gc.collect()
    assert flavour.checked_out() == 0
    return result


def slow_statement(backend: Backend) -> str:
    return "SELECT pg_sleep(3)" if backend.kind == "postgresql" else "SELECT SLEEP(3)"


def open_server_transactions(backend: Backend) -> int:
    """Server sessions of the test database that sit in a transaction or still run the slow query."""
    if backend.kind == "postgresql":
        query = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() "
            "AND (state LIKE 'idle in transaction%' OR query LIKE 'SELECT pg_sleep%')"
        )
    else:
        query = (
            "SELECT count(*) FROM information_schema.processlist WHERE id <> CONNECTION_ID() "
            "AND db = DATABASE() AND (info LIKE 'SELECT SLEEP%' OR id IN "
            "(SELECT trx_mysql_thread_id FROM information_schema.innodb_trx))"
        )
    with backend.check.connect() as connection:
        return int(connection.execute(text(query)).scalar_one())


def eventually_no_open_server_transactions(backend: Backend) -> int:
    # PostgreSQL cancels the running statement when its client goes away; MariaDB notices only once
    # the statement ends, so allow for the slow statement to finish.
    deadline = time.monotonic() + 6
    while (count := open_server_transactions(backend)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


# -- cancellation ---------------------------------------------------------------------------------


@ASYNC
def test_cancelling_a_task_inside_the_block_rolls_back_and_returns_the_connection(
    flavour: Flavour, backend: Backend
) -> None:
    async def scenario() -> None:
        started = asyncio.Event()

        async def work() -> None:
            async with unit_of(flavour) as unit:
                await unit.repository(User).add(User(id="1", name="ann"))
                await unit.session.flush()
                started.set()
                await asyncio.sleep(10)

        task = asyncio.create_task(work())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    play(flavour, scenario)
    assert backend.users() == []


@ASYNC
@SERVERS
def test_a_timeout_during_a_slow_query_rolls_back_without_waiting_for_it(
    flavour: Flavour, backend: Backend
) -> None:
    async def scenario() -> float:
        began = time.monotonic()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5), unit_of(flavour) as unit:
                await unit.repository(User).add(User(id="1", name="ann"))
                await unit.session.flush()
                await unit.session.execute(text(slow_statement(backend)))
        return time.monotonic() - began

    elapsed = play(flavour, scenario)
    assert elapsed < 2.5, "the cleanup waited for the slow query"
    assert eventually_no_open_server_transactions(backend) == 0
    assert backend.users() == []


@ASYNC
@SERVERS
def test_a_timeout_during_commit_invalidates_the_connection_and_commits_nothing(
    flavour: Flavour, backend: Backend
) -> None:
    # Another transaction holds the row: the unit's commit blocks on the lock while flushing its INSERT.
    blocker = backend.check.connect()
    blocker.begin()
    blocker.execute(insert(User).values(id="1", name="blocker"))

    async def scenario() -> None:
        async with unit_of(flavour) as unit:
            await unit.repository(User).add(User(id="1", name="ann"))
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    await unit.commit()
            assert unit.active

    try:
        play(flavour, scenario)
    finally:
        blocker.rollback()
        blocker.close()
    assert eventually_no_open_server_transactions(backend) == 0
    assert backend.users() == []


@ASYNC
def test_a_unit_can_go_on_after_its_commit_was_cancelled_in_flight(
    flavour: Flavour, backend: Backend
) -> None:
    async def scenario() -> None:
        async with unit_of(flavour) as unit:
            users = unit.repository(User)
            await users.add(User(id="1", name="ann"))
            commit = asyncio.create_task(unit.commit())
            await asyncio.sleep(0)  # let the commit start talking to the database
            commit.cancel()
            with pytest.raises(asyncio.CancelledError):
                await commit
            await users.add(User(id="2", name="ben"))
            await unit.commit()

    play(flavour, scenario)
    # Whether the cancelled commit reached the database is unknown; the later one certainly did.
    assert ("2", "ben") in backend.users()


@ASYNC
def test_a_commit_cancelled_before_it_started_commits_nothing(flavour: Flavour, backend: Backend) -> None:
    async def scenario() -> None:
        async with unit_of(flavour) as unit:
            await unit.repository(User).add(User(id="1", name="ann"))
            commit = asyncio.create_task(unit.commit())
            commit.cancel()
            with pytest.raises(asyncio.CancelledError):
                await commit
            await unit.rollback()

    play(flavour, scenario)
    assert backend.users() == []


# -- tasks --------------------------------------------------------------------------------------


@ASYNC
def test_two_tasks_using_one_unit_at_once_are_refused(flavour: Flavour, backend: Backend) -> None:
    backend.insert(User(id="1", name="ann"))

    async def scenario() -> list[Any]:
        async with unit_of(flavour) as unit:
            users = unit.repository(User)
            return await asyncio.gather(users.count(), users.list(), return_exceptions=True)

    first, second = play(flavour, scenario)
    assert first == 1
    assert isinstance(second, uow.StateError)
    assert "one task at a time" in str(second)


@ASYNC
def test_a_commit_started_while_a_read_runs_is_refused(flavour: Flavour, backend: Backend) -> None:
    async def scenario() -> list[Any]:
        async with unit_of(flavour) as unit:
            users = unit.repository(User)
            await users.add(User(id="1", name="ann"))
            outcome = await asyncio.gather(users.count(), unit.commit(), return_exceptions=True)
            await unit.commit()
            return outcome

    counted, refused = play(flavour, scenario)
    assert counted == 1
    assert isinstance(refused, uow.StateError)
    assert backend.users() == [("1", "ann")]


@ASYNC
def test_a_savepoint_started_while_a_read_runs_is_refused(flavour: Flavour, backend: Backend) -> None:
    async def scenario() -> list[Any]:
        async with unit_of(flavour) as unit:
            users = unit.repository(User)

            async def enter_savepoint() -> None:
                async with unit.savepoint():
                    pass

            return await asyncio.gather(users.count(), enter_savepoint(), return_exceptions=True)

    counted, refused = play(flavour, scenario)
    assert counted == 0
    assert isinstance(refused, uow.StateError)


@ASYNC
def test_calls_from_other_tasks_one_after_another_are_allowed(flavour: Flavour, backend: Backend) -> None:
    async def scenario() -> None:
        async with unit_of(flavour) as unit:
            users = unit.repository(User)
            await asyncio.create_task(users.add(User(id="1", name="ann")))
            assert await asyncio.create_task(users.count()) == 1
            await asyncio.wait_for(unit.commit(), 5)

    play(flavour, scenario)
    assert backend.users() == [("1", "ann")]


@ASYNC
def test_objects_read_in_a_block_need_no_io_after_commit(flavour: Flavour, backend: Backend) -> None:
    backend.insert(User(id="1", name="ann"))

    async def scenario() -> str | None:
        async with unit_of(flavour) as unit:
            ann = await unit.repository(User).get_one("1")
            await unit.commit()
            name = ann.name  # no implicit I/O: would raise MissingGreenlet if it needed any
        assert name == "ann"
        return ann.name  # and still readable after the block, the object now detached

    assert play(flavour, scenario) == "ann"


@ASYNC
def test_expire_on_commit_true_expires_objects_as_plain_sqlalchemy_does(
    flavour: Flavour, backend: Backend
) -> None:
    backend.insert(User(id="1", name="ann"))

    async def scenario() -> str | None:
        async with uow.AsyncUnitOfWork(flavour.session_factory, expire_on_commit=True) as unit:
            ann = await unit.repository(User).get_one("1")
            await unit.commit()
            assert "name" not in ann.__dict__
            await unit.session.refresh(ann)
            return ann.name

    assert play(flavour, scenario) == "ann"


@ASYNC
def test_a_cancellation_while_a_savepoint_rolls_back_propagates_as_a_cancellation(
    flavour: Flavour, backend: Backend
) -> None:
    engine = flavour.engine.sync_engine
    user_task: list[asyncio.Task[Any]] = []

    def cancel_the_users_task(connection: Any, name: str, context: Any) -> None:
        user_task[0].cancel()

    async def scenario() -> None:
        task = asyncio.current_task()
        assert task is not None
        user_task.append(task)
        async with unit_of(flavour) as unit:
            with pytest.raises(asyncio.CancelledError):
                async with unit.savepoint():
                    await unit.repository(User).add(User(id="1", name="inside"))
                    await unit.session.flush()
                    raise LookupError("the user's error")
            task.uncancel()

    event.listen(engine, "rollback_savepoint", cancel_the_users_task)
    try:
        play(flavour, scenario)
    finally:
        event.remove(engine, "rollback_savepoint", cancel_the_users_task)
    assert backend.users() == []


@ASYNC
def test_entering_an_active_unit_from_another_task_is_refused(flavour: Flavour, backend: Backend) -> None:
    async def scenario() -> list[BaseException | None]:
        unit = unit_of(flavour)
        entered = asyncio.Event()
        leave = asyncio.Event()

        async def holder() -> None:
            async with unit:
                entered.set()
                await leave.wait()

        async def intruder() -> None:
            async with unit:
                pass

        holding = asyncio.create_task(holder())
        await entered.wait()
        results = await asyncio.gather(*(intruder() for _ in range(8)), return_exceptions=True)
        leave.set()
        await holding
        return list(results)

    results = play(flavour, scenario)
    assert len(results) == 8
    assert all(isinstance(result, uow.StateError) for result in results)
