"""The replicated clusters the scaling specifications run on, built by the scripts in ``.ci/clusters``.

``UOW_TEST_PG_PRIMARY_URL`` and ``UOW_TEST_PG_REPLICA_URL`` name a PostgreSQL primary and its
streaming replica; ``UOW_TEST_GALERA_URLS`` the nodes of a MariaDB Galera cluster, comma-separated.
An unset cluster is skipped with the reason, unless ``UOW_TEST_REQUIRE`` names it (``pg-replica``,
``galera``), in which case its tests fail. Each run works in a private database of its own, made on
the primary (or the first node) and replicated from there.

Some specifications stop and start a replica or a node: they run the cluster scripts, which need
the clusters those scripts built (and root, as CI has).
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.pool import NullPool

from tests.models import Base
from uow.examples.users import Base as ExampleBase

SCRIPTS = Path(__file__).parent.parent / ".ci" / "clusters"
CLUSTERS = {
    "pg-replica": ("UOW_TEST_PG_PRIMARY_URL", "UOW_TEST_PG_REPLICA_URL"),
    "galera": ("UOW_TEST_GALERA_URLS",),
}
SETUP = {"pg-replica": ".ci/clusters/postgresql-replica start", "galera": ".ci/clusters/galera start"}


def required(name: str) -> bool:
    return name in {part.strip() for part in os.environ.get("UOW_TEST_REQUIRE", "").split(",")}


def unavailable(name: str, message: str) -> None:
    """Skip with `message`, or fail when ``UOW_TEST_REQUIRE`` names the cluster."""
    if required(name):
        pytest.fail(f"{message} (UOW_TEST_REQUIRE names {name})", pytrace=False)
    pytest.skip(message)


def urls_of(name: str) -> list[str]:
    urls = []
    for variable in CLUSTERS[name]:
        value = os.environ.get(variable, "")
        if not value:
            unavailable(name, f"{name}: set {variable} to run these tests (made by `{SETUP[name]}`)")
        urls.extend(part.strip() for part in value.split(",") if part.strip())
    return urls


def script(name: str, *args: str) -> None:
    """Run a cluster script (``postgresql-replica`` or ``galera``) and fail with its output if it fails."""
    result = subprocess.run(
        [str(SCRIPTS / name), *args], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"{name} {' '.join(args)} failed:\n{result.stdout}{result.stderr}", pytrace=False)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not after {timeout:g} s", pytrace=False)
        time.sleep(0.01)


@dataclass
class Cluster:
    """One replicated cluster: a private database's URL on each server, and engines to check through."""

    name: str
    urls: list[str]
    checks: list[Engine]

    def engine(self, index: int, **options: Any) -> Engine:
        """A new engine on server `index` (0: the primary or first node); disposed of by the caller."""
        return create_engine(self.urls[index], **options)

    def scalar(self, index: int, sql: str, **params: Any) -> Any:
        """One value, read on server `index` through a connection of its own, outside any unit."""
        with self.checks[index].connect() as connection:
            return connection.execute(text(sql), params).scalar()

    def run(self, index: int, sql: str, **params: Any) -> None:
        """Run `sql` on server `index` in autocommit mode, outside any unit."""
        with self.checks[index].connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(sql), params)


def _private_database(name: str, urls: list[str]) -> tuple[list[str], Callable[[], None]]:
    """A database of this run's own, made on the first server and replicated to the others."""
    first = make_url(urls[0])
    database = f"{first.database or 'uow_test'}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(first, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {database}")
    except Exception as exc:
        admin.dispose()
        unavailable(name, f"{name}: cannot create a database at {first!r}: {exc} (run `{SETUP[name]}`)")
    private = [make_url(url).set(database=database).render_as_string(hide_password=False) for url in urls]

    def drop() -> None:
        force = " WITH (FORCE)" if first.get_backend_name() == "postgresql" else ""
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {database}{force}")
        admin.dispose()

    return private, drop


def _reachable(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
            return True
        except Exception:
            return False
        finally:
            engine.dispose()

    return probe


def _cluster(name: str) -> Iterator[Cluster]:
    urls, drop = _private_database(name, urls_of(name))
    checks = [create_engine(url, pool_pre_ping=True) for url in urls]
    try:
        for url in urls[1:]:  # the database reaches the other servers by replication
            wait_until(_reachable(url), f"{name}: the private database on {make_url(url)!r}")
        for metadata in (ExampleBase.metadata, Base.metadata):
            metadata.create_all(checks[0])
        cluster = Cluster(name, urls, checks)
        yield cluster
    finally:
        for engine in checks:
            engine.dispose()
        drop()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """The PostgreSQL primary (0) and its streaming replica (1), in a private database."""
    yield from _cluster("pg-replica")


@pytest.fixture(scope="session")
def galera_cluster() -> Iterator[Cluster]:
    """The Galera nodes (0, 1, ...), in a private database."""
    yield from _cluster("galera")


@pytest.fixture
def engines() -> Iterator[Callable[..., Engine]]:
    """Makes engines for one test; at its end none may hold a checked-out connection."""
    made: list[Engine] = []

    def make(url: str, **options: Any) -> Engine:
        engine = create_engine(url, **options)
        made.append(engine)
        return engine

    yield make
    leaked = {str(engine.url): engine.pool.checkedout() for engine in made}  # type: ignore[attr-defined]
    for engine in made:
        engine.dispose()
    assert not any(leaked.values()), f"connections left checked out: {leaked}"
