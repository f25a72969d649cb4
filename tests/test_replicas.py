"""Read replicas: which server each unit reads from, read-your-writes, and what fails on a replica.

Everything runs on a real PostgreSQL primary and its streaming replica (``.ci/clusters/postgresql-replica``):
where a unit went is read from the server itself (``inet_server_port()``, ``pg_stat_activity``),
staleness from what the replica returns, and lag is made on purpose by pausing the replica's replay.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import Engine, event, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import sessionmaker

import uow
from tests.clusters import Cluster, script, wait_until
from tests.models import Account
from uow import AsyncUnitOfWork, ReadYourWrites, ReplicaRouter, Retry, UnitOfWork
from uow.examples.users import User

PRIMARY, REPLICA = 0, 1
MakeEngine = Callable[..., Engine]


@pytest.fixture
def cluster(pg_cluster: Cluster) -> Iterator[Cluster]:
    """The primary and its replica with empty tables, the replica caught up."""
    _clear(pg_cluster)
    yield pg_cluster
    _clear(pg_cluster)


def _clear(cluster: Cluster) -> None:
    cluster.run(PRIMARY, "DELETE FROM uow_account")
    cluster.run(PRIMARY, 'DELETE FROM "user"')
    caught_up(cluster)


def caught_up(cluster: Cluster) -> None:
    """Wait until the replica has replayed everything the primary has written so far."""
    lsn = cluster.scalar(PRIMARY, "SELECT pg_current_wal_insert_lsn()::text")
    wait_until(
        lambda: cluster.scalar(REPLICA, "SELECT pg_last_wal_replay_lsn() >= CAST(:lsn AS pg_lsn)", lsn=lsn),
        "the replica replaying the primary's WAL",
    )


def port_of(unit: UnitOfWork) -> int:
    port: int = unit.session.execute(text("SELECT inet_server_port()")).scalar_one()
    return port


def server_of(cluster: Cluster, port: int) -> int:
    return REPLICA if port == make_url(cluster.urls[REPLICA]).port else PRIMARY


def router_of(cluster: Cluster, engines: MakeEngine, **options: Any) -> ReplicaRouter:
    return ReplicaRouter(engines(cluster.urls[PRIMARY]), [engines(cluster.urls[REPLICA])], **options)


@contextmanager
def replay_paused(cluster: Cluster) -> Iterator[None]:
    """The replica receives the primary's WAL but applies none of it: it falls behind on purpose."""
    cluster.run(REPLICA, "SELECT pg_wal_replay_pause()")
    try:
        wait_until(
            lambda: cluster.scalar(REPLICA, "SELECT pg_get_wal_replay_pause_state()") == "paused", "pause"
        )
        yield
    finally:
        cluster.run(REPLICA, "SELECT pg_wal_replay_resume()")


def set_balance(router: Any, balance: int) -> None:
    with UnitOfWork(router) as unit:
        account = unit.repository(Account).get(1)
        if account is None:
            unit.repository(Account).add(Account(id=1, owner="ann", balance=balance))
        else:
            account.balance = balance
        unit.commit()


def read_balance(router: Any) -> tuple[int, int]:
    """The balance a read-only unit reads, and the server it read it from."""
    with UnitOfWork(router, read_only=True) as unit:
        return unit.repository(Account).get_one(1).balance, port_of(unit)


# -- where units go -----------------------------------------------------------------------------


def test_a_read_only_unit_reads_from_the_replica(cluster: Cluster, engines: MakeEngine) -> None:
    router = router_of(cluster, engines)

    with UnitOfWork(router, read_only=True) as unit:
        assert unit.repository(User).list() == []
        pid = unit.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        seen_on = [
            cluster.scalar(server, "SELECT count(*) FROM pg_stat_activity WHERE pid = :pid", pid=pid)
            for server in (PRIMARY, REPLICA)
        ]

    assert seen_on == [0, 1]


