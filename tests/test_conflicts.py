"""Real conflicts between concurrent transactions, resolved by retrying whole units.

Nothing here is simulated: threads and tasks race on real servers, the servers detect the
serialization failures and deadlocks, and the retries must leave the data exactly right.
"""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import Engine, event, func, select, text

import uow
from tests.conftest import Backend
from tests.drivers import Flavour, in_threads
from tests.models import Account, Doctor, Transfer, User

POSTGRESQL = pytest.mark.parametrize("backend_setup", ["postgresql"], indirect=True)
MARIADB = pytest.mark.parametrize("backend_setup", ["mariadb"], indirect=True)
SERVERS = pytest.mark.parametrize("backend_setup", ["postgresql", "mariadb"], indirect=True)
SYNC = pytest.mark.parametrize("flavour", ["sync"], indirect=True)
ASYNC = pytest.mark.parametrize("flavour", ["async"], indirect=True)

ACCOUNTS = 10
OPENING_BALANCE = 1_000


class Counter:
    """Counts failed attempts across threads: every attempt after the first of a unit is a retry."""

    def __init__(self) -> None:
        self.retries = 0
        self._lock = threading.Lock()

    def saw(self, attempt: int | None) -> None:
        if attempt and attempt > 1:
            with self._lock:
                self.retries += 1


# -- two transactions, one conflict -------------------------------------------------------------


@SYNC
@POSTGRESQL
def test_serializable_write_skew_is_retried_and_the_result_is_serializable(
    flavour: Flavour, backend: Backend
) -> None:
    backend.insert(Doctor(id=1, on_call=True), Doctor(id=2, on_call=True))
    barrier = threading.Barrier(2, timeout=10)
    counter = Counter()

    def go_off_call(doctor_id: int) -> None:
        def work(unit: uow.UnitOfWork) -> None:
            counter.saw(unit.attempt)
            on_call = unit.repository(Doctor).count(on_call=True)
            if unit.attempt == 1:
                barrier.wait()  # both have read before either writes: the classic write skew
            if on_call >= 2:
                unit.repository(Doctor).get_one(doctor_id).on_call = False
            unit.commit()

        uow.UnitOfWork(flavour.session_factory, isolation_level="SERIALIZABLE").run(
            work, retry=uow.Retry(attempts=5, initial_delay=0.01)
        )

    in_threads(2, lambda number: go_off_call(number + 1))

    with backend.check.connect() as connection:
        on_call = connection.execute(select(func.count()).where(Doctor.on_call)).scalar_one()
    assert on_call == 1, "both doctors went off call: the write skew was not prevented"
    assert counter.retries == 1


@SYNC
@MARIADB
def test_a_deadlock_is_retried_and_both_transactions_finish(flavour: Flavour, backend: Backend) -> None:
    backend.insert(Account(id=1, owner="a", balance=0), Account(id=2, owner="b", balance=0))
    barrier = threading.Barrier(2, timeout=10)
    counter = Counter()

    def lock_in_order(first: int, second: int) -> None:
        def work(unit: uow.UnitOfWork) -> None:
            counter.saw(unit.attempt)
            accounts = unit.repository(Account)
            unit.session.execute(select(Account).where(Account.id == first).with_for_update())
            accounts.get_one(first).balance += 1
            unit.session.flush()
            if unit.attempt == 1:
                barrier.wait()  # each holds its first row; now each asks for the other's
            unit.session.execute(select(Account).where(Account.id == second).with_for_update())
            accounts.get_one(second).balance += 1
            unit.commit()

        uow.UnitOfWork(flavour.session_factory).run(work, retry=uow.Retry(attempts=5, initial_delay=0.01))

    in_threads(2, lambda number: lock_in_order(1, 2) if number == 0 else lock_in_order(2, 1))

    assert backend.accounts() == [(1, "a", 2), (2, "b", 2)]
    assert counter.retries == 1


