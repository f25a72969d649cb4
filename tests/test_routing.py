"""Replica routing without a replicated server: the router's arguments, its policies, and its choices.

Two SQLite files stand in for a primary and a "replica" (nothing copies one to the other), so that
which one a unit used shows in what it reads. What needs real replication is in
``tests/test_replicas.py`` (PostgreSQL) and ``tests/test_galera.py`` (MariaDB Galera).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import sessionmaker

import uow
from uow import RandomReplica, ReadYourWrites, ReplicaRouter, RoundRobin, UnitOfWork


@pytest.fixture
def servers(workdir: Path) -> Iterator[tuple[Engine, Engine]]:
    """A "primary" and a "replica": SQLite files whose `server` table says which one they are."""
    engines = []
    for name in ("primary", "replica"):
        engine = create_engine(f"sqlite:///{workdir / name}.db")
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE server (name TEXT)")
            connection.exec_driver_sql(f"INSERT INTO server VALUES ('{name}')")
        engines.append(engine)
    yield engines[0], engines[1]
    for engine in engines:
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        engine.dispose()


def served_by(unit: UnitOfWork) -> str:
    name: str = unit.session.execute(text("SELECT name FROM server")).scalar_one()
    return name


def test_read_only_units_go_to_the_replica_and_the_others_to_the_primary(
    servers: tuple[Engine, Engine],
) -> None:
    primary, replica = servers
    router = ReplicaRouter(primary, [replica])

    with UnitOfWork(router, read_only=True) as unit:
        reader = served_by(unit)
    with UnitOfWork(router) as unit:
        writer = served_by(unit)

    assert (reader, writer) == ("replica", "primary")


def test_a_router_without_replicas_sends_every_unit_to_the_primary(servers: tuple[Engine, Engine]) -> None:
    router = ReplicaRouter(servers[0], [])

    with UnitOfWork(router, read_only=True) as unit:
        assert served_by(unit) == "primary"


def test_a_unit_keeps_the_server_it_was_given_for_its_whole_block(servers: tuple[Engine, Engine]) -> None:
    primary, replica = servers
    router = ReplicaRouter(primary, [replica, primary])  # turns: the replica, then the primary

    with UnitOfWork(router, read_only=True) as unit:
        first = served_by(unit)
        unit.commit()
        second = served_by(unit)

    assert first == second == "replica"


def test_where_no_replica_can_be_asked_reads_after_a_commit_go_to_the_primary_until_the_timeout(
    servers: tuple[Engine, Engine],
) -> None:
    primary, replica = servers
    router = ReplicaRouter(primary, [replica], read_your_writes=ReadYourWrites(timeout=0.2))

    with UnitOfWork(router) as unit:
        unit.session.execute(text("UPDATE server SET name = name"))
        unit.commit()
    with UnitOfWork(router, read_only=True) as unit:
        soon = served_by(unit)
    time.sleep(0.2)
    with UnitOfWork(router, read_only=True) as unit:
        later = served_by(unit)

    assert (soon, later) == ("primary", "replica")


def test_a_read_only_unit_that_commits_no_write_leaves_read_your_writes_alone(
    servers: tuple[Engine, Engine],
) -> None:
    primary, replica = servers
    router = ReplicaRouter(primary, [replica], read_your_writes=ReadYourWrites(primary_window=60))

    with UnitOfWork(router, read_only=True) as unit:
        served_by(unit)
        unit.commit()
    with UnitOfWork(router, read_only=True) as unit:
        assert served_by(unit) == "replica"


def test_the_router_takes_sessionmakers_and_keeps_the_primarys_options(
    servers: tuple[Engine, Engine],
) -> None:
    primary, replica = servers
    router = ReplicaRouter(sessionmaker(primary, expire_on_commit=False), [sessionmaker(replica)])

    session = router()

    assert session.expire_on_commit is False
    assert router.primary is primary
    assert router.replicas == (replica,)
    session.close()


# -- policies -----------------------------------------------------------------------------------


def test_round_robin_takes_each_replica_in_turn() -> None:
    policy = RoundRobin()

    assert [policy("abc") for _ in range(5)] == ["a", "b", "c", "a", "b"]


def test_random_replica_draws_with_its_rng() -> None:
    draws = iter([0.0, 0.5, 0.99, 0.34])
    policy = RandomReplica(rng=lambda: next(draws))

    assert [policy("abc") for _ in range(4)] == ["a", "b", "c", "b"]


# -- arguments ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"policy": "round-robin"}, "policy must be a callable"),
        ({"read_your_writes": True}, "read_your_writes must be a ReadYourWrites"),
        ({"cooldown": -1}, "cooldown must be a non-negative number"),
    ],
)
def test_a_router_refuses_invalid_options(servers: tuple[Engine, Engine], options: Any, message: str) -> None:
    with pytest.raises(uow.InvalidArgumentError, match=message):
        ReplicaRouter(servers[0], [servers[1]], **options)


@pytest.mark.parametrize("role", ["primary", "replica"])
def test_a_router_needs_engines_or_sessionmakers_bound_to_one(
    servers: tuple[Engine, Engine], role: str
) -> None:
    unbound = sessionmaker()
    primary, replicas = (unbound, [servers[1]]) if role == "primary" else (servers[0], [unbound])

    with pytest.raises(uow.InvalidArgumentError, match=f"the {role} must be an Engine"):
        ReplicaRouter(primary, replicas)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [({"timeout": -0.1}, "timeout"), ({"primary_window": "1s"}, "primary_window")],
)
def test_read_your_writes_refuses_what_is_not_a_number_of_seconds(options: Any, message: str) -> None:
    with pytest.raises(uow.InvalidArgumentError, match=message):
        ReadYourWrites(**options)