def test_a_unit_that_may_write_goes_to_the_primary(cluster: Cluster, engines: MakeEngine) -> None:
    router = router_of(cluster, engines)

    with UnitOfWork(router) as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        port = port_of(unit)
        unit.commit()

    assert server_of(cluster, port) == PRIMARY
    assert cluster.scalar(PRIMARY, 'SELECT name FROM "user"') == "ann"


def test_a_session_used_without_a_unit_goes_to_the_primary(cluster: Cluster, engines: MakeEngine) -> None:
    router = router_of(cluster, engines)

    with router() as session:
        port = session.execute(text("SELECT inet_server_port()")).scalar_one()

    assert server_of(cluster, port) == PRIMARY


def test_a_read_only_unit_keeps_its_isolation_level_and_read_only_mode_on_the_replica(
    cluster: Cluster, engines: MakeEngine
) -> None:
    router = router_of(cluster, engines)

    with UnitOfWork(router, read_only=True, isolation_level="REPEATABLE READ") as unit:
        port = port_of(unit)
        isolation = unit.session.execute(text("SHOW transaction_isolation")).scalar_one()
        read_only = unit.session.execute(text("SHOW transaction_read_only")).scalar_one()

    assert (server_of(cluster, port), isolation, read_only) == (REPLICA, "repeatable read", "on")


def test_a_read_only_serializable_unit_reads_from_the_primary(cluster: Cluster, engines: MakeEngine) -> None:
    router = router_of(cluster, engines)

    with UnitOfWork(router, read_only=True, isolation_level="SERIALIZABLE") as unit:
        port = port_of(unit)
        isolation = unit.session.execute(text("SHOW transaction_isolation")).scalar_one()

    assert (server_of(cluster, port), isolation) == (PRIMARY, "serializable")


def test_the_replicas_take_turns(cluster: Cluster, engines: MakeEngine) -> None:
    names = ["replica-a", "replica-b"]
    replicas = [engines(cluster.urls[REPLICA], connect_args={"application_name": name}) for name in names]
    router = ReplicaRouter(engines(cluster.urls[PRIMARY]), replicas)

    served = []
    for _ in range(4):
        with UnitOfWork(router, read_only=True) as unit:
            served.append(unit.session.execute(text("SELECT current_setting('application_name')")).scalar())

    assert served == ["replica-a", "replica-b", "replica-a", "replica-b"]


def test_a_random_policy_draws_the_replica_with_its_rng(cluster: Cluster, engines: MakeEngine) -> None:
    names = ["replica-a", "replica-b", "replica-c"]
    replicas = [engines(cluster.urls[REPLICA], connect_args={"application_name": name}) for name in names]
    draws = iter([0.9, 0.0, 0.5])
    router = ReplicaRouter(
        engines(cluster.urls[PRIMARY]), replicas, policy=uow.RandomReplica(rng=lambda: next(draws))
    )

    served = []
    for _ in range(3):
        with UnitOfWork(router, read_only=True) as unit:
            served.append(unit.session.execute(text("SELECT current_setting('application_name')")).scalar())

    assert served == ["replica-c", "replica-a", "replica-b"]


def test_a_policy_that_returns_no_replica_of_the_router_is_refused(
    cluster: Cluster, engines: MakeEngine
) -> None:
    stranger = engines(cluster.urls[REPLICA])
    router = router_of(cluster, engines, policy=lambda replicas: stranger)

    with UnitOfWork(router, read_only=True) as unit, pytest.raises(uow.InvalidArgumentError, match="policy"):
        unit.session.execute(text("SELECT 1"))


def test_the_router_keeps_the_session_options_of_the_primarys_sessionmaker(
    cluster: Cluster, engines: MakeEngine
) -> None:
    primary = sessionmaker(engines(cluster.urls[PRIMARY]), expire_on_commit=False)
    router = ReplicaRouter(primary, [engines(cluster.urls[REPLICA])])

    with UnitOfWork(router) as unit:
        user = unit.repository(User).add(User(id="1", name="ann"))
        unit.commit()

    assert user.name == "ann"  # not expired: reading it needs no session


