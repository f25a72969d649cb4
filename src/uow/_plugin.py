"""The `uow` pytest plugin: database fixtures whose work is rolled back after every test.

Registered under the `pytest11` entry point, so pytest loads it wherever uow is installed; it does
nothing until a test asks for one of its fixtures (`-p no:uow` turns it off). See
`uow.testing` and the "Testing your application" guide.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine, create_engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from uow._rollback import rolled_back_async_sessions, rolled_back_sessions
from uow._sqlite import configure_sqlite

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

__all__ = [
    "pytest_addoption",
    "uow_async_engine",
    "uow_async_session_factory",
    "uow_engine",
    "uow_session_factory",
]

_ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg", "mysql": "aiomysql", "mariadb": "aiomysql"}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("uow", "uow database fixtures")
    group.addoption(
        "--uow-url",
        dest="uow_url",
        default=None,
        help="database URL for the uow_engine fixture (overrides the uow_url ini option)",
    )
    group.addoption(
        "--uow-async-url",
        dest="uow_async_url",
        default=None,
        help="database URL for the uow_async_engine fixture (default: --uow-url with its async driver)",
    )
    parser.addini("uow_url", "database URL for the uow_engine fixture", default="")
    parser.addini("uow_async_url", "database URL for the uow_async_engine fixture", default="")


def _url(config: pytest.Config, name: str) -> str:
    option = config.getoption(name)
    return str(option) if option else str(config.getini(name) or "")


def _async_url(url: str) -> str:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    driver = _ASYNC_DRIVERS.get(backend)
    if driver is None:
        pytest.fail(f"uow: no async driver known for {backend}; set uow_async_url", pytrace=False)
    return parsed.set(drivername=f"{backend}+{driver}").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def uow_engine(pytestconfig: pytest.Config) -> Iterator[Engine]:
    """The engine of the uow fixtures, made from `--uow-url` or the `uow_url` ini option.

    Override this fixture to use an engine of your own, for example one whose tables you create
    first. A SQLite engine is set up with [`configure_sqlite()`][uow.configure_sqlite].
    """
    url = _url(pytestconfig, "uow_url")
    if not url:
        pytest.fail(
            "uow: no database for uow_engine; pass --uow-url, set uow_url in the pytest ini options, "
            "or override the uow_engine fixture",
            pytrace=False,
        )
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        configure_sqlite(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def uow_session_factory(uow_engine: Engine) -> Iterator[sessionmaker[Session]]:
    """A session factory whose units commit into savepoints of a transaction rolled back after the test.

    Give it to [`UnitOfWork`][uow.UnitOfWork] as you would a `sessionmaker`: commits, rollbacks and reads
    behave as on the database, later units of the same test see what earlier ones committed, and
    nothing is left behind. Made with [`rolled_back_sessions()`][uow.testing.rolled_back_sessions].
    """
    with rolled_back_sessions(uow_engine) as factory:
        yield factory


@pytest.fixture(scope="session")
def uow_async_engine(pytestconfig: pytest.Config) -> Iterator[AsyncEngine]:
    """The async engine of the uow fixtures, from `--uow-async-url`, `uow_async_url`, or the URL
    of `uow_engine` with its async driver (asyncpg, aiomysql, aiosqlite).

    It keeps no pooled connections (`NullPool`), because a connection must not outlive the event
    loop of the test that opened it; an in-memory SQLite database keeps its default pool.
    """
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    url = _url(pytestconfig, "uow_async_url")
    if not url:
        plain = _url(pytestconfig, "uow_url")
        if not plain:
            pytest.fail(
                "uow: no database for uow_async_engine; pass --uow-async-url or --uow-url, set "
                "uow_async_url or uow_url in the pytest ini options, or override the uow_async_engine "
                "fixture",
                pytrace=False,
            )
        url = _async_url(plain)
    parsed = make_url(url)
    in_memory = parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")
    engine = create_async_engine(url) if in_memory else create_async_engine(url, poolclass=NullPool)
    if engine.dialect.name == "sqlite":
        configure_sqlite(engine)
    yield engine
    engine.sync_engine.dispose()


@pytest.fixture
async def uow_async_session_factory(
    uow_async_engine: AsyncEngine,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The async twin of `uow_session_factory`, for [`AsyncUnitOfWork`][uow.AsyncUnitOfWork].

    An async fixture: it needs a plugin that runs them, such as anyio's (mark the test with
    `@pytest.mark.anyio`) or pytest-asyncio in auto mode.
    """
    async with rolled_back_async_sessions(uow_async_engine) as factory:
        yield factory
