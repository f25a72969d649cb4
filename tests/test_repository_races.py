"""Concurrent writers through repositories, on real servers with real threads and tasks.

Lost updates are shown, then prevented by a version column retried with `run(retry=...)` and by
row locks; upserts and get-or-create are raced and must neither fail nor lose a write; lock options
meet rows another transaction holds.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import Session, sessionmaker

import uow
from tests.conftest import Backend
from tests.drivers import Flavour, in_threads
from tests.models import Account, Counter

SERVERS = pytest.mark.parametrize("backend_setup", ["postgresql", "mariadb"], indirect=True)
SYNC = pytest.mark.parametrize("flavour", ["sync"], indirect=True)
ASYNC = pytest.mark.parametrize("flavour", ["async"], indirect=True)

WRITERS = 20
RETRY = uow.Retry(attempts=200, initial_delay=0.001, max_delay=0.02, multiplier=1.5)


@pytest.fixture
def engine(backend: Backend) -> Iterator[Engine]:
    """An engine with a connection for every writer, so that all of them hold one at once.

    Kept with the backend's engines (and disposed of with them): MariaDB takes a while to connect.
    """
    made = backend.engines.get("writers")
    if made is None:
        made = backend.engines["writers"] = backend.sync_engine(pool_size=WRITERS + 2, max_overflow=0)
    assert isinstance(made, Engine)
    yield made
    assert made.pool.checkedout() == 0  # type: ignore[attr-defined]


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine)


def balance(backend: Backend) -> int:
    with backend.check.connect() as connection:
        return int(connection.scalar(select(Account.balance).where(Account.id == 1)) or 0)


# -- lost updates ---------------------------------------------------------------------------------


@SERVERS
def test_read_then_write_without_protection_loses_updates(
    sessions: sessionmaker[Session], backend: Backend
) -> None:
    backend.insert(Account(id=1, owner="ann", balance=0))
    everyone_read = threading.Barrier(WRITERS, timeout=20)

    def increment(number: int) -> None:
        with uow.UnitOfWork(sessions) as unit:
            account = unit.repository(Account).get_one(1)
            everyone_read.wait()  # every writer read 0 before any writes
            account.balance += 1
            unit.commit()

    in_threads(WRITERS, increment)

    assert balance(backend) == 1, "each writer wrote 0 + 1: all but one update were lost, silently"


@SERVERS
def test_a_version_column_with_retries_loses_no_update(
    sessions: sessionmaker[Session], backend: Backend
) -> None:
    backend.insert(Counter(id=1, value=0))
    everyone_read = threading.Barrier(WRITERS, timeout=20)
    conflicts = []

    def increment(number: int) -> None:
        def work(unit: uow.UnitOfWork) -> None:
            counter = unit.repository(Counter).get_one(1)
            if unit.attempt == 1:
                everyone_read.wait()  # every writer read version 1 before any writes
            else:
                conflicts.append(number)
            counter.value += 1
            unit.commit()

        uow.UnitOfWork(sessions).run(work, retry=RETRY)

    in_threads(WRITERS, increment)

    with backend.check.connect() as connection:
        value, version = connection.execute(select(Counter.value, Counter.version)).one()
    assert (value, version) == (WRITERS, WRITERS + 1)
    assert len(conflicts) >= WRITERS - 1, "every writer but the first had a stale version to retry"


@SERVERS
def test_a_locking_read_loses_no_update(sessions: sessionmaker[Session], backend: Backend) -> None:
    backend.insert(Account(id=1, owner="ann", balance=0))
    start = threading.Barrier(WRITERS, timeout=20)

    def increment(number: int) -> None:
        start.wait()
        with uow.UnitOfWork(sessions) as unit:
            unit.repository(Account).get_one(1, for_update=True).balance += 1
            unit.commit()

    in_threads(WRITERS, increment)

    assert balance(backend) == WRITERS


@ASYNC
@SERVERS
def test_async_tasks_with_a_version_column_and_retries_lose_no_update(
    flavour: Flavour, backend: Backend
) -> None:
    backend.insert(Counter(id=1, value=0))
    engine = backend.async_engine(pool_size=WRITERS + 2, max_overflow=0)
    factory = async_sessionmaker(engine)
    conflicts = []

    async def scenario() -> None:
        everyone_read = asyncio.Barrier(WRITERS)

        async def increment(number: int) -> None:
            async def work(unit: uow.AsyncUnitOfWork) -> None:
                counter = await unit.repository(Counter).get_one(1)
                if unit.attempt == 1:
                    await everyone_read.wait()
                else:
                    conflicts.append(number)
                counter.value += 1
                await unit.commit()

            await uow.AsyncUnitOfWork(factory).run(work, retry=RETRY)

        try:
            async with asyncio.timeout(60), asyncio.TaskGroup() as group:
                for number in range(WRITERS):
                    group.create_task(increment(number))
        finally:
            await engine.dispose()

    flavour.run(scenario())

    with backend.check.connect() as connection:
        assert connection.execute(select(Counter.value, Counter.version)).one() == (WRITERS, WRITERS + 1)
    assert len(conflicts) >= WRITERS - 1


# -- upserts and get-or-create --------------------------------------------------------------------


@SERVERS
def test_concurrent_upserts_of_one_key_neither_fail_nor_lose_a_write(
    sessions: sessionmaker[Session], backend: Backend
) -> None:
    start = threading.Barrier(16, timeout=20)
    per_thread = 5

    def upsert(number: int) -> None:
        start.wait()
        for _ in range(per_thread):
            with uow.UnitOfWork(sessions) as unit:
                stored = unit.repository(Account).upsert(
                    {"id": 1, "owner": "ann", "balance": 1}, update={"balance": Account.balance + 1}
                )
                assert stored.id == 1
                unit.commit()

    in_threads(16, upsert)

    assert balance(backend) == 16 * per_thread


@SERVERS
def test_concurrent_upsert_many_of_the_same_keys_leaves_one_row_per_key(
    sessions: sessionmaker[Session], backend: Backend
) -> None:
    start = threading.Barrier(8, timeout=20)

    def upsert(number: int) -> None:
        rows = [{"id": key, "owner": f"writer {number}", "balance": number} for key in range(1, 6)]
        start.wait()
        with uow.UnitOfWork(sessions) as unit:
            stored = unit.repository(Account).upsert_many(rows)
            assert [(a.id, a.owner) for a in stored] == [(key, f"writer {number}") for key in range(1, 6)]
            unit.commit()

    in_threads(8, upsert)

    rows = backend.accounts()
    assert [row[0] for row in rows] == [1, 2, 3, 4, 5]
    assert len({(owner, money) for _, owner, money in rows}) == 1, "one writer's statement was applied last"


@SERVERS
@pytest.mark.parametrize("isolation_level", [None, "REPEATABLE READ"])
def test_concurrent_get_or_create_makes_one_row_and_every_caller_gets_it(
    sessions: sessionmaker[Session], backend: Backend, isolation_level: str | None
) -> None:
    start = threading.Barrier(WRITERS, timeout=20)
    results: list[tuple[int, bool]] = []

    def get_or_create(number: int) -> None:
        def work(unit: uow.UnitOfWork) -> None:
            if unit.attempt == 1:
                unit.repository(Account).count()  # a snapshot taken before the row exists
                start.wait()
            account, created = unit.repository(Account).get_or_create(
                email="ann@example.org", defaults={"id": number, "owner": f"writer {number}"}
            )
            unit.commit()
            results.append((account.id, created))

        uow.UnitOfWork(sessions, isolation_level=isolation_level).run(work, retry=RETRY)

    in_threads(WRITERS, get_or_create)

    rows = backend.accounts()
    assert len(rows) == 1
    assert sum(created for _, created in results) == 1
    assert {account_id for account_id, _ in results} == {rows[0][0]}


# -- lock options against rows another transaction holds -----------------------------------------


@SYNC
@SERVERS
def test_skip_locked_leaves_out_the_rows_another_transaction_locked(
    flavour: Flavour, backend: Backend
) -> None:
    backend.insert(*(Account(id=n, owner=f"o{n}") for n in range(1, 5)))
    with flavour.unit() as holder, flavour.unit() as worker:
        holder.repository(Account).list(Account.id.in_([1, 2]), for_update=True)  # no gap locks
        free = worker.repository(Account).list(order_by="id", for_update=uow.Lock(skip_locked=True))
        assert [account.id for account in free] == [3, 4]


@SYNC
@SERVERS
def test_nowait_fails_at_once_with_a_transient_error_on_a_locked_row(
    flavour: Flavour, backend: Backend
) -> None:
    backend.insert(Account(id=1, owner="ann"))
    with flavour.unit() as holder, flavour.unit() as worker:
        holder.repository(Account).get_one(1, for_update=True)
        started = time.monotonic()
        with pytest.raises(uow.TransientError):
            worker.repository(Account).get_one(1, for_update=uow.Lock(nowait=True))
        assert time.monotonic() - started < 2
        worker.rollback()


@SYNC
@SERVERS
def test_a_locking_read_waits_for_the_holder_and_then_sees_its_commit(
    flavour: Flavour, backend: Backend
) -> None:
    backend.insert(Account(id=1, owner="ann", balance=0))
    locked = threading.Event()
    seen: list[int] = []

    def hold() -> None:
        with flavour.unit() as holder:
            holder.repository(Account).get_one(1, for_update=True).balance = 5
            locked.set()
            time.sleep(0.3)
            holder.commit()

    def read() -> None:
        locked.wait(10)
        with flavour.unit() as reader:
            seen.append(reader.repository(Account).get_one(1, for_update=True).balance)

    in_threads(2, lambda number: hold() if number == 0 else read())

    assert seen == [5]
