"""Classification of database errors by SQLSTATE or driver error code, never by message text."""

from __future__ import annotations

import sys

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import exc as orm_exc

from uow._errors import (
    CommitOutcomeUnknownError,
    ConflictError,
    DuplicateKeyError,
    IntegrityError,
    TransientError,
    UnitOfWorkError,
)

# PostgreSQL (and CockroachDB, YugabyteDB): SQLSTATE class 23 is "integrity constraint violation".
_PG_UNIQUE_VIOLATION = "23505"
# MySQL and MariaDB: ER_DUP_ENTRY, ER_DUP_KEY, ER_DUP_UNIQUE, ER_DUP_ENTRY_WITH_KEY_NAME.
_MYSQL_DUPLICATE_CODES = frozenset({1022, 1062, 1169, 1586})
# SQLite extended result codes: SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE, and
# SQLITE_CONSTRAINT_ROWID (an explicit rowid that exists already).
_SQLITE_DUPLICATE_CODES = frozenset({1555, 2067, 2579})

# Failures that go away when the whole transaction runs again:
# PostgreSQL-family serialization_failure, deadlock_detected, and lock_not_available (a lock_timeout
# ran out: PostgreSQL's lock wait timeout);
_PG_TRANSIENT = frozenset({"40001", "40P01", "55P03"})
# MySQL/MariaDB ER_LOCK_DEADLOCK and ER_LOCK_WAIT_TIMEOUT;
_MYSQL_TRANSIENT = frozenset({1213, 1205})
# SQLite SQLITE_BUSY and SQLITE_LOCKED, whatever their extended code (the low byte is the primary).
_SQLITE_TRANSIENT = frozenset({5, 6})
# CockroachDB's statement_completion_unknown: a COMMIT whose outcome the server cannot tell.
_PG_OUTCOME_UNKNOWN = "40003"
# PostgreSQL's idle_in_transaction_session_timeout: the server ended the session (rolling its
# transaction back) before the COMMIT arrived.
_PG_ENDED_BEFORE_COMMIT = "25P03"


def sqlstate(error: sa_exc.DBAPIError) -> str | None:
    """The five-character SQLSTATE of a driver error, if the driver reports one.

    PostgreSQL-family drivers report precise states; MySQL drivers report coarse ones (`23000` for
    every integrity violation), so their error number is read first.
    """
    orig = error.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code if isinstance(code, str) else None


def mysql_errno(error: sa_exc.DBAPIError) -> int | None:
    """The server error number of a MySQL or MariaDB driver error (PyMySQL, aiomysql, asyncmy)."""
    orig = error.orig
    if getattr(orig, "sqlite_errorcode", None) is not None:
        return None
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and not isinstance(args[0], bool):
        return args[0]
    return None


def sqlite_errorcode(error: sa_exc.DBAPIError) -> int | None:
    """The extended result code of an error from the standard-library `sqlite3` driver."""
    code = getattr(error.orig, "sqlite_errorcode", None)
    return code if isinstance(code, int) else None


def is_duplicate_key(error: sa_exc.DBAPIError) -> bool:
    """Whether the error is a primary-key or unique-constraint violation on any supported backend."""
    code = sqlite_errorcode(error)
    if code is not None:
        return code in _SQLITE_DUPLICATE_CODES
    errno = mysql_errno(error)
    if errno is not None:
        return errno in _MYSQL_DUPLICATE_CODES
    return sqlstate(error) == _PG_UNIQUE_VIOLATION


def lost_before_sending(error: sa_exc.DBAPIError) -> bool:
    """Whether the connection is known to have been gone before the failed statement was sent.

    PostgreSQL's SQLSTATE 25P03 (the server ended the idle transaction and the session), reported
    by the driver's error or one it chains (asyncpg wraps it in `ConnectionDoesNotExistError`), and
    asyncpg's client-side `InterfaceError` (no server error), raised for a connection it knows is
    closed.
    """
    if sqlstate(error) == _PG_ENDED_BEFORE_COMMIT:
        return True
    asyncpg = sys.modules.get("asyncpg")
    cause = error.orig.__cause__ if error.orig is not None else None
    for _ in range(3):
        if cause is None:
            return False
        if getattr(cause, "sqlstate", None) == _PG_ENDED_BEFORE_COMMIT:
            return True
        if (
            asyncpg is not None
            and isinstance(cause, asyncpg.InterfaceError)
            and not isinstance(cause, asyncpg.PostgresError)
        ):
            return True
        cause = cause.__cause__
    return False


