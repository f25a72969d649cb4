"""Multi-primary: a two-node MariaDB Galera cluster, written through both nodes at once.

Runs on the cluster of ``.ci/clusters/galera``. A transaction that changed a row another node changed
first fails certification with error 1213 (SQLSTATE 40001), at COMMIT or, when the other node's write
set aborts it, at its next statement: uow treats it as transient and `run()` retries it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy
from sqlalchemy import Engine, make_url, text
from sqlalchemy.orm import sessionmaker

import uow
from tests.clusters import Cluster, script
from tests.models import Account
from uow import ReadYourWrites, ReplicaRouter, Retry, UnitOfWork

NODE1, NODE2 = 0, 1
MakeEngine = Callable[..., Engine]
CONFLICTS = ("wsrep_local_cert_failures", "wsrep_local_bf_aborts")


@pytest.fixture
def cluster(galera_cluster: Cluster) -> Iterator[Cluster]:
    """Both nodes, with two accounts at balance 0."""
    galera_cluster.run(NODE1, "DELETE FROM uow_account")
    galera_cluster.run(
        NODE1, "INSERT INTO uow_account (id, owner, balance) VALUES (1, 'ann', 0), (2, 'ben', 0)"
    )
    assert balances(galera_cluster, NODE2) == [0, 0]  # a causal read: node 2 has applied the rows
    yield galera_cluster
    galera_cluster.run(NODE1, "DELETE FROM uow_account")


def balances(cluster: Cluster, node: int = NODE1) -> list[int]:
    with cluster.checks[node].connect() as connection:
        connection.exec_driver_sql("SET SESSION wsrep_sync_wait = 1")
        return [row[0] for row in connection.execute(text("SELECT balance FROM uow_account ORDER BY id"))]


def conflicts_counted(cluster: Cluster) -> int:
    """The certification failures and brute-force aborts the nodes have counted so far."""
    total = 0
    for node in (NODE1, NODE2):
        with cluster.checks[node].connect() as connection:
            for name in CONFLICTS:
                total += int(connection.execute(text(f"SHOW GLOBAL STATUS LIKE '{name}'")).one()[1])
    return total


def deposit(account_id: int, amount: int = 1) -> Callable[[UnitOfWork], int | None]:
    """Work that adds `amount` to an account under a row lock; returns the attempt it succeeded in."""

    def work(unit: UnitOfWork) -> int | None:
        account = unit.session.get(Account, account_id, with_for_update=True)
        assert account is not None
        account.balance += amount
        unit.commit()
        return unit.attempt

    return work


def port_of(unit: UnitOfWork) -> int:
    port: int = unit.session.execute(text("SELECT @@port")).scalar_one()
    return port


# -- certification failures ---------------------------------------------------------------------


def test_a_certification_failure_is_a_transient_error(cluster: Cluster, engines: MakeEngine) -> None:
    node1, node2 = sessionmaker(engines(cluster.urls[NODE1])), sessionmaker(engines(cluster.urls[NODE2]))

    with UnitOfWork(node1) as first, UnitOfWork(node2) as second:
        first.session.get_one(Account, 1).balance += 1
        first.session.flush()
        second.session.get_one(Account, 1).balance += 10
        second.session.flush()  # no lock wait: the nodes lock rows each for themselves
        first.commit()
        with pytest.raises(uow.TransientError) as caught:
            second.commit()

    assert caught.value.orig.args[0] == 1213  # type: ignore[union-attr]
    assert uow.is_transient(caught.value)
    assert balances(cluster) == [1, 0]


def test_run_retries_a_certification_failure_until_it_commits(cluster: Cluster, engines: MakeEngine) -> None:
    node1, node2 = sessionmaker(engines(cluster.urls[NODE1])), sessionmaker(engines(cluster.urls[NODE2]))
    attempts: list[int | None] = []

    def add_ten(unit: UnitOfWork) -> None:
        attempts.append(unit.attempt)
        unit.session.get_one(Account, 1).balance += 10
        unit.session.flush()
        if unit.attempt == 1:  # meanwhile, another node commits a change to the same row
            with UnitOfWork(node1) as other:
                other.session.get_one(Account, 1).balance += 1
                other.commit()
        unit.commit()

    UnitOfWork(node2).run(add_ten, retry=Retry(initial_delay=0.001))

    assert attempts == [1, 2]
    assert balances(cluster) == [11, 0]


def test_threads_incrementing_the_same_rows_through_both_nodes_lose_no_update(
    cluster: Cluster, engines: MakeEngine, record_property: Callable[[str, object], None]
) -> None:
    nodes = [sessionmaker(engines(cluster.urls[node], pool_size=4)) for node in (NODE1, NODE2)]
    threads, increments = 4, 24
    retries: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    before = conflicts_counted(cluster)

    def worker(number: int) -> None:
        factory = nodes[number % 2]
        try:
            for index in range(increments):
                attempt = UnitOfWork(factory).run(
                    deposit(1 + index % 2), retry=Retry(attempts=50, initial_delay=0.001, max_delay=0.02)
                )
                assert attempt is not None
                with lock:
                    retries.append(attempt - 1)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(number,)) for number in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=60)

    assert not any(thread.is_alive() for thread in workers), "a worker hung"
    assert errors == []
    assert balances(cluster) == [threads * increments // 2] * 2
    assert balances(cluster, NODE2) == [threads * increments // 2] * 2
    retried = sum(retries)
    record_property("retries", f"{retried} for {threads * increments} increments")
    # Every retry answered a conflict the cluster counted (a write set that failed certification,
    # or a local transaction it aborted); the cluster may count one conflict twice.
    assert retried <= conflicts_counted(cluster) - before


# -- read-your-writes across nodes --------------------------------------------------------------

PAIRS = 200


def read_balance(router: ReplicaRouter) -> tuple[int, int]:
    with UnitOfWork(router, read_only=True) as unit:
        return unit.repository(Account).get_one(1).balance, port_of(unit)


def test_read_your_writes_across_nodes_leaves_no_stale_read(
    cluster: Cluster, engines: MakeEngine, record_property: Callable[[str, object], None]
) -> None:
    router = ReplicaRouter(engines(cluster.urls[NODE1]), [engines(cluster.urls[NODE2])])
    node2 = make_url(cluster.urls[NODE2]).port
    stale = 0

    for balance in range(1, PAIRS + 1):
        UnitOfWork(router).run(deposit(1))
        read, port = read_balance(router)
        assert port == node2
        stale += read != balance

    assert stale == 0


def test_without_read_your_writes_the_stale_rate_across_nodes_is_recorded(
    cluster: Cluster, engines: MakeEngine, record_property: Callable[[str, object], None]
) -> None:
    router = ReplicaRouter(
        engines(cluster.urls[NODE1]), [engines(cluster.urls[NODE2])], read_your_writes=None
    )
    reads = []

    for balance in range(1, PAIRS + 1):
        UnitOfWork(router).run(deposit(1))
        reads.append((balance, read_balance(router)[0]))

    record_property("stale_reads", f"{sum(read != balance for balance, read in reads)}/{PAIRS}")
    assert all(read <= balance for balance, read in reads)
    assert [read for _, read in reads] == sorted(read for _, read in reads)


def test_a_write_in_a_read_only_unit_on_the_other_node_raises_a_replica_write_error(
    cluster: Cluster, engines: MakeEngine
) -> None:
    router = ReplicaRouter(engines(cluster.urls[NODE1]), [engines(cluster.urls[NODE2])])

    with UnitOfWork(router, read_only=True) as unit:
        with pytest.raises(uow.ReplicaWriteError) as caught:
            unit.session.execute(text("UPDATE uow_account SET balance = 5"))
        unit.rollback()

    assert str(make_url(cluster.urls[NODE2]).port) in caught.value.replica
    assert caught.value.__cause__.args[0] == 1792  # type: ignore[union-attr]
    assert balances(cluster) == [0, 0]


# -- a node stopped -----------------------------------------------------------------------------


def test_a_node_stopped_mid_run_gives_clear_errors_and_leaks_no_connection(
    cluster: Cluster, engines: MakeEngine
) -> None:
    node1_engine, node2_engine = engines(cluster.urls[NODE1]), engines(cluster.urls[NODE2])
    nodes = [sessionmaker(node1_engine), sessionmaker(node2_engine)]
    router = ReplicaRouter(node1_engine, [node2_engine], read_your_writes=ReadYourWrites(timeout=0.5))
    done = [0, 0]
    failures: dict[int, BaseException] = {}

    def worker(node: int) -> None:  # each node its own account: no conflicts, only the stop
        deadline = time.monotonic() + 30
        try:
            while node == NODE2 or done[NODE1] < 60:  # node 2's worker goes on until its node is gone
                UnitOfWork(nodes[node]).run(deposit(1 + node), retry=Retry(attempts=3, initial_delay=0.01))
                done[node] += 1
                if node == NODE1 and done[NODE1] == 10:
                    script("galera", "stop", "2")
                assert time.monotonic() < deadline, "node 2 never failed"
        except BaseException as exc:
            failures[node] = exc

    try:
        workers = [threading.Thread(target=worker, args=(node,)) for node in (NODE1, NODE2)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in workers), "a worker hung"
        served = UnitOfWork(router, read_only=True).run(port_of, retry=Retry(initial_delay=0.01))
        final = balances(cluster)
    finally:
        script("galera", "start-node", "2")
        cluster.checks[NODE2].dispose()

    assert NODE1 not in failures
    assert done[NODE1] == 60  # the other node went on
    failure = failures[NODE2]  # the stopped node's worker got a clear error, and stopped
    assert isinstance(failure, sqlalchemy.exc.OperationalError)
    # The node refuses work as it leaves the cluster (1047, "WSREP has not yet prepared node for
    # application use"), then loses its connections (2006, 2013) and refuses new ones (2003).
    assert failure.orig.args[0] in {1047, 2003, 2006, 2013}  # type: ignore[union-attr]
    assert final[NODE1] == done[NODE1]
    assert final[NODE2] in {done[NODE2], done[NODE2] + 1}  # + 1: a COMMIT cut off, its outcome unknown
    assert served == make_url(cluster.urls[NODE1]).port  # reads went to the node still up
