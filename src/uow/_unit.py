"""The unit of work: one session, one block, nothing committed unless `commit()` is called."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar, overload

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from uow._classify import translate
from uow._core import (
    UnitCore,
    already_active,
    attach_failure,
    attach_hook_failures,
    interrupted,
    partial_savepoint,
    skip_rollback_hooks,
    unknown_outcome,
    warn_uncommitted,
)
from uow._repository import Repository
from uow._session import discard_connections, uncommitted_work
from uow._sqlite import check_savepoints
from uow._transaction import after_commit, hook_error, outside_unit, run_hooks

if TYPE_CHECKING:
    from uow._retry import Attempts, Retry

__all__ = ["UnitOfWork"]

T = TypeVar("T")
R = TypeVar("R", bound=Repository[Any])


class UnitOfWork(UnitCore):
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

    A unit runs one block at a time and may be entered again after its block ended; each block gets
    a fresh session. A unit is not thread-safe: share the factory, not the unit.
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
        super().__init__(session_factory, dispatch, isolation_level, read_only, durable, allow_async=False)

    def __enter__(self) -> Self:
        session: Session = self._open(Session)
        self._start(session, session)
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
        self._drop_events(session)
        discarded = uncommitted_work(session) if exc is None else None
        session, frames = self._release()
        failures: list[Exception] = []
        if exc is None:
            _end(session, None)
            if frames is not None:
                run_hooks(frames.end().on_rollback, failures, "after-rollback")
            if discarded is not None:
                warn_uncommitted(discarded)
            if failures:
                raise hook_error(failures, committed=False)
            return
        try:
            _end(session, exc)
        except BaseException as failure:
            attach_failure(exc, failure, "rolling back and closing the session")
        if frames is not None:
            run_hooks(frames.end().on_rollback, failures, "after-rollback")
            attach_hook_failures(exc, failures)

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
        a primary-key or unique violation as [`DuplicateKeyError`][uow.DuplicateKeyError], another integrity
        violation as [`IntegrityError`][uow.IntegrityError], anything else unchanged.

        After the commit, the dispatcher receives the recorded domain events and then the
        `on_commit()` hooks run, each exactly once, in order. If any of them fails, the others
        still run and a [`HookError`][uow.HookError] is raised at the end; the data is committed.

        Raises:
            StateError: The unit is not active; or it is inside a savepoint block; or a statement
                failed earlier in the transaction and its error was caught (roll back first); or the
                unit is read-only and the session holds changes.
        """
        session: Session = self._active("commit()")
        events = self._check_commit(session)
        sent = self._commits_sent
        try:
            session.flush()  # first, so that a failure now is known not to have reached COMMIT
            session.commit()
        except BaseException as exc:
            translated = (
                translate(exc, commit_sent=self._commits_sent > sent)
                if isinstance(exc, sa_exc.DBAPIError)
                else None
            )
            try:
                _recover(session, exc)
            except BaseException as failure:
                attach_failure(translated or exc, failure, "rolling back the failed commit")
            root = self._end_transaction()
            if unknown_outcome(exc, translated):
                skip_rollback_hooks(root)
            elif root is not None and root.on_rollback:
                failures: list[Exception] = []
                with outside_unit():
                    run_hooks(root.on_rollback, failures, "after-rollback")
                attach_hook_failures(translated or exc, failures)
            if translated is not None:
                raise translated from exc
            raise
        root = self._end_transaction()
        if events or (root is not None and root.on_commit):
            after_commit(self._options.dispatch, events, root)

    def rollback(self) -> None:
        """Discard pending changes and roll back the transaction; the unit stays active.

        Objects added since the last commit are expunged; loaded objects are expired and reload on
        next access. Domain events recorded since the last commit are dropped, and the
        `on_rollback()` hooks run.

        Raises:
            StateError: The unit is not active, or it is inside a savepoint block.
            HookError: An after-rollback hook failed (after all of them ran).
        """
        session: Session = self._active("rollback()")
        self._check_rollback(session)
        try:
            session.rollback()
        except BaseException as exc:
            root = self._end_transaction()  # the transaction's hooks go with it, run or not
            if not interrupted(exc) and root is not None and root.on_rollback:
                failures: list[Exception] = []
                with outside_unit():
                    run_hooks(root.on_rollback, failures, "after-rollback")
                attach_hook_failures(exc, failures)
            raise
        root = self._end_transaction()
        if root is not None and root.on_rollback:
            failures = []
            with outside_unit():
                run_hooks(root.on_rollback, failures, "after-rollback")
            if failures:
                raise hook_error(failures, committed=False)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction: an exception inside rolls back to the savepoint only.

        ```python
        with unit.savepoint():
            users.add(User(id="8", name="maybe"))
        ```

        Entering flushes pending changes and sets a SAVEPOINT. If the block raises, the work done
        inside it is rolled back (objects added inside are expunged, changed ones expired), its
        hooks and domain events are dropped (its `on_rollback()` hooks run), and the exception
        propagates; the work done before stays in the unit's transaction. A normal exit releases
        the savepoint, and its work commits or rolls back with the unit. Savepoints nest to any
        depth. `commit()` and `rollback()` are refused inside one.

        Raises:
            StateError: The unit is not active, or it runs on a SQLite engine whose driver would
                make the savepoint non-atomic (see [`configure_sqlite()`][uow.configure_sqlite]).
        """
        session: Session = self._active("savepoint()")
        check_savepoints(session)
        frames = self._frames_of_block()
        nested = session.begin_nested()
        frame = frames.push()
        try:
            yield
        except BaseException as exc:
            frames.discard(frame)
            self._drop_events(session, frame.mark)
            if not interrupted(exc):
                try:
                    if session.get_nested_transaction() is nested:
                        nested.rollback()
                except BaseException as failure:
                    attach_failure(exc, failure, "rolling back the savepoint")
            failures: list[Exception] = []
            with outside_unit():
                run_hooks(frame.on_rollback, failures, "after-rollback")
            attach_hook_failures(exc, failures)
            raise
        if frame.failed:
            frames.discard(frame)
            self._drop_events(session, frame.mark)
            nested.rollback()
            failures = []
            with outside_unit():
                run_hooks(frame.on_rollback, failures, "after-rollback")
            error = partial_savepoint()
            attach_hook_failures(error, failures)
            raise error
        try:
            nested.commit()
        except BaseException as exc:
            frames.discard(frame)
            self._drop_events(session, frame.mark)
            if session.get_nested_transaction() is nested:
                try:
                    nested.rollback()
                except BaseException as failure:
                    attach_failure(exc, failure, "rolling back the savepoint")
                    frames.top.failed = True
            else:  # the driver gave up on the savepoint: its outcome is unknown, so refuse to commit
                frames.top.failed = True
            translated = translate(exc) if isinstance(exc, sa_exc.DBAPIError) else None
            if translated is not None:
                raise translated from exc
            raise
        frames.release(frame)

    def on_commit(self, fn: Callable[[], object], *, robust: bool = False) -> None:
        """Run `fn()` once the current transaction has committed.

        Hooks run after the commit, exactly once, in the order they were registered, after the
        domain events were dispatched. A hook registered inside a savepoint is dropped if the
        savepoint rolls back; every hook is dropped if the unit rolls back. A failing hook never
        undoes the commit and never stops the later hooks: the failures are raised together as a
        [`HookError`][uow.HookError] once all hooks ran, or, with `robust=True`, logged to the `uow`
        logger instead. A hook may open a unit of its own.

        Raises:
            StateError: The unit is not active.
            InvalidArgumentError: `fn` is not callable, or is a coroutine function.
        """
        self._register("on_commit()", fn, robust, allow_async=False).on_commit.append((fn, robust))

    def on_rollback(self, fn: Callable[[], object], *, robust: bool = False) -> None:
        """Run `fn()` when the work of the current transaction (or savepoint) is rolled back.

        It runs when the savepoint it was registered in rolls back, or when the unit rolls back
        (`rollback()`, a failed commit, or leaving the block without committing); it is dropped
        once the transaction commits. Failures are raised as a [`HookError`][uow.HookError] after all
        hooks ran, or attached as notes when an exception is already propagating; `robust=True`
        logs them instead.

        Raises:
            StateError: The unit is not active.
            InvalidArgumentError: `fn` is not callable, or is a coroutine function.
        """
        self._register("on_rollback()", fn, robust, allow_async=False).on_rollback.append((fn, robust))

    def attempts(self, retry: Retry | None = None) -> Attempts:
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
        from uow._retry import Attempts, Retry

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


def _end(session: Session, exc: BaseException | None) -> None:
    """Close `session`, returning its connection to the pool whatever happens."""
    try:
        if exc is not None and interrupted(exc):
            session.invalidate()
        else:
            session.close()
    except BaseException:
        discard_connections(session)
        raise


def _recover(session: Session, exc: BaseException) -> None:
    """Bring `session` back to a usable state after `exc` broke its transaction."""
    if interrupted(exc):
        session.invalidate()
    else:
        session.rollback()
