"""The errors and warnings that uow raises.

Every error is a [`UnitOfWorkError`][uow.UnitOfWorkError]; most also subclass the builtin or SQLAlchemy
exception that
code already catches for the same condition:

```python
UnitOfWorkError
 ├── StateError                (also RuntimeError)   a unit used outside its block, reentered, ...
 │    └── ReplicaWriteError                          a write reached a read replica
 ├── NotFoundError             (also LookupError)    get_one() / one() found nothing
 ├── MultipleResultsError      (also LookupError)    one() found more than one row
 ├── InvalidArgumentError      (also ValueError)     a repository call that cannot be turned into SQL
 │    └── InvalidFieldError                          a field name that is not a mapped column
 ├── IntegrityError            (also sqlalchemy.exc.IntegrityError)
 │    └── DuplicateKeyError                          a primary-key or unique constraint was violated
 ├── TransientError            (also sqlalchemy.exc.OperationalError) retry the whole unit
 ├── ConflictError             (also sqlalchemy.orm.exc.StaleDataError) a row changed since it was read
 ├── CommitOutcomeUnknownError (also sqlalchemy.exc.OperationalError) COMMIT in flight was cut off
 └── HookError                 (also ExceptionGroup) after-commit/rollback hooks or handlers failed

UncommittedWorkWarning         (a UserWarning)       a block ended with work that was never committed
```

Errors translated from the database keep the original SQLAlchemy exception as `__cause__` and carry
its `statement`, `params` and `orig` (the driver's exception).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import exc as orm_exc
from typing_extensions import override

__all__ = [
    "CommitOutcomeUnknownError",
    "ConflictError",
    "DuplicateKeyError",
    "HookError",
    "IntegrityError",
    "InvalidArgumentError",
    "InvalidFieldError",
    "MultipleResultsError",
    "NotFoundError",
    "ReplicaWriteError",
    "StateError",
    "TransientError",
    "UncommittedWorkWarning",
    "UnitOfWorkError",
]


class UnitOfWorkError(Exception):
    """The root of every error that uow raises."""


class StateError(UnitOfWorkError, RuntimeError):
    """A unit of work was used in a state that does not allow it; the message says what to do instead.

    Raised for: `commit()`, `rollback()`, `session`, `repository()`, `savepoint()` and the
    hooks outside an active block, or a repository kept after its block; entering a unit that is
    already active, or a durable unit inside another; `commit()` or `rollback()` inside a
    savepoint block; `commit()` after a statement failed and its error was caught (the
    partial-commit guard), or a savepoint left normally after that; writes in a read-only unit;
    two tasks using one async unit at once; savepoints on a SQLite engine that would not make them
    atomic; `run()` or `attempts()` on an active unit; `isolation_level` or `read_only` with a
    session that is not bound to one `Engine`.
    """


class ReplicaWriteError(StateError):
    """A write was sent to a read replica, which refused it; nothing was written.

    Raised by a [`ReplicaRouter`][uow.ReplicaRouter]'s replicas for PostgreSQL's SQLSTATE 25006
    (`read_only_sql_transaction`: a hot standby, or a read-only transaction) and MariaDB's and
    MySQL's errors 1290 (`--read-only`) and 1792 (a `READ ONLY` transaction). Read-only units go to
    replicas: run writes in a unit without `read_only=True`. The transaction is rolled back as for any
    failed statement; the driver's exception is the `__cause__`.

    Attributes:
        replica: The replica's URL, without its password.
        statement: The SQL that was refused.
    """

    def __init__(self, replica: str, statement: str | None) -> None:
        self.replica = replica
        self.statement = statement
        super().__init__(
            f"a write was sent to the read replica {replica}, which refused it: read-only units go to "
            "replicas, so run writes in a unit without read_only=True"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.replica, self.statement)


def _searched(criteria: str) -> str:
    return f" for {criteria}" if criteria else ""


class NotFoundError(UnitOfWorkError, LookupError):
    """A lookup that must find exactly one object found none.

    The message names the model and the fields searched, never the values searched for, which
    may be personal data or secrets: `no User found for email=?`.

    Attributes:
        model: The mapped class that was searched.
        criteria: What was searched for, by field and expression, with every value shown as `?`
            (`id=?`, `users.name LIKE ?`); empty when nothing narrowed the search.
    """

    def __init__(self, model: type[Any], criteria: str) -> None:
        self.model = model
        self.criteria = criteria
        super().__init__(f"no {model.__name__} found{_searched(criteria)}")


class MultipleResultsError(UnitOfWorkError, LookupError):
    """A lookup that must find exactly one object found several.

    Like `NotFoundError`, the message names the fields searched, never the values.

    Attributes:
        model: The mapped class that was searched.
        criteria: What was searched for, with every value shown as `?`; empty when nothing
            narrowed the search.
    """

    def __init__(self, model: type[Any], criteria: str) -> None:
        self.model = model
        self.criteria = criteria
        super().__init__(f"more than one {model.__name__} found{_searched(criteria)}; expected exactly one")


class InvalidArgumentError(UnitOfWorkError, ValueError):
    """A repository call received an argument that cannot be turned into a safe query.

    Nothing is sent to the database and the session is left as it was.
    """


class InvalidFieldError(InvalidArgumentError):
    """A field name given as a string is not a mapped column of the model.

    Attributes:
        model: The mapped class whose fields were checked.
        field: The rejected name, exactly as given.
    """

    def __init__(
        self, model: type[Any], field: str, *, usage: str = "field", reason: str | None = None
    ) -> None:
        self.model = model
        self.field = field
        super().__init__(
            f"{model.__name__} has no mapped column {shown(field)} to use as a {usage}; "
            "string names must be column attributes of the model "
            "(pass a SQLAlchemy expression for anything else)"
            if reason is None
            else f"{model.__name__} field {shown(field)} {reason}"
        )


def shown(name: str) -> str:
    """`name` as error messages show it: quoted, escaped, and cut short when long (names may be input)."""
    return repr(name) if len(name) <= 60 else f"{name[:57]!r}..."


E = TypeVar("E", bound=sa_exc.DBAPIError)


class _Translated(UnitOfWorkError):
    """A database error translated from a SQLAlchemy one, keeping all of its details."""

    @classmethod
    def from_sqlalchemy(cls: type[E], error: sa_exc.DBAPIError) -> E:  # type: ignore[misc]  # cls is a DBAPIError too
        """Build the translated error from the SQLAlchemy exception, keeping all of its details."""
        translated = cls(
            error.statement,
            error.params,
            error.orig,  # type: ignore[arg-type]  # a DBAPIError always carries the driver's error
            hide_parameters=error.hide_parameters,
            connection_invalidated=error.connection_invalidated,
            code=error.code,
            ismulti=error.ismulti,
        )
        translated.detail = list(error.detail)
        return translated


class IntegrityError(_Translated, sa_exc.IntegrityError):
    """The database rejected a change because it violates an integrity constraint.

    Also a `sqlalchemy.exc.IntegrityError`, so existing handlers keep working. The SQLAlchemy
    exception it was translated from is its `__cause__`; `orig` is the driver's exception.
    """


class DuplicateKeyError(IntegrityError):
    """A primary-key or unique constraint was violated: the row already exists."""


class TransientError(_Translated, sa_exc.OperationalError):
    """The transaction failed for a reason that goes away if the whole unit is run again.

    Serialization failures, deadlocks and lock timeouts (PostgreSQL, CockroachDB and YugabyteDB
    SQLSTATE 40001, 40P01 and 55P03; MySQL and MariaDB errors 1213 and 1205), SQLite's busy and
    locked database, and a connection lost before COMMIT was sent. The transaction was rolled back:
    retry the whole unit with `UnitOfWork.run()` or `UnitOfWork.attempts()`. Also a
    `sqlalchemy.exc.OperationalError`.

    Attributes:
        attempts: How many attempts were made, when retries ran out; otherwise `None`.
    """

    attempts: int | None = None


class ConflictError(UnitOfWorkError, orm_exc.StaleDataError):
    """A write found its row changed or gone since the row was read: an optimistic-locking conflict.

    Raised when SQLAlchemy's flush finds that an `UPDATE` or `DELETE` matched no row, most often
    because the model has a version column (`version_id_col`) and another transaction committed a
    newer version first; also by `get_or_create()` when the row another transaction created is
    gone again before this one could read it. Nothing of the failed flush was written. Like a
    [`TransientError`][uow.TransientError], running the whole unit again may succeed, so `run()` and
    `attempts()` retry it (after reading the row anew). Also a
    `sqlalchemy.orm.exc.StaleDataError`, the SQLAlchemy exception it was translated from, which is
    its `__cause__`.
    """


class CommitOutcomeUnknownError(_Translated, sa_exc.OperationalError):
    """The connection was lost while COMMIT was in flight: the data may or may not be committed.

    Never retried automatically, since running the unit again could apply its work twice. Make the
    work idempotent (a unique request id, an upsert) and check the outcome before running it again.
    Also raised for CockroachDB's SQLSTATE 40003 (statement completion unknown).
    """


class HookError(UnitOfWorkError, ExceptionGroup[Exception]):
    """Hooks or event handlers that ran after a commit or a rollback failed.

    Raised once all of them have run, with every failure inside (`except* SomeError` picks them out).
    The transaction's outcome stands: `committed` says whether the data was committed (after-commit
    hooks and event handlers) or rolled back (after-rollback hooks).
    """

    committed: bool

    def __new__(cls, message: str, exceptions: Sequence[Exception], *, committed: bool) -> Self:
        self = super().__new__(cls, message, exceptions)
        self.committed = committed
        return self

    def __init__(self, message: str, exceptions: Sequence[Exception], *, committed: bool) -> None:
        super().__init__(message, exceptions)

    @override
    def derive(self, excs: Sequence[Exception]) -> HookError:  # type: ignore[override]  # narrower
        return HookError(self.message, excs, committed=self.committed)


class UncommittedWorkWarning(UserWarning):
    """A unit of work's block ended normally while it still held work that was never committed.

    The work was rolled back. Call `unit.commit()` before the block ends to keep it, or
    `unit.rollback()` to discard it on purpose and silence this warning.
    """
