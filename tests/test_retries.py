"""Running a unit again after transient failures, provoked by real lock conflicts on every backend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import Engine, create_engine, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

import uow
from tests.conftest import Backend
from tests.drivers import Flavour
from tests.models import Account, User


class Boom(Exception):
    pass


class Blocker:
    """Another connection that holds a write lock on user "1" until it is released."""

    def __init__(self, backend: Backend) -> None:
        backend.insert(User(id="1", name="ann"))
        self.connection = backend.check.connect()
        self.connection.begin()
        self.connection.execute(update(User).where(User.id == "1").values(name="locked"))
        self.released = 0

    def release(self) -> None:
        if not self.released:
            self.connection.rollback()
            self.connection.close()
        self.released += 1


class Contention:
    """Units of the test's flavour that fail fast, with a transient error, on a locked row."""

    def __init__(self, flavour: Flavour, backend: Backend, engine: Engine | AsyncEngine) -> None:
        self.flavour = flavour
        self.backend = backend
        self.engine = engine
        self.factory: Callable[[], Any] = (
            async_sessionmaker(engine) if isinstance(engine, AsyncEngine) else sessionmaker(engine)
        )

    def unit_class(self) -> type[Any]:
        return uow.AsyncUnitOfWork if self.flavour.is_async else uow.UnitOfWork

    def fail_fast(self) -> str | None:
        """What a unit sends first so that a lock wait ends at once instead of after minutes."""
        return {
            "postgresql": "SET LOCAL lock_timeout = '50ms'",
            "mariadb": "SET SESSION innodb_lock_wait_timeout = 1",
        }.get(self.backend.kind)

    def rename(self, name: str) -> Any:
        return update(User).where(User.id == "1").values(name=name)


@pytest.fixture
def contention(flavour: Flavour, backend: Backend) -> Iterator[Contention]:
    if backend.kind != "sqlite":
        yield Contention(flavour, backend, flavour.engine)
        return
    # SQLite waits for a lock as long as the driver's busy timeout: make it zero.
    options = {**backend.engine_options, "connect_args": {"timeout": 0}}
    if flavour.is_async:
        engine: Engine | AsyncEngine = create_async_engine(
            backend.async_url, **{**backend.async_engine_options, "connect_args": {"timeout": 0}}
        )
    else:
        engine = create_engine(backend.url, **options)
    uow.configure_sqlite(engine)
    yield Contention(flavour, backend, engine)
    if isinstance(engine, AsyncEngine):
        flavour.run(engine.dispose())
    else:
        engine.dispose()


def work_renaming(contention: Contention, calls: list[int], name: str = "renamed") -> Callable[[Any], Any]:
    """The work a test retries: rename user "1" (blocked while the blocker holds it) and commit."""
    fail_fast = contention.fail_fast()

    def work(unit: Any) -> int:
        calls.append(unit.attempt)
        if fail_fast:
            unit.session.execute(text(fail_fast))
        unit.session.execute(contention.rename(name))
        unit.commit()
        return unit.attempt

    async def work_async(unit: Any) -> int:
        calls.append(unit.attempt)
        if fail_fast:
            await unit.session.execute(text(fail_fast))
        await unit.session.execute(contention.rename(name))
        await unit.commit()
        return unit.attempt

    return work_async if contention.flavour.is_async else work


def releasing(blocker: Blocker, pauses: list[float], flavour: Flavour) -> dict[str, Any]:
    """Sleep functions for Retry that record the pause and release the lock instead of waiting."""

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        blocker.release()

    async def async_sleep(seconds: float) -> None:
        sleep(seconds)

    return {"sleep": sleep, "async_sleep": async_sleep}


def run(contention: Contention, work: Callable[[Any], Any], retry: uow.Retry, **options: Any) -> Any:
    unit = contention.unit_class()(contention.factory, **options)
    return contention.flavour.run(unit.run(work, retry=retry))


# -- the retry policy -----------------------------------------------------------------------------


def test_the_pause_grows_exponentially_up_to_the_maximum() -> None:
    retry = uow.Retry(initial_delay=0.1, multiplier=2, max_delay=0.5, jitter=False)
    assert [retry.delay(n) for n in range(1, 6)] == [0.1, 0.2, 0.4, 0.5, 0.5]


def test_full_jitter_draws_the_pause_below_the_ceiling() -> None:
    retry = uow.Retry(initial_delay=0.1, multiplier=2, max_delay=1, rng=lambda: 0.25)
    assert [retry.delay(n) for n in range(1, 4)] == [0.025, 0.05, 0.1]


@pytest.mark.parametrize(
    "options",
    [{"attempts": 0}, {"attempts": True}, {"initial_delay": -1}, {"max_delay": "1"}, {"multiplier": -2}],
)
def test_a_retry_policy_with_impossible_numbers_is_refused(options: dict[str, Any]) -> None:
    with pytest.raises(uow.InvalidArgumentError, match="Retry"):
        uow.Retry(**options)


# -- running with retries, on every backend -------------------------------------------------------


def test_run_retries_a_transient_failure_and_commits_once(contention: Contention) -> None:
    blocker = Blocker(contention.backend)
    calls: list[int] = []
    pauses: list[float] = []
    retry = uow.Retry(attempts=3, rng=lambda: 0.5, **releasing(blocker, pauses, contention.flavour))

    assert run(contention, work_renaming(contention, calls), retry) == 2

    assert calls == [1, 2]
    assert pauses == [0.025]
    assert contention.backend.users() == [("1", "renamed")]


