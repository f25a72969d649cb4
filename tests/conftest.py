"""Backends and flavours: every behavioural specification runs on each pairing of them.

Backends are SQLite (in memory and in a file), PostgreSQL (psycopg 3 / asyncpg) and MariaDB
(PyMySQL / aiomysql). The server URLs come from ``UOW_TEST_POSTGRESQL_URL`` and
``UOW_TEST_MARIADB_URL``; an unset server is skipped with the reason, unless ``UOW_TEST_REQUIRE`` names
it, in which case its tests fail. ``UOW_TEST_FORBID_SKIPS=1`` turns any skipped test into a failed run.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, delete, make_url, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool, QueuePool

from tests.drivers import Flavour
from tests.models import Account, Base, Doctor, Tag, Transfer, User
from uow import configure_sqlite
from uow.examples.users import Base as ExampleBase
from uow.testing import InMemoryStore

pytest_plugins = [
    "pytester",  # tests/testing/test_plugin.py runs example suites through it
    "tests.clusters",  # the replicated clusters of tests/test_replicas.py and tests/test_galera.py
]

BACKENDS = ["sqlite-memory", "sqlite-file", "postgresql", "mariadb"]
SERVERS = {"postgresql": "UOW_TEST_POSTGRESQL_URL", "mariadb": "UOW_TEST_MARIADB_URL"}
ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg", "mysql": "aiomysql"}


def required_backends() -> set[str]:
    return {name.strip() for name in os.environ.get("UOW_TEST_REQUIRE", "").split(",") if name.strip()}


@dataclass
class Backend:
    """One database: its URLs, and a separate engine to check what was really committed."""

    name: str
    url: str
    async_url: str
    check: Engine
    engine_options: dict[str, Any] = field(default_factory=dict)
    async_engine_options: dict[str, Any] = field(default_factory=dict)
    engines: dict[str, Engine | AsyncEngine] = field(default_factory=dict)
    """The flavours' engines, made on first use and disposed of with the backend."""

    @property
    def kind(self) -> str:
        """``sqlite``, ``postgresql`` or ``mariadb``."""
        return "sqlite" if self.name.startswith("sqlite") or self.name == "memory" else self.name

    def users(self) -> list[tuple[str, str | None]]:
        """The committed rows of the reference ``user`` table, read through a separate connection."""
        with self.check.connect() as connection:
            rows = connection.execute(select(User.id, User.name).order_by(User.id))
            return [(row.id, row.name) for row in rows]

    def accounts(self) -> list[tuple[int, str, int]]:
        with self.check.connect() as connection:
            rows = connection.execute(select(Account.id, Account.owner, Account.balance).order_by(Account.id))
            return [(row.id, row.owner, row.balance) for row in rows]

    def insert(self, *rows: Any) -> None:
        """Commit ``rows`` (mapped objects) through the checking engine, outside any unit."""
        from sqlalchemy.orm import Session

        with Session(self.check) as session, session.begin():
            session.add_all(rows)

    def clear(self) -> None:
        later = [Base.metadata.tables[name] for name in ("uow_counter", "uow_item")]
        with self.check.begin() as connection:
            for table in (Tag, Account, User, Transfer, Doctor, *later):
                connection.execute(delete(table))

    def sync_engine(self, **options: Any) -> Engine:
        return create_engine(self.url, **{**self.engine_options, **options})

    def async_engine(self, **options: Any) -> AsyncEngine:
        return create_async_engine(self.async_url, **{**self.async_engine_options, **options})


def _async_url(url: str) -> str:
    parsed = make_url(url)
    return parsed.set(
        drivername=f"{parsed.get_backend_name()}+{ASYNC_DRIVERS[parsed.get_backend_name()]}"
    ).render_as_string(hide_password=False)


def _private_database(url: str, name: str) -> tuple[str, Callable[[], None]]:
    """A database of this run's own on the server at ``url``: concurrent runs never collide.

    Returns its URL and a function that drops it.
    """
    server = make_url(url)
    database = f"{server.database or 'uow_test'}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {database}")

    def drop() -> None:
        force = " WITH (FORCE)" if name == "postgresql" else ""
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {database}{force}")

    return server.set(database=database).render_as_string(hide_password=False), drop


