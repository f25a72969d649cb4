"""In-memory units: the real units and repositories on an in-memory SQLite database per store."""

from __future__ import annotations

import sqlite3
import uuid
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from sqlalchemy import (
    Column,
    Connection,
    Dialect,
    Engine,
    MetaData,
    Table,
    create_engine,
    event,
    inspect,
    make_url,
    select,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Mapper, Session, sessionmaker
from sqlalchemy.pool import QueuePool
from typing_extensions import override

from uow._async_repository import AsyncRepository
from uow._async_unit import AsyncUnitOfWork
from uow._errors import InvalidArgumentError
from uow._listeners import instrument
from uow._repository import Repository
from uow._sqlite import configure_sqlite
from uow._unit import UnitOfWork

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

__all__ = [
    "AsyncInMemoryRepository",
    "AsyncInMemoryUnitOfWork",
    "InMemoryRepository",
    "InMemoryStore",
    "InMemoryUnitOfWork",
    "UnsupportedSchemaError",
]

T = TypeVar("T")
R = TypeVar("R", bound=Repository[Any])
AR = TypeVar("AR", bound=AsyncRepository[Any])

InMemoryRepository = Repository
"""The repository of an in-memory unit: the real [`Repository`][uow.Repository]."""
AsyncInMemoryRepository = AsyncRepository
"""The repository of an async in-memory unit: the real [`AsyncRepository`][uow.AsyncRepository]."""


class UnsupportedSchemaError(InvalidArgumentError):
    """A table of the schema has a column type or default that SQLite cannot create.

    Attributes:
        table: The name of the table.
        column: The name of the column.
    """

    def __init__(self, table: str, column: str, what: str) -> None:
        self.table = table
        self.column = column
        super().__init__(
            f"the in-memory store cannot create {table}.{column}: its {what} has no SQLite form. "
            "Test code that needs it on a real database with the uow pytest plugin "
            "(uow_session_factory), or give the column a type SQLite has"
        )


_SQLITE = sqlite.dialect()
_templates: weakref.WeakKeyDictionary[MetaData, tuple[tuple[Table, ...], sqlite3.Connection]] = (
    weakref.WeakKeyDictionary()
)


def _check(table: Table) -> None:
    for column in table.columns:
        _check_column(table, column)


def _check_column(table: Table, column: Column[Any]) -> None:
    try:
        column.type.compile(dialect=_SQLITE)
    except sa_exc.SQLAlchemyError as exc:
        raise UnsupportedSchemaError(table.name, column.name, f"type {column.type!r}") from exc
    default = column.server_default
    if default is not None and not hasattr(default, "arg"):
        raise UnsupportedSchemaError(table.name, column.name, "server default")


def _metadata_of(schema: Any) -> MetaData:
    if isinstance(schema, MetaData):
        return schema
    metadata = getattr(schema, "metadata", None)
    if isinstance(metadata, MetaData):
        return metadata
    raise InvalidArgumentError(
        f"an InMemoryStore takes MetaData or declarative bases (classes with .metadata), got {schema!r}"
    )


def _template(metadata: MetaData) -> sqlite3.Connection:
    """An in-memory database holding `metadata`'s tables, built once and copied into every store."""
    tables = tuple(metadata.sorted_tables)
    cached = _templates.get(metadata)
    if cached is not None and cached[0] == tables:
        return cached[1]
    for table in tables:
        _check(table)
    connection = sqlite3.connect(":memory:", check_same_thread=False)
    engine = create_engine("sqlite://", creator=lambda: connection)
    metadata.create_all(engine)
    _templates[metadata] = (tables, connection)
    return connection


def _foreign_keys_on(dbapi_connection: Any, connection_record: object) -> None:
    dbapi_connection.execute("PRAGMA foreign_keys = ON")


_URL = make_url("sqlite://")
_dialects: list[Dialect] = []


def _dialect() -> Dialect:
    """SQLite's dialect, initialized by one first connection for every store of the process."""
    if not _dialects:
        engine = create_engine(_URL)
        with engine.connect():
            pass
        _dialects.append(engine.dialect)
        engine.dispose()
    return _dialects[0]


def _begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN")  # the driver's own transaction handling is off


class InMemoryStore:
    """A database in memory for fast tests: the units made on it are the real units, on SQLite.

    ```python
    store = InMemoryStore(Base)
    with InMemoryUnitOfWork(store) as unit:
        unit.repository(User).add(User(id="7", name="hanmeimei"))
        unit.commit()
    assert [user.name for user in store.all(User)] == ["hanmeimei"]
    ```

    Every unit given the same store works on the same in-memory SQLite database, so what one
    committed the others see, and SQL decides what a filter matches, what a relationship loads
    and cascades, and which constraint fails. Foreign keys are enforced. The schema is given as
    declarative bases or `MetaData`; it is built once per process and copied into each new store,
    which costs a fraction of a millisecond. A model used with `insert()`, `all()` or
    `unit.repository()` whose tables were not given is created then (before the block writes).

    Raises:
        UnsupportedSchemaError: A column's type or server default has no SQLite form.
        InvalidArgumentError: A schema is neither a `MetaData` nor has one.
    """

    def __init__(self, *schemas: Any) -> None:
        self._name = f"file:uow-store-{uuid.uuid4().hex}?mode=memory&cache=shared"
        self._keeper = sqlite3.connect(self._name, uri=True, check_same_thread=False)
        self._tables: set[Table] = set()
        metadatas = list(dict.fromkeys(_metadata_of(schema) for schema in schemas))
        if metadatas:
            _template(metadatas[0]).backup(self._keeper)
            self._tables.update(metadatas[0].tables.values())
        # An engine of the process's one SQLite dialect, initialized once, over a pool of its own.
        pool = QueuePool(cast("Any", self._connect), pool_size=5, max_overflow=20)
        self._engine = Engine(pool, _dialect(), _URL)
        event.listen(self._engine, "begin", _begin)
        for metadata in metadatas[1:]:
            self._create(metadata)
        instrument(_StoreSession)
        self.sessions: sessionmaker[Session] = sessionmaker(self._engine, class_=_StoreSession)
        """The factory of the sync units' sessions."""
        self._async_engine: AsyncEngine | None = None
        self._async_sessions: async_sessionmaker[AsyncSession] | None = None

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self._name, uri=True, check_same_thread=False, isolation_level=None)
        connection.execute("PRAGMA foreign_keys = ON")
        return connection

    @property
    def engine(self) -> Engine:
        """The engine of the store's database, for queries of your own."""
        return self._engine

    @property
    def url(self) -> str:
        """A URL of the store's database, for engines of your own in this process."""
        return f"sqlite:///{self._name}&uri=true"

    @property
    def async_engine(self) -> AsyncEngine:
        """The async engine of the store's database (on `aiosqlite`, made on first use)."""
        self.async_sessions  # noqa: B018  # makes the engine
        assert self._async_engine is not None
        return self._async_engine

    @property
    def async_sessions(self) -> async_sessionmaker[AsyncSession]:
        """The factory of the async units' sessions (on `aiosqlite`, made on first use)."""
        if self._async_sessions is None:
            from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
            from sqlalchemy.pool import NullPool

            # No pool: each aiosqlite connection (a thread) is closed as its session ends.
            engine = create_async_engine(f"sqlite+aiosqlite:///{self._name}&uri=true", poolclass=NullPool)
            configure_sqlite(engine)
            event.listen(engine.sync_engine, "connect", _foreign_keys_on)
            self._async_engine = engine
            self._async_sessions = async_sessionmaker(engine)
        return self._async_sessions

    def ensure(self, model: type[Any]) -> None:
        """Create the tables of `model`'s schema, if the store does not have them yet."""
        mapper = inspect(model, raiseerr=False)
        if not isinstance(mapper, Mapper):
            return
        for table in mapper.tables:
            if table not in self._tables and isinstance(table, Table):
                self._create(table.metadata)

    def _create(self, metadata: MetaData) -> None:
        for table in metadata.sorted_tables:
            _check(table)
        metadata.create_all(self._engine)
        self._tables.update(metadata.tables.values())

    def insert(self, *objects: object) -> None:
        """Commit `objects` (mapped instances) as a unit would, outside any unit under test.

        Defaults and generated keys are filled in; the objects stay readable afterwards.
        """
        for obj in objects:
            self.ensure(type(obj))
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            session.add_all(objects)

    def all(self, model: type[T]) -> list[T]:
        """The committed objects of `model`, in primary-key order, read in a session of their own."""
        self.ensure(model)
        mapper = inspect(model)
        with Session(self._engine) as session:
            return list(session.scalars(select(model).order_by(*mapper.primary_key)))

    def clear(self) -> None:
        """Delete every row of every table the store has."""
        with self._engine.begin() as connection:
            for table in reversed(_sorted(self._tables)):  # children before their parents
                connection.execute(table.delete())

    def close(self) -> None:
        """Dispose of the engines; the database is gone once the store is closed."""
        self._engine.dispose()
        if self._async_engine is not None:
            self._async_engine.sync_engine.dispose()
        self._keeper.close()

    def __del__(self) -> None:
        keeper = getattr(self, "_keeper", None)
        if keeper is not None:
            keeper.close()