# -- read-your-writes ---------------------------------------------------------------------------

PAIRS = 200


def test_read_your_writes_leaves_no_stale_read(
    cluster: Cluster, engines: MakeEngine, record_property: Callable[[str, object], None]
) -> None:
    router = router_of(cluster, engines)
    stale, on_replica = 0, 0

    for balance in range(PAIRS):
        set_balance(router, balance)
        read, port = read_balance(router)
        stale += read != balance
        on_replica += server_of(cluster, port) == REPLICA

    record_property("reads_on_the_replica", f"{on_replica}/{PAIRS}")
    assert stale == 0
    assert on_replica > PAIRS // 2  # waiting for the replay, not giving up on the replica


def test_without_read_your_writes_a_replica_reads_in_order_and_its_stale_rate_is_recorded(
    cluster: Cluster, engines: MakeEngine, record_property: Callable[[str, object], None]
) -> None:
    router = router_of(cluster, engines, read_your_writes=None)
    reads = []

    for balance in range(PAIRS):
        set_balance(router, balance)
        read, port = read_balance(router)
        assert server_of(cluster, port) == REPLICA
        reads.append((balance, read))

    record_property("stale_reads", f"{sum(read != balance for balance, read in reads)}/{PAIRS}")
    assert all(read <= balance for balance, read in reads)  # never ahead of the primary
    assert [read for _, read in reads] == sorted(read for _, read in reads)  # never back in time


@contextmanager
def synchronous_replication(cluster: Cluster) -> Iterator[None]:
    """Every COMMIT on the primary returns only once the replica has applied it (remote_apply)."""
    cluster.run(PRIMARY, "ALTER SYSTEM SET synchronous_standby_names = '*'")
    cluster.run(PRIMARY, "ALTER SYSTEM SET synchronous_commit = 'remote_apply'")
    cluster.run(PRIMARY, "SELECT pg_reload_conf()")
    try:
        wait_until(
            lambda: cluster.scalar(PRIMARY, "SELECT sync_state FROM pg_stat_replication") == "sync",
            "the replica becoming synchronous",
        )
        yield
    finally:
        cluster.run(PRIMARY, "ALTER SYSTEM RESET synchronous_standby_names")
        cluster.run(PRIMARY, "ALTER SYSTEM RESET synchronous_commit")
        cluster.run(PRIMARY, "SELECT pg_reload_conf()")


def test_with_synchronous_replication_a_replica_is_never_stale_without_read_your_writes(
    cluster: Cluster, engines: MakeEngine
) -> None:
    router = router_of(cluster, engines, read_your_writes=None)
    stale = 0

    with synchronous_replication(cluster):
        for balance in range(PAIRS):
            set_balance(router, balance)
            read, port = read_balance(router)
            assert server_of(cluster, port) == REPLICA
            stale += read != balance

    assert stale == 0


def test_without_read_your_writes_a_lagging_replica_serves_stale_data(
    cluster: Cluster, engines: MakeEngine
) -> None:
    router = router_of(cluster, engines, read_your_writes=None)
    set_balance(router, 1)
    caught_up(cluster)

    with replay_paused(cluster):
        set_balance(router, 2)
        read, port = read_balance(router)

    assert (read, server_of(cluster, port)) == (1, REPLICA)


def test_a_replica_that_does_not_catch_up_in_time_leaves_the_read_to_the_primary(
    cluster: Cluster, engines: MakeEngine
) -> None:
    router = router_of(cluster, engines, read_your_writes=ReadYourWrites(timeout=0.05))
    set_balance(router, 1)
    caught_up(cluster)

    with replay_paused(cluster):
        set_balance(router, 2)
        started = time.monotonic()
        read, port = read_balance(router)
        waited = time.monotonic() - started

    assert (read, server_of(cluster, port)) == (2, PRIMARY)
    assert 0.05 <= waited < 1.0


