"""``python -m benchmarks.replicas``: stale reads and the latency read-your-writes adds, on real clusters.

Each round commits a change through a router and then reads it back in a read-only unit, ``--pairs``
times; a read is stale when it returns an older value than the one just committed. Runs on the
clusters of ``.ci/clusters`` (``UOW_TEST_PG_PRIMARY_URL``, ``UOW_TEST_PG_REPLICA_URL``,
``UOW_TEST_GALERA_URLS``) and prints a Markdown table: stale reads per round, and the median and 90th
percentile of the write unit and of the read unit, in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import NullPool

from uow import ReadYourWrites, ReplicaRouter, UnitOfWork


@dataclass
class Result:
    name: str
    stale: list[int] = field(default_factory=list)
    writes: list[float] = field(default_factory=list)
    reads: list[float] = field(default_factory=list)

    def row(self, pairs: int) -> str:
        def ms(values: list[float], q: int) -> str:
            return (
                f"{statistics.quantiles(values, n=10)[q - 1] * 1000:.2f}"
                if q != 5
                else f"{statistics.median(values) * 1000:.2f}"
            )

        stale = ", ".join(str(count) for count in self.stale)
        return (
            f"| {self.name} | {stale} (of {pairs} each) | {ms(self.writes, 5)} / {ms(self.writes, 9)} "
            f"| {ms(self.reads, 5)} / {ms(self.reads, 9)} |"
        )


@contextmanager
def private_database(urls: list[str]) -> Iterator[list[str]]:
    first = make_url(urls[0])
    database = f"uow_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(first, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {database}")
    try:
        yield [make_url(url).set(database=database).render_as_string(hide_password=False) for url in urls]
    finally:
        force = " WITH (FORCE)" if first.get_backend_name() == "postgresql" else ""
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {database}{force}")
        admin.dispose()


def measure(
    name: str, router: Any, rounds: int, pairs: int, reader: Callable[[], Any] | None = None
) -> Result:
    result = Result(name)
    value = 0
    for _ in range(rounds):
        stale = 0
        for _ in range(pairs):
            value += 1
            started = time.perf_counter()
            with UnitOfWork(router) as unit:
                unit.session.execute(text("UPDATE bench SET value = :value"), {"value": value})
                unit.commit()
            result.writes.append(time.perf_counter() - started)
            started = time.perf_counter()
            with UnitOfWork(reader or router, read_only=True) as unit:
                read = unit.session.execute(text("SELECT value FROM bench")).scalar_one()
            result.reads.append(time.perf_counter() - started)
            stale += read != value
        result.stale.append(stale)
    return result


def postgresql(urls: list[str], rounds: int, pairs: int) -> list[Result]:
    primary, replica = (create_engine(url) for url in urls)
    with primary.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE bench (value INT NOT NULL)")
        connection.exec_driver_sql("INSERT INTO bench VALUES (0)")
    time.sleep(0.5)
    results = [
        measure(
            "PostgreSQL, async replica, no read-your-writes",
            ReplicaRouter(primary, [replica], read_your_writes=None),
            rounds,
            pairs,
        ),
        measure(
            "PostgreSQL, async replica, wait for replay (default)",
            ReplicaRouter(primary, [replica]),
            rounds,
            pairs,
        ),
        measure(
            "PostgreSQL, async replica, primary for 1 s after a commit",
            ReplicaRouter(primary, [replica], read_your_writes=ReadYourWrites(primary_window=1.0)),
            rounds,
            pairs,
        ),
        measure("PostgreSQL, primary only (no router)", sessionmaker(primary), rounds, pairs),
    ]
    with synchronous(primary):
        results.append(
            measure(
                "PostgreSQL, synchronous replica (remote_apply), no read-your-writes",
                ReplicaRouter(primary, [replica], read_your_writes=None),
                rounds,
                pairs,
            )
        )
    for engine in (primary, replica):
        engine.dispose()
    return results


@contextmanager
def synchronous(primary: Engine) -> Iterator[None]:
    """Synchronous replication that waits for the replica to apply each commit, for this block."""
    with primary.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("ALTER SYSTEM SET synchronous_standby_names = '*'")
        connection.exec_driver_sql("ALTER SYSTEM SET synchronous_commit = 'remote_apply'")
        connection.exec_driver_sql("SELECT pg_reload_conf()")
    time.sleep(0.5)
    try:
        yield
    finally:
        with primary.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("ALTER SYSTEM RESET synchronous_standby_names")
            connection.exec_driver_sql("ALTER SYSTEM RESET synchronous_commit")
            connection.exec_driver_sql("SELECT pg_reload_conf()")


def galera(urls: list[str], rounds: int, pairs: int) -> list[Result]:
    node1, node2 = (create_engine(url) for url in urls[:2])
    with node1.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE bench (id INT PRIMARY KEY, value INT NOT NULL)")
        connection.exec_driver_sql("INSERT INTO bench VALUES (1, 0)")
    time.sleep(0.5)
    results = [
        measure(
            "Galera, reads on node 2, no read-your-writes",
            ReplicaRouter(node1, [node2], read_your_writes=None),
            rounds,
            pairs,
        ),
        measure(
            "Galera, reads on node 2, wsrep_sync_wait (default)", ReplicaRouter(node1, [node2]), rounds, pairs
        ),
    ]
    for engine in (node1, node2):
        engine.dispose()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replicas", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=200)
    args = parser.parse_args(argv)
    results: list[Result] = []
    pg = [os.environ.get("UOW_TEST_PG_PRIMARY_URL", ""), os.environ.get("UOW_TEST_PG_REPLICA_URL", "")]
    if all(pg):
        with private_database(pg) as urls:
            results += postgresql(urls, args.rounds, args.pairs)
    galera_urls = [url for url in os.environ.get("UOW_TEST_GALERA_URLS", "").split(",") if url]
    if len(galera_urls) >= 2:
        with private_database(galera_urls) as urls:
            results += galera(urls, args.rounds, args.pairs)
    if not results:
        print(
            "set UOW_TEST_PG_PRIMARY_URL and UOW_TEST_PG_REPLICA_URL, or UOW_TEST_GALERA_URLS",
            file=sys.stderr,
        )
        return 2
    print(
        "| setup | stale reads per round | write unit, ms (median / p90) "
        "| read-only unit, ms (median / p90) |"
    )
    print("|---|---|---|---|")
    for result in results:
        print(result.row(args.pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
