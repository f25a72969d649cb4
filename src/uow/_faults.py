"""Fault injection: make a statement or a commit fail with a chosen database error, on any backend.

The errors are as real as they can be made. On PostgreSQL and MariaDB the server itself raises them
(`RAISE` with the SQLSTATE, `SIGNAL` with the error number; a disconnect terminates the server
session), so they reach the code under test through the real driver, SQLAlchemy's wrapping and its
disconnect detection. SQLite has no server: its errors are the `sqlite3` exceptions the driver
raises, with their extended result codes, and a disconnect closes the driver's connection.

A fault is raised where the driver executes the statement (the dialect's `do_execute` events), not
from `before_cursor_execute`: SQLAlchemy 2.0 lets an exception raised in `before_cursor_execute`
through as it is, unwrapped, while what is raised in the driver's place is handled as the driver's
own error on every 2.x release.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, Literal, TypeAlias, get_args

from sqlalchemy import Connection, Engine, event

from uow._errors import InvalidArgumentError
from uow._rollback import SAVEPOINT_DEPTH

__all__ = ["Fault", "FaultKind", "fail_commit", "fail_statement"]

FaultKind: TypeAlias = Literal[
    "serialization_failure", "deadlock", "disconnect", "duplicate_key", "integrity_error"
]
"""The database errors that can be injected by name; see `fail_statement()` for what each is."""

_KINDS: frozenset[str] = frozenset(get_args(FaultKind))
_PROBE = "uow.fault_probe"
_SUFFIX = " (injected by uow.testing)"

# PostgreSQL: SQLSTATE and message as the server reports them.
_POSTGRESQL = {
    "serialization_failure": ("40001", "could not serialize access due to concurrent update"),
    "deadlock": ("40P01", "deadlock detected"),
    "duplicate_key": ("23505", "duplicate key value violates unique constraint"),
    "integrity_error": ("23502", "null value in column violates not-null constraint"),
}
# MySQL and MariaDB: error number, SQLSTATE and message as the server reports them. MariaDB reports a
# write conflict as a deadlock (1213, SQLSTATE 40001).
_MYSQL = {
    "serialization_failure": (
        1213,
        "40001",
        "Deadlock found when trying to get lock; try restarting transaction",
    ),
    "deadlock": (1213, "40001", "Deadlock found when trying to get lock; try restarting transaction"),
    "duplicate_key": (1062, "23000", "Duplicate entry for key PRIMARY"),
    "integrity_error": (1048, "23000", "Column cannot be null"),
}
# SQLite: exception class, extended result code and its name, message.
_SQLITE: dict[str, tuple[type[sqlite3.Error], int, str, str]] = {
    "serialization_failure": (sqlite3.OperationalError, 5, "SQLITE_BUSY", "database is locked"),
    "deadlock": (sqlite3.OperationalError, 5, "SQLITE_BUSY", "database is locked"),
    "duplicate_key": (sqlite3.IntegrityError, 2067, "SQLITE_CONSTRAINT_UNIQUE", "UNIQUE constraint failed"),
    "integrity_error": (
        sqlite3.IntegrityError,
        1299,
        "SQLITE_CONSTRAINT_NOTNULL",
        "NOT NULL constraint failed",
    ),
}


class Fault:
    """An armed fault, as yielded by `fail_statement()` and `fail_commit()`.

    Attributes:
        error: What it raises: a `FaultKind` or an exception instance.
        seen: How many statements (or commits) it counted so far.
        fired: How many times it made one fail.
    """

    def __init__(self, error: FaultKind | BaseException, nth: int, times: int) -> None:
        if not isinstance(error, BaseException) and error not in _KINDS:
            raise InvalidArgumentError(
                f"a fault's error is one of {', '.join(sorted(_KINDS))} or an exception instance, "
                f"got {error!r}"
            )
        for name, value in (("nth", nth), ("times", times)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidArgumentError(f"{name} must be a positive int, got {value!r}")
        self.error = error
        self.nth = nth
        self.times = times
        self.seen: int = 0
        self.fired: int = 0

    def __repr__(self) -> str:
        return f"<Fault {self.error!r}: fired {self.fired} of {self.times} time(s), {self.seen} seen>"

    def _count(self) -> bool:
        """Count one more statement or commit; whether this one must fail."""
        self.seen += 1
        if self.seen >= self.nth and self.fired < self.times:
            self.fired += 1
            return True
        return False

    def _raise(self, connection: Connection, cursor: Any) -> None:
        """Make the statement about to run on `connection` fail, from the server where there is one."""
        error = self.error
        if isinstance(error, BaseException):
            raise error
        dialect = connection.dialect.name
        if dialect == "sqlite":
            if error == "disconnect":
                connection.connection.dbapi_connection.close()  # type: ignore[union-attr]
                return  # the statement now runs into the closed connection
            cls, code, name, message = _SQLITE[error]
            exception = cls(message + _SUFFIX)
            exception.sqlite_errorcode = code
            exception.sqlite_errorname = name
            raise exception
        if dialect == "postgresql":
            if error == "disconnect":
                cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
            else:
                state, message = _POSTGRESQL[error]
                cursor.execute(
                    f"DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '{state}', "
                    f"MESSAGE = '{message}{_SUFFIX}'; END $$"
                )
            return
        if error == "disconnect":
            cursor.execute("KILL CONNECTION_ID()")
        else:
            number, state, message = _MYSQL[error]
            cursor.execute(
                f"SIGNAL SQLSTATE '{state}' SET MYSQL_ERRNO = {number}, MESSAGE_TEXT = '{message}{_SUFFIX}'"
            )


def _fail_release(fault: Fault, connection: Connection, cursor: Any, name: str) -> None:
    """Fail the release of a unit's savepoint as a failed commit fails: with its work undone.

    SQLAlchemy forgets a savepoint whose release failed, so the unit's rollback would not undo its
    work; the database would have. The work is rolled back here, and the savepoint released, before
    the error goes on (a lost connection has lost the work already).
    """
    try:
        fault._raise(connection, cursor)
    except BaseException:
        if fault.error != "disconnect" and not connection.invalidated:
            cursor.execute(f"ROLLBACK TO SAVEPOINT {name}")
            cursor.execute(f"RELEASE SAVEPOINT {name}")
        raise


_SUPPORTED = frozenset({"sqlite", "postgresql", "mysql", "mariadb"})


def _target(target: object) -> Engine | Connection:
    """The engine or connection whose events show the statements of `target`."""
    bind: Any = target
    kw = getattr(bind, "kw", None)
    if isinstance(kw, dict):  # a sessionmaker or async_sessionmaker
        bind = kw.get("bind")
    bind = getattr(bind, "sync_engine", None) or getattr(bind, "sync_connection", None) or bind
    if not isinstance(bind, Engine | Connection):
        raise InvalidArgumentError(
            "faults are injected into an Engine, a Connection, their async twins, or a session factory "
            f"bound to one of them; got {target!r}"
        )
    if bind.dialect.name not in _SUPPORTED:
        raise InvalidArgumentError(
            f"faults can be injected on SQLite, PostgreSQL, MySQL and MariaDB, not on {bind.dialect.name}"
        )
    return bind


_Action: TypeAlias = Callable[[], None]
_Decide: TypeAlias = Callable[[Connection, Any, str], _Action | None]


@contextmanager
def _intercepting(bind: Engine | Connection, decide: _Decide) -> Iterator[None]:
    """Show `decide` every statement sent through `bind`, and run the action it picks in the driver's place.

    `decide(connection, cursor, statement)` is called from `before_cursor_execute`; the action it
    returns, if any, runs from the dialect's `do_execute`, `do_executemany` and
    `do_execute_no_params` events, just before the driver executes that statement on that cursor.
    What the action raises there is handled as the driver's own error: wrapped in a `DBAPIError`,
    checked for a disconnect (which invalidates the connection), and passed to `handle_error`
    listeners. The dialect's events are shared by every connection of its engine; an action runs
    only for the cursor of the statement it was picked for.
    """
    pending: dict[int, tuple[Any, _Action]] = {}

    def before(
        connection: Connection, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        action = decide(connection, cursor, statement)
        if action is None:
            pending.pop(id(cursor), None)  # one picked for an earlier statement that never ran
        else:
            pending[id(cursor)] = (cursor, action)

    def run(cursor: Any) -> None:
        entry = pending.pop(id(cursor), None)  # holding the cursor, the id is its own
        if entry is not None:
            entry[1]()

    def execute(cursor: Any, statement: str, parameters: Any, context: Any) -> None:
        run(cursor)

    def execute_no_params(cursor: Any, statement: str, context: Any) -> None:
        run(cursor)

    listeners: list[tuple[Any, str, Callable[..., None]]] = [
        (bind, "before_cursor_execute", before),
        (bind.dialect, "do_execute", execute),
        (bind.dialect, "do_executemany", execute),
        (bind.dialect, "do_execute_no_params", execute_no_params),
    ]
    with ExitStack() as stack:
        for target, name, listener in listeners:
            event.listen(target, name, listener)
            stack.callback(event.remove, target, name, listener)
        yield


@contextmanager
def fail_statement(
    target: object,
    error: FaultKind | BaseException,
    *,
    nth: int = 1,
    times: int = 1,
    matching: str | None = None,
) -> Iterator[Fault]:
    """Make the `nth` statement sent through `target` inside the block fail with `error`.

    ```python
    with fail_statement(engine, "deadlock", matching="INSERT INTO orders") as fault:
        with pytest.raises(uow.TransientError):
            place_order(UnitOfWork(Session), ...)
    assert fault.fired == 1
    ```

    Statements are counted from entering the block; with `matching`, only those whose SQL contains
    that regular expression (case-insensitive) are counted. Statements `nth` to `nth + times - 1`
    fail; the others run as usual. The statement fails as a database would fail it:

    ==========================  =====================  =======================  ===================
    `error`                   PostgreSQL             MariaDB / MySQL          SQLite
    ==========================  =====================  =======================  ===================
    `"serialization_failure"` SQLSTATE 40001         error 1213 (40001)       SQLITE_BUSY (5)
    `"deadlock"`              SQLSTATE 40P01         error 1213 (40001)       SQLITE_BUSY (5)
    `"disconnect"`            server session ended   server session killed    connection closed
    `"duplicate_key"`         SQLSTATE 23505         error 1062 (23000)       code 2067
    `"integrity_error"`       SQLSTATE 23502         error 1048 (23000)       code 1299
    ==========================  =====================  =======================  ===================

    SQLAlchemy wraps it as it wraps the driver's error (a disconnect invalidates the connection) and
    uow translates it as usual. An exception instance is raised as it is instead, as if the driver
    had raised it: an `asyncio.CancelledError` or `KeyboardInterrupt` interrupts the statement.

    Args:
        target: An `Engine` or `Connection`, their async
            twins, or a session factory bound to one of them (such as `uow_session_factory`).
        error: A `FaultKind`, or an exception instance to raise.
        nth: The first statement to fail, counting from 1.
        times: How many statements, from the `nth` on, fail.
        matching: A regular expression that the statements to count must contain.

    Raises:
        InvalidArgumentError: The target, backend or arguments are not supported.
    """
    fault = Fault(error, nth, times)
    bind = _target(target)
    pattern = re.compile(matching, re.IGNORECASE) if matching is not None else None

    def decide(connection: Connection, cursor: Any, statement: str) -> _Action | None:
        if pattern is not None and not pattern.search(statement):
            return None
        if fault._count():
            return lambda: fault._raise(connection, cursor)
        return None

    with _intercepting(bind, decide):
        yield fault


@contextmanager
def fail_commit(
    target: object,
    error: FaultKind | BaseException,
    *,
    nth: int = 1,
    times: int = 1,
) -> Iterator[Fault]:
    """Make the `nth` commit through `target` inside the block fail with `error`.

    ```python
    with fail_commit(engine, "serialization_failure", times=2) as fault:
        unit.run(transfer)           # fails twice, succeeds on the third attempt
    assert fault.fired == 2
    ```

    A commit is a `COMMIT`, or, for sessions of `rolled_back_sessions()` and the pytest
    plugin's factories, the release of the savepoint that stands for the unit's transaction (a
    savepoint of the unit's own, from `unit.savepoint()`, does not count). It fails before it
    reaches the database, so nothing is committed; the error is the one the database would report,
    as listed for `fail_statement()`. Commits `nth` to `nth + times - 1` fail.

    Raises:
        InvalidArgumentError: The target, backend or arguments are not supported.
    """
    fault = Fault(error, nth, times)
    bind = _target(target)

    def on_commit(connection: Connection) -> None:
        if fault._count():
            connection.info[_PROBE] = fault
            connection.exec_driver_sql("SELECT 1")  # runs into the fault, wrapped as a statement error

    def decide(connection: Connection, cursor: Any, statement: str) -> _Action | None:
        if connection.info.get(_PROBE) is fault:
            del connection.info[_PROBE]
            return lambda: fault._raise(connection, cursor)
        if (
            statement.startswith("RELEASE SAVEPOINT")
            and connection.info.get(SAVEPOINT_DEPTH) == 0  # the savepoint of a unit's transaction
            and fault._count()
        ):
            name = statement.split()[-1]
            return lambda: _fail_release(fault, connection, cursor, name)
        return None

    event.listen(bind, "commit", on_commit)
    try:
        with _intercepting(bind, decide):
            yield fault
    finally:
        event.remove(bind, "commit", on_commit)