def test_the_block_form_retries_like_run(contention: Contention) -> None:
    blocker = Blocker(contention.backend)
    calls: list[int] = []
    retry = uow.Retry(attempts=3, **releasing(blocker, [], contention.flavour))
    unit = contention.unit_class()(contention.factory)
    work = work_renaming(contention, calls)

    async def loop_async() -> None:
        async for attempt in unit.attempts(retry):
            async with attempt as current:
                await work(current)

    if contention.flavour.is_async:
        contention.flavour.run(loop_async())
    else:
        for attempt in unit.attempts(retry):
            with attempt as current:
                work(current)

    assert calls == [1, 2]
    assert contention.backend.users() == [("1", "renamed")]


def test_when_attempts_run_out_the_last_transient_error_says_how_many_were_made(
    contention: Contention,
) -> None:
    blocker = Blocker(contention.backend)
    calls: list[int] = []
    retry = uow.Retry(attempts=3, sleep=lambda _: None, async_sleep=asyncio.sleep, initial_delay=0)
    try:
        with pytest.raises(uow.TransientError) as caught:
            run(contention, work_renaming(contention, calls), retry)
    finally:
        blocker.release()

    assert calls == [1, 2, 3]
    assert caught.value.attempts == 3
    assert isinstance(caught.value.__cause__, sqlalchemy.exc.DBAPIError)
    assert isinstance(caught.value, sqlalchemy.exc.OperationalError)
    assert contention.backend.users() == [("1", "ann")]


def test_an_error_that_is_not_transient_propagates_at_once(contention: Contention) -> None:
    calls: list[int] = []

    def work(unit: Any) -> None:
        calls.append(unit.attempt)
        raise Boom

    async def work_async(unit: Any) -> None:
        work(unit)

    with pytest.raises(Boom):
        run(contention, work_async if contention.flavour.is_async else work, uow.Retry(attempts=5))
    assert calls == [1]


def test_hooks_and_events_fire_once_for_the_successful_attempt(contention: Contention) -> None:
    contention.backend.insert(Account(id=1, owner="ann"))
    blocker = Blocker(contention.backend)
    hooks: list[int] = []
    events: list[object] = []
    retry = uow.Retry(attempts=3, **releasing(blocker, [], contention.flavour))
    fail_fast = contention.fail_fast()

    def work(unit: Any) -> None:
        attempt = unit.attempt
        unit.on_commit(lambda: hooks.append(attempt))
        unit.repository(Account).get_one(1).record_event(f"attempt {attempt}")
        if fail_fast:
            unit.session.execute(text(fail_fast))
        unit.session.execute(contention.rename("renamed"))
        unit.commit()

    async def work_async(unit: Any) -> None:
        attempt = unit.attempt
        unit.on_commit(lambda: hooks.append(attempt))
        (await unit.repository(Account).get_one(1)).record_event(f"attempt {attempt}")
        if fail_fast:
            await unit.session.execute(text(fail_fast))
        await unit.session.execute(contention.rename("renamed"))
        await unit.commit()

    run(contention, work_async if contention.flavour.is_async else work, retry, dispatch=events.append)

    assert hooks == [2]
    assert events == ["attempt 2"]


def test_an_attempt_that_already_committed_is_not_run_again(contention: Contention) -> None:
    calls: list[int] = []

    def work(unit: Any) -> None:
        calls.append(unit.attempt)
        unit.repository(User).add(User(id="2", name="committed first"))
        unit.commit()
        raise Boom("transient, but after a commit")

    async def work_async(unit: Any) -> None:
        calls.append(unit.attempt)
        await unit.repository(User).add(User(id="2", name="committed first"))
        await unit.commit()
        raise Boom("transient, but after a commit")

    retry = uow.Retry(attempts=5, transient=lambda error: isinstance(error, Boom))
    with pytest.raises(Boom):
        run(contention, work_async if contention.flavour.is_async else work, retry)
    assert calls == [1]
    assert contention.backend.users() == [("2", "committed first")]


def test_a_transient_failure_outside_run_reaches_the_user_as_transient_error(contention: Contention) -> None:
    blocker = Blocker(contention.backend)
    fail_fast = contention.fail_fast()
    flavour = contention.flavour
    unit = contention.unit_class()(contention.factory)
    try:
        with pytest.raises(uow.TransientError) as caught:

            async def scenario_async() -> None:
                async with unit:
                    if fail_fast:
                        await unit.session.execute(text(fail_fast))
                    (await unit.repository(User).get_one("1")).name = "renamed"
                    await unit.commit()

            if flavour.is_async:
                flavour.run(scenario_async())
            else:
                with unit:
                    if fail_fast:
                        unit.session.execute(text(fail_fast))
                    unit.repository(User).get_one("1").name = "renamed"
                    unit.commit()
    finally:
        blocker.release()

    assert caught.value.attempts is None
    assert isinstance(caught.value.__cause__, sqlalchemy.exc.DBAPIError)
    assert uow.is_transient(caught.value)
    assert contention.backend.users() == [("1", "ann")]


def test_a_custom_predicate_makes_more_errors_worth_retrying(contention: Contention) -> None:
    calls: list[int] = []

    def work(unit: Any) -> str:
        calls.append(unit.attempt)
        if unit.attempt < 3:
            raise Boom("flaky")
        return "done"

    async def work_async(unit: Any) -> str:
        return work(unit)

    retry = uow.Retry(
        attempts=3,
        transient=lambda error: isinstance(error, Boom),
        sleep=lambda _: None,
        async_sleep=asyncio.sleep,
        initial_delay=0,
    )
    assert run(contention, work_async if contention.flavour.is_async else work, retry) == "done"
    assert calls == [1, 2, 3]


def test_run_and_attempts_are_refused_on_an_active_unit(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit() as unit:
        with pytest.raises(uow.StateError, match="already active"):
            unit.real.attempts()
        with pytest.raises(uow.StateError, match="already active"):
            flavour.run(unit.real.run(lambda _: None))