# -- an invariant under contention ---------------------------------------------------------------


def open_accounts(backend: Backend) -> None:
    backend.insert(*(Account(id=i, owner=f"owner {i}", balance=OPENING_BALANCE) for i in range(ACCOUNTS)))


def assert_money_is_conserved(backend: Backend, transfers: int) -> None:
    with backend.check.connect() as connection:
        total = connection.execute(select(func.sum(Account.balance))).scalar_one()
        logged = connection.execute(select(func.count()).select_from(Transfer)).scalar_one()
        moved = connection.execute(
            select(Transfer.source, func.sum(Transfer.amount)).group_by(Transfer.source)
        ).all()
        balances = dict(connection.execute(select(Account.id, Account.balance)).all())
    assert total == ACCOUNTS * OPENING_BALANCE
    assert logged == transfers
    received = dict.fromkeys(range(ACCOUNTS), 0)
    with backend.check.connect() as connection:
        for target, amount in connection.execute(
            select(Transfer.target, func.sum(Transfer.amount)).group_by(Transfer.target)
        ):
            received[target] = amount
    sent = dict.fromkeys(range(ACCOUNTS), 0) | dict(moved)
    for account in range(ACCOUNTS):
        assert balances[account] == OPENING_BALANCE - sent[account] + received[account]


def transfer_work(backend: Backend, rng: random.Random, counter: Counter) -> Callable[[Any], None]:
    source, target = rng.sample(range(ACCOUNTS), 2)
    amount = rng.randint(1, 50)
    transfer_id = str(uuid.uuid4())
    lock = backend.kind == "mariadb"

    def work(unit: uow.UnitOfWork) -> None:
        counter.saw(unit.attempt)
        query = select(Account).where(Account.id.in_(sorted((source, target))))
        accounts = {a.id: a for a in unit.session.scalars(query.with_for_update() if lock else query)}
        accounts[source].balance -= amount
        accounts[target].balance += amount
        unit.repository(Transfer).add(Transfer(id=transfer_id, source=source, target=target, amount=amount))
        unit.commit()

    return work


def async_transfer_work(rng: random.Random, counter: Counter) -> Callable[[Any], Any]:
    source, target = rng.sample(range(ACCOUNTS), 2)
    amount = rng.randint(1, 50)
    transfer_id = str(uuid.uuid4())

    async def work(unit: uow.AsyncUnitOfWork) -> None:
        counter.saw(unit.attempt)
        query = select(Account).where(Account.id.in_(sorted((source, target))))
        accounts = {a.id: a for a in await unit.session.scalars(query)}
        accounts[source].balance -= amount
        accounts[target].balance += amount
        await unit.repository(Transfer).add(
            Transfer(id=transfer_id, source=source, target=target, amount=amount)
        )
        await unit.commit()

    return work


@SYNC
@SERVERS
def test_concurrent_transfers_conserve_money_and_apply_each_transfer_once(
    flavour: Flavour, backend: Backend, record_property: Callable[[str, object], None]
) -> None:
    open_accounts(backend)
    counter = Counter()
    threads, per_thread = 8, 200
    # PostgreSQL: SERIALIZABLE, conflicts surface as 40001. MariaDB: SELECT ... FOR UPDATE on the two
    # rows, in id order, conflicts surface as deadlocks or lock waits.
    level = "SERIALIZABLE" if backend.kind == "postgresql" else None
    retry = uow.Retry(attempts=100, initial_delay=0.01, max_delay=0.2)

    def worker(number: int) -> None:
        rng = random.Random(number)
        unit = uow.UnitOfWork(flavour.session_factory, isolation_level=level)
        for _ in range(per_thread):
            unit.run(transfer_work(backend, rng, counter), retry=retry)

    in_threads(threads, worker)

    assert_money_is_conserved(backend, threads * per_thread)
    record_property("retries", counter.retries)
    print(f"\n{backend.name}: {threads * per_thread} transfers, {counter.retries} retries")