def is_transient(error: BaseException) -> bool:
    """Whether running the whole unit again may succeed where `error` made it fail.

    True for serialization failures and deadlocks, lock wait timeouts, SQLite's busy or locked
    database, a connection lost (invalidated) outside COMMIT, and optimistic-locking conflicts
    ([`ConflictError`][uow.ConflictError], SQLAlchemy's `StaleDataError`); never for integrity
    violations.
    """
    if isinstance(error, TransientError | orm_exc.StaleDataError):
        return True
    if not isinstance(error, sa_exc.DBAPIError) or isinstance(error, UnitOfWorkError):
        return False
    if isinstance(error, sa_exc.IntegrityError):
        return False
    code = sqlite_errorcode(error)
    if code is not None:
        return code & 0xFF in _SQLITE_TRANSIENT
    errno = mysql_errno(error)
    if errno is not None and errno in _MYSQL_TRANSIENT:
        return True
    if sqlstate(error) in _PG_TRANSIENT:
        return True
    return bool(error.connection_invalidated)


def translate(
    error: sa_exc.SQLAlchemyError, *, commit_sent: bool = False
) -> IntegrityError | TransientError | CommitOutcomeUnknownError | ConflictError | None:
    """The uow error that stands for `error`, or `None` when uow has no more precise one.

    Integrity violations, transient failures and commits of unknown outcome are translated (the
    last when `commit_sent` says COMMIT was in flight as the connection was lost), and so are
    SQLAlchemy's `StaleDataError`s (a flush whose `UPDATE` or `DELETE` matched no row, as with a
    stale version column); everything else propagates as SQLAlchemy raised it.
    """
    if isinstance(error, UnitOfWorkError):
        return None
    if isinstance(error, orm_exc.StaleDataError):
        return conflict(error)
    if not isinstance(error, sa_exc.DBAPIError):
        return None
    if isinstance(error, sa_exc.IntegrityError):
        if is_duplicate_key(error):
            return DuplicateKeyError.from_sqlalchemy(error)
        return IntegrityError.from_sqlalchemy(error)
    if sqlstate(error) == _PG_OUTCOME_UNKNOWN or (
        commit_sent and error.connection_invalidated and not lost_before_sending(error)
    ):
        return CommitOutcomeUnknownError.from_sqlalchemy(error)
    if is_transient(error):
        return TransientError.from_sqlalchemy(error)
    return None


def reason(error: BaseException) -> str:
    """A short name for why `error` happened, free of values: fit for logs, spans and metric attributes.

    `"disconnect"` for a connection SQLAlchemy invalidated; otherwise the code the database gave (the
    SQLite result code's name such as `"SQLITE_BUSY"`, the MySQL or MariaDB error number such as
    `"1213"`, the SQLSTATE such as `"40001"`); otherwise the exception's class name. Never the
    message, which may quote the values of the statement.
    """
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return "disconnect"
        code = status_code(error)
        if code is not None:
            return code
    return type(error).__name__


def status_code(error: sa_exc.DBAPIError) -> str | None:
    """The database's code for `error` as a string: SQLite result code name, MySQL error number, SQLSTATE."""
    code = sqlite_errorcode(error)
    if code is not None:
        name = getattr(error.orig, "sqlite_errorname", None)
        return name if isinstance(name, str) else str(code)
    errno = mysql_errno(error)
    if errno is not None:
        return str(errno)
    return sqlstate(error)


def conflict(error: orm_exc.StaleDataError) -> ConflictError:
    """The `ConflictError` that stands for SQLAlchemy's `StaleDataError`, keeping its message."""
    return ConflictError(
        f"{error} The row was changed or deleted by another transaction since it was read "
        "(an optimistic-locking conflict): run the unit again, for example with run(retry=Retry())"
    )