class _StoreSession(Session):
    """The sessions of every store: one class, so the unit's listeners are registered once."""


def _sorted(tables: set[Table]) -> list[Table]:
    from sqlalchemy.sql.ddl import sort_tables

    return list(sort_tables(tables))


def _store(store: InMemoryStore | None) -> InMemoryStore:
    if store is None:
        return InMemoryStore()
    if not isinstance(store, InMemoryStore):
        raise InvalidArgumentError(f"an in-memory unit takes an InMemoryStore, got {store!r}")
    return store


class InMemoryUnitOfWork(UnitOfWork):
    """A [`UnitOfWork`][uow.UnitOfWork] on an [`InMemoryStore`][uow.testing.InMemoryStore].

    It is the real unit, with every rule, option and error, on the store's SQLite database; only
    the factory is the store's. A unit made without a store gets a new one, in `unit.store`.
    """

    __slots__ = ("store",)

    def __init__(self, store: InMemoryStore | None = None, **options: Any) -> None:
        self.store: InMemoryStore = _store(store)
        super().__init__(self.store.sessions, **options)

    @overload
    def repository(self, target: type[R]) -> R: ...
    @overload
    def repository(self, target: type[T]) -> Repository[T]: ...
    @override
    def repository(self, target: type[Any]) -> Repository[Any]:
        """As the real unit's; the store first creates the tables of the model if it has none."""
        self.store.ensure(_model_of(target))
        return super().repository(target)


class AsyncInMemoryUnitOfWork(AsyncUnitOfWork):
    """An [`AsyncUnitOfWork`][uow.AsyncUnitOfWork] on an [`InMemoryStore`][uow.testing.InMemoryStore]."""

    __slots__ = ("store",)

    def __init__(self, store: InMemoryStore | None = None, **options: Any) -> None:
        self.store: InMemoryStore = _store(store)
        super().__init__(self.store.async_sessions, **options)

    @overload
    def repository(self, target: type[AR]) -> AR: ...
    @overload
    def repository(self, target: type[T]) -> AsyncRepository[T]: ...
    @override
    def repository(self, target: type[Any]) -> AsyncRepository[Any]:
        """As the real unit's; the store first creates the tables of the model if it has none."""
        self.store.ensure(_model_of(target))
        return super().repository(target)


def _model_of(target: type[Any]) -> type[Any]:
    if isinstance(target, type) and issubclass(target, Repository | AsyncRepository):
        model: Callable[..., Any] | None = getattr(target, "_default_model", None)
        return model if isinstance(model, type) else target
    return target