def test_read_your_writes_follows_the_commits_of_the_same_thread_only(
    cluster: Cluster, engines: MakeEngine
) -> None:
    router = router_of(cluster, engines, read_your_writes=ReadYourWrites(timeout=0.05))
    set_balance(router, 1)
    caught_up(cluster)
    elsewhere: list[tuple[int, int]] = []

    with replay_paused(cluster):
        set_balance(router, 2)
        reader = threading.Thread(target=lambda: elsewhere.append(read_balance(router)))
        reader.start()
        reader.join(timeout=10)
        here = read_balance(router)

    assert [(read, server_of(cluster, port)) for read, port in elsewhere] == [(1, REPLICA)]
    assert (here[0], server_of(cluster, here[1])) == (2, PRIMARY)


def test_the_primary_window_reads_from_the_primary_for_a_while_after_a_commit(
    cluster: Cluster, engines: MakeEngine
) -> None:
    router = router_of(cluster, engines, read_your_writes=ReadYourWrites(primary_window=0.3))
    set_balance(router, 1)

    soon = read_balance(router)
    time.sleep(0.3)
    later = read_balance(router)

    assert (soon[0], server_of(cluster, soon[1])) == (1, PRIMARY)
    assert server_of(cluster, later[1]) == REPLICA


def test_a_replica_seen_caught_up_is_not_asked_again_for_the_same_commit(
    cluster: Cluster, engines: MakeEngine
) -> None:
    router = router_of(cluster, engines)
    asked: list[str] = []
    for engine in (router.primary, *router.replicas):
        event.listen(engine, "before_cursor_execute", lambda *args: asked.append(args[2]))
    set_balance(router, 1)

    asked.clear()
    read_balance(router)
    first = [sql for sql in asked if "wal" in sql]
    asked.clear()
    read_balance(router)
    second = [sql for sql in asked if "wal" in sql]

    assert any("pg_current_wal_insert_lsn" in sql for sql in first)
    assert any("pg_last_wal_replay_lsn" in sql for sql in first)
    assert second == []


