"""The unit of work: one session, one block, nothing committed unless `commit()` is called."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self, TypeVar, overload

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, SessionTransaction

from uow._base import CLOSING, RECOVERING, Attempts, UnitBase, to_undo
from uow._classify import translate
from uow._listeners import Ledger, discard_connections, settle
from uow._repository import Repository
from uow._retry import Retry
from uow._rules import (
    already_active,
    attach_failure,
    cleanup_failure_wins,
    interrupted,
    make_options,
    partial_savepoint,
)
from uow._sqlite import check_savepoints

__all__ = ["UnitOfWork"]

T = TypeVar("T")
R = TypeVar("R", bound=Repository[Any])


class UnitOfWork(UnitBase):
    """A block of work on one `Session` that commits only when told to.

    ```python
    with UnitOfWork(Session) as unit:
        unit.repository(User).add(User(id="7", name="hanmeimei"))
        unit.commit()
    ```

    Entering the block opens a session from `session_factory`. Inside it:

    - `commit()` flushes and commits; `rollback()` discards pending changes and rolls back.
      Either way the unit stays usable and the next statement begins a new transaction.
    - Nothing is ever committed implicitly. Leaving the block rolls back whatever was not committed;
      if that was real work (new, changed or deleted objects, or a flush since the last commit or
      rollback), an [`UncommittedWorkWarning`][uow.UncommittedWorkWarning] says what was discarded.
    - An exception of any kind, `KeyboardInterrupt` included, rolls back and propagates unchanged;
      if the rollback fails too, that failure is attached to it as a note and logged. After an
      interruption that is not an `Exception` (`KeyboardInterrupt`, `SystemExit`) the
      connection may have been cut off mid-statement, so it is invalidated instead: the driver closes
      it and the server rolls back.
    - On every exit path the session is closed and its connection is returned to the pool.
    - Commits and rollbacks made through `unit.session` keep these rules: hooks, domain events and
      the partial-commit guard follow SQLAlchemy's own transactions.

    A unit runs one block at a time and may be entered again after its block ended; each block gets
    a fresh session. Entering a unit that is active (in this or any other thread) raises
    [`StateError`][uow.StateError]. A unit is not thread-safe: share the factory, not the unit.
    """

    __slots__ = ()

    def __init__(
        self,
        session_factory: Callable[[], Session],
        *,
        dispatch: Callable[[Any], Any] | None = None,
        isolation_level: str | None = None,
        read_only: bool = False,
        durable: bool = False,
    ) -> None:
        """Create a unit that opens its sessions with `session_factory`.

        Args:
            session_factory: A `sessionmaker`, or any callable taking no
                arguments that returns a new `Session`.
            dispatch: Called with each domain event recorded by the session's entities
                ([`HasEvents`][uow.HasEvents]) after a successful commit, in recording order.
            isolation_level: `"SERIALIZABLE"`, `"REPEATABLE READ"`, `"READ COMMITTED"` or
                `"READ UNCOMMITTED"`, for every transaction of this unit only; the connection goes
                back to the pool at the engine's default. Needs a session bound to one engine.
            read_only: Refuse `commit()` and flushes while the session holds changes, before any
                SQL is sent; on PostgreSQL and MariaDB the transactions are also opened READ ONLY,
                so writes sent as raw SQL fail at the server.
            durable: Refuse to enter while another unit is active in the same thread or task, for
                work that must really be committed when `commit()` returns.

        Raises:
            InvalidArgumentError: `session_factory` is not callable, or an option is invalid.
        """
        super().__init__(
            session_factory, make_options(dispatch, isolation_level, read_only, durable, allow_async=False)
        )

    def __enter__(self) -> Self:
        self._enter(Session)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        session: Session | None = self._session
        if session is None:
            return
        ledger, discarded = self._leave(exc)
        try:
            if exc is None:
                _close(session, ledger, None)
            else:
                _cleanup(lambda error: _close(session, ledger, error), exc, exc, CLOSING)
        except BaseException as failure:
            self._left(ledger, failure, None)
            raise
        self._left(ledger, exc, discarded)

    @property
    def session(self) -> Session:
        """The live session of the active block: the way to everything the repositories don't cover.

        Raises:
            StateError: The unit is not active.
        """
        session: Session = self._active("unit.session")
        return session

    def commit(self) -> None:
        """Flush pending changes and commit the transaction.

        The unit stays active; the next statement begins a new transaction. If the commit fails, the
        unit rolls back (pending objects are discarded) and stays usable, and the error propagates:
        a primary-key or unique violation as [`DuplicateKeyError`][uow.DuplicateKeyError], another
        integrity violation as [`IntegrityError`][uow.IntegrityError], a transient failure as
        [`TransientError`][uow.TransientError], a connection lost while COMMIT was in flight as
        [`CommitOutcomeUnknownError`][uow.CommitOutcomeUnknownError], anything else unchanged.

        After the commit, the dispatcher receives the recorded domain events and then the
        `on_commit()` hooks run, each exactly once, in order. If any of them fails, the others
        still run and a [`HookError`][uow.HookError] is raised at the end; the data is committed.

        Raises:
            StateError: The unit is not active; or a savepoint is open; or a statement failed
                earlier in the transaction and its error was caught (roll back first); or the unit
                is read-only and the session holds changes.
        """
        session: Session = self._active("commit()")
        ledger = self._check_commit(session)
        done = ledger.commits_done
        try:
            session.flush()  # first, so that a failure now is known not to have reached COMMIT
            session.commit()
        except BaseException as exc:
            error = self._failed_commit(ledger, done, exc)
            if error is not None:
                _cleanup(lambda cause: _recover(session, cause), exc, error, RECOVERING)
            self._failed(ledger, error or exc)
            if error is None or error is exc:
                raise
            raise error from exc
        self._finished(ledger, committed=True)

    def rollback(self) -> None:
        """Discard pending changes and roll back the transaction; the unit stays active.

        Objects added since the last commit are expunged; loaded objects are expired and reload on
        next access. Domain events recorded since the last commit are dropped, and the
        `on_rollback()` hooks run.

        Raises:
            StateError: The unit is not active, or a savepoint is open.
            HookError: An after-rollback hook failed (after all of them ran).
        """
        session: Session = self._active("rollback()")
        ledger = self._check_rollback(session)
        try:
            session.rollback()
            if ledger.pending:
                settle(session, ledger)
        except BaseException as exc:
            if interrupted(exc):  # cut off mid-rollback: the connection's state is unknown
                _cleanup(lambda _: session.invalidate(), exc, exc, "invalidating the connection")
            self._failed(ledger, exc)
            raise
        self._finished(ledger, committed=False)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction: an exception inside rolls back to the savepoint only.

        ```python
        with unit.savepoint():
            users.add(User(id="8", name="maybe"))
        ```

        Entering flushes pending changes and sets a SAVEPOINT (`session.begin_nested()`). If the
        block raises, the work done inside it is rolled back (objects added inside are expunged,
        changed ones expired), its hooks and domain events are dropped (its `on_rollback()` hooks
        run), and the exception propagates; the work done before stays in the unit's transaction.
        A normal exit releases the savepoint, and its work commits or rolls back with the unit. If a
        statement failed inside and its error was caught, the savepoint is rolled back instead and
        [`StateError`][uow.StateError] is raised. If releasing fails, the savepoint's work may still
        be in the transaction: the unit then refuses to commit until `rollback()`. Savepoints nest
        to any depth. `commit()` and `rollback()` are refused inside one.

        Raises:
            StateError: The unit is not active, or it runs on a SQLite connection whose transaction
                did not really begin, so the savepoint would not be atomic (see
                [`configure_sqlite()`][uow.configure_sqlite]).
        """
        session: Session = self._active("savepoint()")
        check_savepoints(session)
        nested = session.begin_nested()
        scope = self._savepoint_scope()
        ledger = self._ledger
        assert ledger is not None
        try:
            yield
        except BaseException as exc:
            if not interrupted(exc):
                self._defer()
                _cleanup(lambda _: _roll_back(session, nested), exc, exc, "rolling back the savepoint")
                self._failed(ledger, exc)
            raise
        if not self._releasing(scope, session, nested):
            return
        if scope.failed:
            self._defer()
            _roll_back(session, nested)
            error = partial_savepoint()
            self._failed(ledger, error)
            raise error
        try:
            nested.commit()
        except BaseException as exc:
            _cleanup(lambda _: _roll_back(session, nested), exc, exc, "rolling back the savepoint")
            translated = translate(exc) if isinstance(exc, sa_exc.SQLAlchemyError) else None
            if translated is None:
                raise
            raise translated from exc

    def attempts(self, retry: Retry | None = None) -> Attempts[Self]:
        """The attempts of this unit's work, retried after transient failures.

        For work that cannot be a callable:

        ```python
        for attempt in UnitOfWork(Session).attempts(Retry(attempts=5)):
            with attempt as unit:
                ...
                unit.commit()
        ```

        Each attempt runs in a fresh session. A transient error (see [`is_transient()`][uow.is_transient])
        that ends an attempt's block, raised by a statement or by `commit()`, is swallowed; the
        loop pauses as `retry` says and runs the next attempt. Any other exception propagates at
        once, and so does a transient one once the attempt has committed. When the attempts run
        out, the last error propagates as a [`TransientError`][uow.TransientError] whose `attempts` says how
        many were made. Hooks and events of failed attempts are dropped with their work.

        Raises:
            StateError: The unit is active already.
        """
        if self._session is not None:
            raise already_active()
        return Attempts(self, retry if retry is not None else Retry())

    def run(self, work: Callable[[Self], T], *, retry: Retry | None = None) -> T:
        """Run `work(unit)` in this unit, again after transient failures; return its result.

        `work` must call `unit.commit()` itself; `unit.attempt` tells it which attempt it is.
        See `attempts()` for what is retried.

        Raises:
            TransientError: Every attempt failed; `attempts` says how many were made.
            CommitOutcomeUnknownError: The connection was lost while COMMIT was in flight.
        """
        for attempt in self.attempts(retry):
            with attempt:
                return work(self)
        raise AssertionError("a retry loop ends by returning or raising")  # pragma: no cover

    @overload
    def repository(self, target: type[R]) -> R: ...
    @overload
    def repository(self, target: type[T]) -> Repository[T]: ...
    def repository(self, target: type[Any]) -> Repository[Any]:
        """The repository for `target` in this block, created on first use.

        `target` is a mapped class (giving a [`Repository`][uow.Repository] of it) or a subclass of
        [`Repository`][uow.Repository] (giving an instance of that subclass). Within one block the same
        `target` always gives the same instance; after the block it refuses to be used.

        Raises:
            StateError: The unit is not active.
            InvalidArgumentError: `target` is neither a mapped class nor a repository class.
        """
        repository = self._repositories.get(target)
        if repository is not None:
            return repository  # type: ignore[no-any-return]  # the cache holds what was built below
        session = self._active("repository()")
        if isinstance(target, type) and issubclass(target, Repository):
            repository = target(session)
        else:
            repository = Repository(session, target)
        self._repositories[target] = repository
        return repository


