"""SQLite engines whose transactions really are atomic, savepoints included."""

from __future__ import annotations

import contextlib
import weakref
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.orm import Session

from uow._errors import InvalidArgumentError, StateError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["configure_sqlite"]

_configured: weakref.WeakSet[Any] = weakref.WeakSet()


def configure_sqlite(engine: Engine | AsyncEngine) -> None:
    """Set a SQLite engine up so that transactions, savepoints and DDL are atomic.

    By default Python's `sqlite3` driver (and `aiosqlite` on top of it) manages transactions
    itself and sends no `BEGIN` before a SELECT, a DDL statement or a `SAVEPOINT`. A savepoint
    opened first then lives outside any transaction, and rolling back the unit does not undo work
    that the savepoint released. This turns the driver's own handling off and has SQLAlchemy send
    `BEGIN` at the start of every transaction, as SQLAlchemy's SQLite documentation recommends.

    Call it right after creating the engine, before its first connection; calling it again does
    nothing. `UnitOfWork.savepoint()` refuses to run on a SQLite engine that was not set up this
    way (or with Python 3.12's `connect_args={"autocommit": False}`). With transactions begun for
    reads too, concurrent writers wait for readers: give file databases a `timeout`.

    Raises:
        InvalidArgumentError: `engine` is not a SQLite engine.
    """
    sync_engine: Engine = engine if isinstance(engine, Engine) else engine.sync_engine
    if sync_engine.dialect.name != "sqlite":
        raise InvalidArgumentError(
            f"configure_sqlite() takes a SQLite engine, got one for {sync_engine.dialect.name}"
        )
    if sync_engine.dialect in _configured:
        return
    event.listen(sync_engine, "connect", _driver_leaves_transactions_alone)
    event.listen(sync_engine, "begin", _begin)
    event.listen(sync_engine, "invalidate", _roll_back_before_closing)
    _configured.add(sync_engine.dialect)


def _driver_leaves_transactions_alone(dbapi_connection: Any, connection_record: object) -> None:
    dbapi_connection.isolation_level = None


def _roll_back_before_closing(dbapi_connection: Any, record: object, exception: object) -> None:
    # A connection invalidated with a statement still open (SQLAlchemy 2.0's aiosqlite cursor stays
    # open after a failed statement) would keep its transaction's locks until garbage collection:
    # roll back first. The connection is being discarded, so a failure here changes nothing.
    with contextlib.suppress(Exception):
        dbapi_connection.rollback()


def _begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN")


def check_savepoints(session: Session) -> None:
    """Refuse to open a savepoint where SQLite would silently lose the transaction's atomicity.

    A savepoint is atomic when the driver's connection is really inside a transaction as it is set:
    on an engine set up with [`configure_sqlite()`][uow.configure_sqlite] or SQLAlchemy's own recipe
    (`BEGIN` sent as SQLAlchemy begins), with Python 3.12's `autocommit=False`, or after the
    driver began a transaction for an earlier write. Otherwise `SAVEPOINT` would start a transaction
    of its own that `RELEASE` commits.
    """
    bind = session.get_bind()
    if bind.dialect.name != "sqlite":
        return
    driver_connection = session.connection().connection.driver_connection
    if getattr(driver_connection, "in_transaction", True):
        return
    raise StateError(
        "a savepoint here would not be atomic: the sqlite3 driver has not begun a transaction yet "
        "(its default transaction handling sends no BEGIN before SAVEPOINT), so releasing the "
        "savepoint would commit its work. Call uow.configure_sqlite(engine) right after "
        "create_engine(), or apply SQLAlchemy's SQLite transaction recipe"
    )