def test_async_read_your_writes_leaves_no_stale_read(cluster: Cluster, runner: asyncio.Runner) -> None:
    async def scenario() -> tuple[int, int]:
        primary = create_async_engine(_asyncpg(cluster.urls[PRIMARY]))
        replica = create_async_engine(_asyncpg(cluster.urls[REPLICA]))
        router = uow.AsyncReplicaRouter(primary, [replica])
        stale, on_replica = 0, 0
        try:
            for balance in range(PAIRS // 2):
                async with AsyncUnitOfWork(router) as unit:
                    account = await unit.repository(Account).get(1)
                    if account is None:
                        await unit.repository(Account).add(Account(id=1, owner="ann", balance=balance))
                    else:
                        account.balance = balance
                    await unit.commit()
                async with AsyncUnitOfWork(router, read_only=True) as unit:
                    read = (await unit.repository(Account).get_one(1)).balance
                    port = (await unit.session.execute(text("SELECT inet_server_port()"))).scalar_one()
                stale += read != balance
                on_replica += server_of(cluster, port) == REPLICA
            assert primary.pool.checkedout() == replica.pool.checkedout() == 0  # type: ignore[attr-defined]
        finally:
            await primary.dispose()
            await replica.dispose()
        return stale, on_replica

    stale, on_replica = runner.run(scenario())

    assert stale == 0
    assert on_replica > PAIRS // 4


def _asyncpg(url: str) -> str:
    return make_url(url).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


# -- what fails on a replica --------------------------------------------------------------------


def test_a_write_sent_to_the_replica_raises_a_replica_write_error_naming_it(
    cluster: Cluster, engines: MakeEngine
) -> None:
    router = router_of(cluster, engines)

    with UnitOfWork(router, read_only=True) as unit:
        with pytest.raises(uow.ReplicaWriteError) as caught:
            unit.session.execute(text("INSERT INTO \"user\" (id, name) VALUES ('1', 'ann')"))
        unit.rollback()

    assert caught.value.replica == make_url(cluster.urls[REPLICA]).render_as_string(hide_password=True)
    assert cluster.urls[REPLICA].rsplit("/", 1)[1] in str(caught.value)
    assert caught.value.__cause__.sqlstate == "25006"  # type: ignore[union-attr]
    assert isinstance(caught.value, uow.StateError)
    assert cluster.scalar(PRIMARY, 'SELECT count(*) FROM "user"') == 0


@pytest.fixture
def conflicts_at_once(cluster: Cluster) -> Iterator[None]:
    """The replica cancels a query that holds up its replay at once, instead of after 30 s."""
    cluster.run(REPLICA, "ALTER SYSTEM SET max_standby_streaming_delay = 0")
    cluster.run(REPLICA, "SELECT pg_reload_conf()")
    time.sleep(0.5)  # the startup process rereads its configuration
    try:
        yield
    finally:
        cluster.run(REPLICA, "ALTER SYSTEM RESET max_standby_streaming_delay")
        cluster.run(REPLICA, "SELECT pg_reload_conf()")


@pytest.mark.usefixtures("conflicts_at_once")
def test_a_recovery_conflict_on_the_replica_is_retried_by_run(cluster: Cluster, engines: MakeEngine) -> None:
    cluster.run(
        PRIMARY,
        "INSERT INTO uow_account (id, owner, balance) SELECT g, 'x', 0 FROM generate_series(1, 100) g",
    )
    caught_up(cluster)
    router = router_of(cluster, engines, read_your_writes=None)
    attempts: list[int | None] = []
    conflicts: list[sqlalchemy.exc.DBAPIError] = []

    def count_accounts(unit: UnitOfWork) -> int:
        attempts.append(unit.attempt)
        count = unit.repository(Account).count()  # takes the snapshot that the cleanup below conflicts with
        if unit.attempt == 1:
            cluster.run(PRIMARY, "DELETE FROM uow_account WHERE id <= 50")
            cluster.run(PRIMARY, "VACUUM uow_account")
            try:
                unit.session.execute(
                    text("SELECT pg_sleep(5)")
                )  # cut short when the replica replays the cleanup
            except sqlalchemy.exc.DBAPIError as exc:
                conflicts.append(exc)
                raise
        return count

    unit = UnitOfWork(router, read_only=True, isolation_level="REPEATABLE READ")
    started = time.monotonic()
    count = unit.run(count_accounts, retry=Retry(initial_delay=0.01))

    assert count == 50
    assert attempts == [1, 2]
    assert time.monotonic() - started < 4
    [conflict] = conflicts
    assert conflict.orig.sqlstate == "40001"  # type: ignore[union-attr]
    assert "conflict with recovery" in str(conflict.orig)


def test_a_replica_stopped_mid_run_sends_the_retry_to_the_primary_and_leaks_no_connection(
    cluster: Cluster, engines: MakeEngine
) -> None:
    cluster.run(PRIMARY, "INSERT INTO \"user\" (id, name) VALUES ('1', 'ann')")
    caught_up(cluster)
    router = router_of(cluster, engines, read_your_writes=None)
    impatient = router_of(cluster, engines, read_your_writes=None, cooldown=0)
    served: list[int] = []
    errors: list[BaseException] = []

    def count_users(unit: UnitOfWork) -> int:
        served.append(server_of(cluster, port_of(unit)))
        if unit.attempt == 1:
            script("postgresql-replica", "stop", "replica")
        return unit.repository(User).count()

    try:
        count = UnitOfWork(router, read_only=True).run(count_users, retry=Retry(initial_delay=0.01))
        with UnitOfWork(impatient, read_only=True) as unit:
            try:
                unit.session.execute(text("SELECT 1"))
            except sqlalchemy.exc.OperationalError as exc:
                errors.append(exc)
    finally:
        script("postgresql-replica", "start")
        cluster.checks[REPLICA].dispose()

    assert count == 1
    assert served == [REPLICA, PRIMARY]
    [error] = errors
    assert uow.is_transient(error)  # run() would have tried again, elsewhere
    assert any("refused a connection" in note and "5443" in note for note in error.__notes__)
