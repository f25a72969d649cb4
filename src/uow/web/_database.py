"""A web application's database: its engine made at startup and disposed at shutdown, and its units.

No web framework here: `lifespan(app)` is the `(app) -> async context manager` that Starlette,
FastAPI and Litestar take, and Flask's extension calls `start()` and `dispose()` itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import URL, Engine, create_engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from uow import InvalidArgumentError, StateError, UnitOfWork, configure_sqlite

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker  # noqa: F401 (strings below)

    from uow import AsyncUnitOfWork

__all__ = ["AsyncDatabase", "Database"]


def _not_started(cls: str) -> StateError:
    return StateError(
        f"the {cls} is not started: its engine is made at the application's startup. Pass "
        "lifespan=database.lifespan to the ASGI application (and enter its test client with `with`), "
        "or call database.start()"
    )


EngineT = TypeVar("EngineT")
FactoryT = TypeVar("FactoryT")


class _DatabaseBase(Generic[EngineT, FactoryT]):
    """What both flavours share: the URL, the options, and the state of the engine."""

    def __init__(
        self,
        url: str | URL,
        *,
        engine_options: Mapping[str, Any] | None,
        session_options: Mapping[str, Any] | None,
        configure: Callable[[Any], object] | None,
        unit_options: dict[str, Any],
    ) -> None:
        try:
            self.url: URL = make_url(url)
        except Exception as exc:  # SQLAlchemy's ArgumentError, or a ValueError for a malformed port
            raise InvalidArgumentError(f"cannot use database URL {url!r}: {exc}") from exc
        self.engine_options: dict[str, Any] = dict(engine_options or {})
        self.session_options: dict[str, Any] = dict(session_options or {})
        self.configure: Callable[[Any], object] | None = configure
        self.unit_options: dict[str, Any] = unit_options
        self._engine: EngineT | None = None
        self._sessions: FactoryT | None = None

    @property
    def started(self) -> bool:
        """Whether the engine exists: between `start()` and `dispose()`."""
        return self._engine is not None

    @property
    def engine(self) -> EngineT:
        """The engine. Raises [`StateError`][uow.StateError] before `start()` and after `dispose()`."""
        if self._engine is None:
            raise _not_started(type(self).__name__)
        return self._engine

    @property
    def sessions(self) -> FactoryT:
        """The session factory of the units. Raises [`StateError`][uow.StateError] when not started."""
        if self._sessions is None:
            raise _not_started(type(self).__name__)
        return self._sessions

    def _check_stopped(self) -> None:
        if self._engine is not None:
            raise StateError(f"{self!r} is started already; dispose() it before starting it again")

    def _setup(self, engine: Any) -> None:
        if self.url.get_backend_name() == "sqlite":
            configure_sqlite(engine)
        if self.configure is not None:
            self.configure(engine)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url.render_as_string(hide_password=True)}>"


class Database(_DatabaseBase[Engine, sessionmaker[Session]]):
    """A web application's engine, made at startup and disposed at shutdown, with sync units.

    ```python
    database = Database("postgresql+psycopg://app@db/app", engine_options={"pool_size": 10})
    app = Starlette(routes=..., lifespan=database.lifespan, middleware=[...])
    ```

    Nothing connects before `start()`: creating the object makes no engine. A SQLite engine is set
    up with [`configure_sqlite()`][uow.configure_sqlite]. The database may be started again after
    it was disposed (a test client entered twice), with a new engine.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        engine_options: Mapping[str, Any] | None = None,
        session_options: Mapping[str, Any] | None = None,
        configure: Callable[[Engine], object] | None = None,
        dispatch: Callable[[Any], Any] | None = None,
        isolation_level: str | None = None,
        read_only: bool = False,
    ) -> None:
        """Describe the database; nothing is created or connected yet.

        Args:
            url: The database URL, with a sync driver (`postgresql+psycopg://...`).
            engine_options: Keyword arguments for `create_engine()`.
            session_options: Keyword arguments for the `sessionmaker`.
            configure: Called with the new engine at each start, to add event listeners and the like.
            dispatch: As for [`UnitOfWork`][uow.UnitOfWork], for every request's unit.
            isolation_level: As for [`UnitOfWork`][uow.UnitOfWork].
            read_only: As for [`UnitOfWork`][uow.UnitOfWork].

        Raises:
            InvalidArgumentError: The URL cannot be parsed.
        """
        super().__init__(
            url,
            engine_options=engine_options,
            session_options=session_options,
            configure=configure,
            unit_options={"dispatch": dispatch, "isolation_level": isolation_level, "read_only": read_only},
        )

    def start(self) -> None:
        """Create the engine and the session factory. No connection is made until the first query.

        Raises:
            StateError: The database is started already.
        """
        self._check_stopped()
        engine = create_engine(self.url, **self.engine_options)
        try:
            self._setup(engine)
        except BaseException:
            engine.dispose()
            raise
        self._engine = engine
        self._sessions = sessionmaker(engine, **self.session_options)

    def dispose(self) -> None:
        """Close the engine's pooled connections and forget the engine; nothing happens if not started."""
        engine, self._engine, self._sessions = self._engine, None, None
        if engine is not None:
            engine.dispose()

    def unit(self) -> UnitOfWork:
        """A new unit of work on this database, not yet entered."""
        return UnitOfWork(self.sessions, **self.unit_options)

    @asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Start the database for the life of an ASGI application: `lifespan=database.lifespan`.

        Inside a lifespan of the application's own: `async with database.lifespan(app): ...`.
        """
        self.start()
        try:
            yield
        finally:
            self.dispose()


# The type arguments are strings: `uow.web` does not import SQLAlchemy's asyncio (nor greenlet).
class AsyncDatabase(_DatabaseBase["AsyncEngine", "async_sessionmaker[AsyncSession]"]):
    """The async twin of [`Database`][uow.web.Database], with [`AsyncUnitOfWork`][uow.AsyncUnitOfWork]s.

    ```python
    database = AsyncDatabase("postgresql+asyncpg://app@db/app")
    app = FastAPI(lifespan=database.lifespan)
    ```
    """

    def __init__(
        self,
        url: str | URL,
        *,
        engine_options: Mapping[str, Any] | None = None,
        session_options: Mapping[str, Any] | None = None,
        configure: Callable[[AsyncEngine], object] | None = None,
        expire_on_commit: bool | None = False,
        dispatch: Callable[[Any], Any] | None = None,
        isolation_level: str | None = None,
        read_only: bool = False,
    ) -> None:
        """Describe the database; nothing is created or connected yet.

        Args:
            url: The database URL, with an async driver (`postgresql+asyncpg://...`).
            engine_options: Keyword arguments for `create_async_engine()`.
            session_options: Keyword arguments for the `async_sessionmaker`.
            configure: Called with the new engine at each start.
            expire_on_commit: As for [`AsyncUnitOfWork`][uow.AsyncUnitOfWork].
            dispatch: As for [`AsyncUnitOfWork`][uow.AsyncUnitOfWork]; may be a coroutine function.
            isolation_level: As for [`AsyncUnitOfWork`][uow.AsyncUnitOfWork].
            read_only: As for [`AsyncUnitOfWork`][uow.AsyncUnitOfWork].

        Raises:
            InvalidArgumentError: The URL cannot be parsed.
        """
        super().__init__(
            url,
            engine_options=engine_options,
            session_options=session_options,
            configure=configure,
            unit_options={
                "expire_on_commit": expire_on_commit,
                "dispatch": dispatch,
                "isolation_level": isolation_level,
                "read_only": read_only,
            },
        )

    def start(self) -> None:
        """Create the engine and the session factory. No connection is made until the first query.

        Raises:
            StateError: The database is started already.
        """
        from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

        self._check_stopped()
        engine = create_async_engine(self.url, **self.engine_options)
        try:
            self._setup(engine)
        except BaseException:
            engine.sync_engine.dispose()
            raise
        self._engine = engine
        self._sessions = async_sessionmaker(engine, **self.session_options)

    async def dispose(self) -> None:
        """Close the engine's pooled connections and forget the engine; nothing happens if not started."""
        engine, self._engine, self._sessions = self._engine, None, None
        if engine is not None:
            await engine.dispose()

    def unit(self) -> AsyncUnitOfWork:
        """A new unit of work on this database, not yet entered."""
        from uow import AsyncUnitOfWork

        return AsyncUnitOfWork(self.sessions, **self.unit_options)

    @asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Start the database for the life of an ASGI application: `lifespan=database.lifespan`."""
        self.start()
        try:
            yield
        finally:
            await self.dispose()