# -- the I/O ------------------------------------------------------------------------------------


def _cleanup(
    step: Callable[[BaseException | None], None],
    cause: BaseException | None,
    error: BaseException | None,
    during: str,
) -> None:
    """Run a cleanup `step` after `cause`; its failure is attached to `error` (or, without one, raised).

    An interruption that arrives during the cleanup propagates instead (see `cleanup_failure_wins`).
    """
    try:
        step(cause)
    except BaseException as failure:
        if error is None or cleanup_failure_wins(failure, error):
            raise
        attach_failure(error, failure, during)


def _close(session: Session, ledger: Ledger, error: BaseException | None) -> None:
    """Close `session` (invalidate it after an interruption), returning its connection whatever happens."""
    try:
        if error is not None and interrupted(error):
            session.invalidate()
        else:
            session.close()
    except BaseException:
        discard_connections(session)
        raise
    if ledger.pending:
        settle(session, ledger)


def _recover(session: Session, error: BaseException | None) -> None:
    """Bring `session` back to a usable state after `error` broke its transaction."""
    if error is not None and interrupted(error):
        session.invalidate()
    else:
        session.rollback()


def _roll_back(session: Session, nested: SessionTransaction) -> None:
    """Undo the work of the savepoint block over `nested` (see `to_undo`)."""
    undo = to_undo(session, nested)
    if undo == "savepoint":
        nested.rollback()
    elif undo == "transaction":
        session.rollback()
