"""Session factories whose every commit lands in a savepoint of one outer transaction, rolled back at the end.

This is SQLAlchemy's recipe for "joining a session into an external transaction": the sessions are
bound to one connection that is already inside a transaction, with
`join_transaction_mode="create_savepoint"`, so that `session.commit()` releases a savepoint
instead of committing, and rolling the outer transaction back undoes everything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.orm import Session, sessionmaker

from uow._errors import InvalidArgumentError
from uow._sqlite import configure_sqlite

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

__all__ = ["SAVEPOINT_DEPTH", "rolled_back_async_sessions", "rolled_back_sessions"]

SAVEPOINT_DEPTH = "uow.savepoint_depth"
"""Key in `connection.info`: how many savepoints are open inside the outer transaction.

It drops as soon as a savepoint is being released, before the `RELEASE SAVEPOINT` is sent; that
statement releases the savepoint of a unit's transaction (what its commit does) when it is 0.
[`fail_commit()`][uow.testing.fail_commit] reads it.
"""
_DEPTH = SAVEPOINT_DEPTH
_ISOLATION = "uow.isolation_level"


def _prepare(connection: Connection) -> None:
    """Make `connection` ready for savepoints inside its outer transaction, and count them.

    On SQLite, the driver's own transaction handling is turned off for this connection too (the
    engine may have handed out a connection made before [`configure_sqlite()`][uow.configure_sqlite] was
    called).
    """
    if connection.dialect.name == "sqlite":
        dbapi_connection: Any = connection.connection.dbapi_connection
        connection.info[_ISOLATION] = dbapi_connection.isolation_level
        dbapi_connection.isolation_level = None
    connection.info[_DEPTH] = 0

    def opened(conn: Connection, name: str | None) -> None:
        conn.info[_DEPTH] += 1

    def closed(conn: Connection, name: str, context: object) -> None:
        conn.info[_DEPTH] -= 1

    event.listen(connection, "savepoint", opened)
    event.listen(connection, "release_savepoint", closed)
    event.listen(connection, "rollback_savepoint", closed)


def _restore(connection: Connection) -> None:
    connection.info.pop(_DEPTH, None)
    isolation = connection.info.pop(_ISOLATION, None)
    if connection.dialect.name == "sqlite" and not connection.invalidated:
        dbapi_connection: Any = connection.connection.dbapi_connection
        dbapi_connection.isolation_level = isolation


@contextmanager
def rolled_back_sessions(engine: Engine, **options: Any) -> Iterator[sessionmaker[Session]]:
    """A session factory whose sessions all work inside one transaction, rolled back on exit.

    ```python
    with rolled_back_sessions(engine) as Session:
        with UnitOfWork(Session) as unit:
            unit.repository(User).add(User(id="7", name="hanmeimei"))
            unit.commit()            # releases a savepoint: visible to later units of Session
    # rolled back: nothing reached the database
    ```

    One connection is checked out and a transaction begun on it. Every session of the factory joins
    that transaction with `join_transaction_mode="create_savepoint"`: its commit releases a
    savepoint, its rollback rolls back to one, so units behave as on a real database, and units of the
    same factory see each other's committed work. On exit the outer transaction is rolled back and
    the connection returned, even if the code inside failed or its connection was lost. Sessions must
    be used one at a time (they share the connection). A SQLite engine is set up with
    [`configure_sqlite()`][uow.configure_sqlite], which this needs.

    Args:
        engine: The engine to check a connection out of.
        **options: More arguments for the `sessionmaker`.

    Raises:
        InvalidArgumentError: `engine` is not an `Engine`.
    """
    if not isinstance(engine, Engine):
        raise InvalidArgumentError(f"rolled_back_sessions() needs an Engine, got {engine!r}")
    if engine.dialect.name == "sqlite":
        configure_sqlite(engine)
    with engine.connect() as connection:
        _prepare(connection)
        transaction = connection.begin()
        try:
            yield sessionmaker(bind=connection, join_transaction_mode="create_savepoint", **options)
        finally:
            try:
                if transaction.is_active:
                    transaction.rollback()
            finally:
                _restore(connection)


@asynccontextmanager
async def rolled_back_async_sessions(
    engine: AsyncEngine, **options: Any
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The async twin of `rolled_back_sessions()`, for an `AsyncEngine`.

    ```python
    async with rolled_back_async_sessions(async_engine) as Session:
        async with AsyncUnitOfWork(Session) as unit:
            ...
    ```

    Enter and leave it in the same event loop as the units that use it.

    Raises:
        InvalidArgumentError: `engine` is not an `AsyncEngine`.
    """
    from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

    if not isinstance(engine, AsyncEngine):
        raise InvalidArgumentError(f"rolled_back_async_sessions() needs an AsyncEngine, got {engine!r}")
    if engine.dialect.name == "sqlite":
        configure_sqlite(engine)
    async with engine.connect() as connection:
        await connection.run_sync(_prepare)
        transaction = await connection.begin()
        try:
            yield async_sessionmaker(bind=connection, join_transaction_mode="create_savepoint", **options)
        finally:
            try:
                if transaction.is_active:
                    await transaction.rollback()
            finally:
                await connection.run_sync(_restore)