@ASYNC
@POSTGRESQL
def test_concurrent_async_transfers_conserve_money_and_apply_each_transfer_once(
    flavour: Flavour, backend: Backend, record_property: Callable[[str, object], None]
) -> None:
    open_accounts(backend)
    counter = Counter()
    tasks, per_task = 50, 4
    retry = uow.Retry(attempts=100, initial_delay=0.005, max_delay=0.2)

    async def worker(number: int) -> None:
        rng = random.Random(1000 + number)
        unit = uow.AsyncUnitOfWork(flavour.session_factory, isolation_level="SERIALIZABLE")
        for _ in range(per_task):
            await unit.run(async_transfer_work(rng, counter), retry=retry)

    async def scenario() -> None:
        async with asyncio.TaskGroup() as group:  # a failure cancels the other tasks
            for number in range(tasks):
                group.create_task(worker(number))

    flavour.run(scenario())

    assert_money_is_conserved(backend, tasks * per_task)
    record_property("retries", counter.retries)
    print(f"\n{backend.name} (asyncpg): {tasks * per_task} transfers, {counter.retries} retries")


# -- commits whose outcome is unknown ----------------------------------------------------------


def kill_own_connection_before_commit(engine: Engine, backend: Backend) -> Callable[[Any], None]:
    def kill(connection: Any) -> None:
        if backend.kind == "postgresql":
            pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            statement = text("SELECT pg_terminate_backend(:pid)").bindparams(pid=pid)
        else:
            pid = connection.exec_driver_sql("SELECT CONNECTION_ID()").scalar_one()
            statement = text(f"KILL {int(pid)}")
        with backend.check.begin() as other:
            other.execute(statement)

    event.listen(engine, "commit", kill)
    return kill


@SERVERS
def test_a_connection_lost_during_commit_is_reported_as_unknown_and_never_retried(
    flavour: Flavour, backend: Backend
) -> None:
    engine = flavour.engine.sync_engine if flavour.is_async else flavour.engine
    assert isinstance(engine, Engine)
    calls: list[int | None] = []

    def work(unit: Any) -> None:
        calls.append(unit.attempt)
        unit.repository(User).add(User(id="1", name="ann"))
        unit.commit()

    async def work_async(unit: Any) -> None:
        calls.append(unit.attempt)
        await unit.repository(User).add(User(id="1", name="ann"))
        await unit.commit()

    kill = kill_own_connection_before_commit(engine, backend)
    factory: Any = flavour.session_factory
    unit: Any = uow.AsyncUnitOfWork(factory) if flavour.is_async else uow.UnitOfWork(factory)
    try:
        with pytest.raises(uow.CommitOutcomeUnknownError) as caught:
            flavour.run(unit.run(work_async if flavour.is_async else work, retry=uow.Retry(attempts=5)))
    finally:
        event.remove(engine, "commit", kill)

    assert calls == [1]
    assert caught.value.connection_invalidated
    assert not uow.is_transient(caught.value)
    assert flavour.checked_out() == 0


@SYNC
@SERVERS
def test_a_connection_lost_during_a_commit_sent_through_the_session_is_never_retried(
    flavour: Flavour, backend: Backend
) -> None:
    engine = flavour.engine
    assert isinstance(engine, Engine)
    calls: list[int | None] = []

    def work(unit: uow.UnitOfWork) -> None:
        calls.append(unit.attempt)
        unit.repository(User).add(User(id="1", name="ann"))
        unit.session.commit()  # bypasses the unit's own translation

    kill = kill_own_connection_before_commit(engine, backend)
    try:
        with pytest.raises(sqlalchemy.exc.DBAPIError) as caught:
            uow.UnitOfWork(flavour.session_factory).run(work, retry=uow.Retry(attempts=5))
    finally:
        event.remove(engine, "commit", kill)

    assert calls == [1]
    assert caught.value.connection_invalidated
