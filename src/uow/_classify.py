"""Classification of database errors by SQLSTATE or driver error code, never by message text."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

from uow._errors import DuplicateKeyError, IntegrityError

# PostgreSQL (and CockroachDB, YugabyteDB): SQLSTATE class 23 is "integrity constraint violation".
_PG_UNIQUE_VIOLATION = "23505"
# MySQL and MariaDB: ER_DUP_ENTRY, ER_DUP_KEY, ER_DUP_UNIQUE, ER_DUP_ENTRY_WITH_KEY_NAME.
_MYSQL_DUPLICATE_CODES = frozenset({1022, 1062, 1169, 1586})
# SQLite extended result codes: SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE, and
# SQLITE_CONSTRAINT_ROWID (an explicit rowid that exists already).
_SQLITE_DUPLICATE_CODES = frozenset({1555, 2067, 2579})


def sqlstate(error: sa_exc.DBAPIError) -> str | None:
    """The five-character SQLSTATE of a driver error, if the driver reports one.

    PostgreSQL-family drivers report precise states; MySQL drivers report coarse ones (``23000`` for
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
    """The extended result code of an error from the standard-library ``sqlite3`` driver."""
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


def translate(error: sa_exc.DBAPIError) -> IntegrityError | None:
    """The uow error that stands for ``error``, or ``None`` when uow has no more precise one.

    Only integrity violations are translated; everything else propagates as SQLAlchemy raised it.
    """
    if not isinstance(error, sa_exc.IntegrityError) or isinstance(error, IntegrityError):
        return None
    if is_duplicate_key(error):
        return DuplicateKeyError.from_sqlalchemy(error)
    return IntegrityError.from_sqlalchemy(error)