def _database_is_missing(url: str, name: str) -> bool:
    """Whether the server at ``url`` answers, from its maintenance database, that it lacks the URL's.

    Asked of the server's catalog, since psycopg gives no SQLSTATE for a failed connection.
    """
    server = make_url(url)
    maintenance, catalog = (
        ("postgres", "SELECT count(*) FROM pg_database WHERE datname = :name")
        if name == "postgresql"
        else ("information_schema", "SELECT count(*) FROM schemata WHERE schema_name = :name")
    )
    engine = create_engine(server.set(database=maintenance), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return connection.scalar(text(catalog), {"name": server.database}) == 0
    except Exception:  # the server is unreachable after all
        return False
    finally:
        engine.dispose()


def _missing_database_message(name: str, url: str) -> str:
    server = make_url(url)
    database, host, user = server.database, server.host, server.username
    port = server.port or (5432 if name == "postgresql" else 3306)
    command = (
        f"createdb -h {host} -p {port} -U {user} {database}"
        if name == "postgresql"
        else f"mariadb -h {host} -P {port} -u {user} -e 'CREATE DATABASE {database}'"
    )
    return (
        f"{name}: database {database!r} does not exist on the server at {host}:{port}; "
        f"create it with {command} (each run connects to it to make a private database of its own)"
    )


def _make_backend(name: str, workdir: Path) -> tuple[Backend, list[Any]]:
    keep: list[Any] = []
    if name == "memory":  # the in-memory unit's store: the real unit on in-memory SQLite
        store = InMemoryStore(ExampleBase, Base)
        backend = Backend(
            name, store.url, store.url.replace("sqlite://", "sqlite+aiosqlite://"), store.engine
        )
        backend.engines = {"sync": store.engine, "async": store.async_engine}
        return backend, [store.close]
    if name == "sqlite-memory":
        database = f"file:uow-{uuid.uuid4().hex}?mode=memory&cache=shared&uri=true"
        url = f"sqlite:///{database}"
        backend = Backend(
            name,
            url,
            f"sqlite+aiosqlite:///{database}",
            create_engine(url, poolclass=QueuePool),
            {"poolclass": QueuePool},
            {"poolclass": AsyncAdaptedQueuePool},
        )
        # An in-memory database lives while one connection to it is open.
        keep.append(backend.check.connect())
    elif name == "sqlite-file":
        url = f"sqlite:///{workdir / 'uow-test.db'}"
        backend = Backend(name, url, _async_url(url), create_engine(url))
    else:
        url = os.environ.get(SERVERS[name], "")
        if not url:
            message = f"{name}: set {SERVERS[name]} to run the tests on it"
            if name in required_backends():
                pytest.fail(f"{message} (UOW_TEST_REQUIRE names it)", pytrace=False)
            pytest.skip(message)
        try:
            url, drop = _private_database(url, name)
        except Exception as exc:
            message = f"{name} at {make_url(url)!r} is unreachable: {exc}"
            if _database_is_missing(url, name):
                message = _missing_database_message(name, url)
            if name in required_backends():
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        backend = Backend(name, url, _async_url(url), create_engine(url))
        keep.append(drop)
    for metadata in (ExampleBase.metadata, Base.metadata):
        metadata.drop_all(backend.check)
        metadata.create_all(backend.check)
    return backend, keep


def release_backend(backend: Backend, keep: list[Any], runner: asyncio.Runner) -> None:
    """Dispose of the backend's engines, then of what keeps its database alive (or drop it)."""
    for engine in backend.engines.values():
        if isinstance(engine, AsyncEngine):
            runner.run(engine.dispose())
        else:
            engine.dispose()
    backend.check.dispose()
    backend.engines.clear()
    for resource in keep:
        if callable(resource):
            resource()  # drops the private server database
        else:
            resource.close()


Backends = Callable[[str], Backend]


@pytest.fixture(scope="session")
def backends(tmp_path_factory: pytest.TempPathFactory, runner: asyncio.Runner) -> Iterator[Backends]:
    """Every backend of the run, each made once on first use and released at the end of the run."""
    made: dict[str, tuple[Backend, list[Any]]] = {}

    def get(name: str) -> Backend:
        if name not in made:
            made[name] = _make_backend(name, tmp_path_factory.mktemp(name))
        return made[name][0]

    yield get
    for backend, keep in made.values():
        release_backend(backend, keep, runner)


@pytest.fixture(scope="session", params=BACKENDS)
def backend_setup(request: pytest.FixtureRequest, backends: Backends) -> Backend:
    return backends(request.param)


@pytest.fixture
def backend(backend_setup: Backend) -> Iterator[Backend]:
    """A backend with empty tables; whatever the test committed is deleted afterwards."""
    backend_setup.clear()
    yield backend_setup
    backend_setup.clear()


@pytest.fixture(scope="session")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as loop_runner:
        yield loop_runner


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest, backend: Backend, runner: asyncio.Runner) -> Iterator[Flavour]:
    """Units of one flavour on the test's backend; no connection may stay checked out after the test."""
    name: str = request.param
    engine = backend.engines.get(name)
    if engine is None:
        engine = make_engine(backend, name)
    made = Flavour(name, engine, runner if name == "async" else None)
    yield made
    assert made.checked_out() == 0, "a connection was left checked out"


def make_engine(backend: Backend, flavour: str) -> Engine | AsyncEngine:
    """The backend's engine for units of one flavour, made on first use and kept with the backend."""
    engine = backend.engines.get(flavour)
    if engine is None:
        engine = backend.async_engine() if flavour == "async" else backend.sync_engine()
        if backend.kind == "sqlite":
            configure_sqlite(engine)  # as the docs tell users to: atomic savepoints
        backend.engines[flavour] = engine
    return engine


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("UOW_TEST_FORBID_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter is not None else 0
    if skipped:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter is not None:
            reporter.write_line(f"FAILED: {skipped} test(s) skipped while UOW_TEST_FORBID_SKIPS=1", red=True)


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)
