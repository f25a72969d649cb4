"""The units of work: [`UnitOfWork`][uow.UnitOfWork] and [`AsyncUnitOfWork`][uow.AsyncUnitOfWork].

Both drive the same rules (`_rules.py`) and the same ledger (`_listeners.py`); they differ only in
how they call the database, and in the async unit's cancellation policy (`_cleanup_async`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, overload

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, SessionTransaction

from uow._async_repository import AsyncRepository, CallGuard
from uow._classify import translate
from uow._errors import InvalidArgumentError
from uow._listeners import (
    Ledger,
    attach,
    bind_with_options,
    detach,
    discard_connections,
    instrument,
    settle,
    uncommitted_work,
)
from uow._repository import ENDED_SESSION, Repository
from uow._retry import Loop, Retry
from uow._rules import (
    Options,
    already_active,
    attach_failure,
    attach_hook_failures,
    check_hook,
    cleanup_failure_wins,
    enter_durable,
    hook_error,
    inside_savepoint,
    interrupted,
    leave_durable,
    make_options,
    not_active,
    partial_commit,
    partial_savepoint,
    read_only_refusal,
    unknown_outcome,
    warn_uncommitted,
)
from uow._sqlite import check_savepoints

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction

__all__ = ["AsyncAttempt", "AsyncAttempts", "AsyncUnitOfWork", "Attempt", "Attempts", "UnitOfWork"]

T = TypeVar("T")
U = TypeVar("U", bound="_Unit")
R = TypeVar("R", bound=Repository[Any])
AR = TypeVar("AR", bound=AsyncRepository[Any])


class _Unit:
    """What the sync and async units share: state, options, checks and bookkeeping, no I/O."""

    __slots__ = (
        "_attempt",
        "_claim",
        "_depth",
        "_factory",
        "_ledger",
        "_options",
        "_repositories",
        "_session",
        "_sync",
    )

    def __init__(self, session_factory: Callable[[], Any], options: Options) -> None:
        if not callable(session_factory):
            raise InvalidArgumentError(
                f"a unit of work needs a session factory such as sessionmaker(engine), "
                f"got {session_factory!r}"
            )
        self._factory = session_factory
        self._options = options
        self._claim = threading.Lock()
        self._session: Any = None
        self._sync: Session | None = None
        self._ledger: Ledger | None = None
        self._repositories: dict[Any, Any] = {}
        self._depth: Token[int] | None = None
        self._attempt: int | None = None

    @property
    def active(self) -> bool:
        """Whether the unit is inside its block: between entering it and leaving it."""
        return self._session is not None

    @property
    def attempt(self) -> int | None:
        """The number of the current attempt (1, 2, ...) while run by `run()` or `attempts()`."""
        return self._attempt

    def __repr__(self) -> str:
        state = "active" if self._session is not None else "idle"
        return f"<{type(self).__name__} {state}>"

    # -- the block ------------------------------------------------------------------------------

    def _open(self, session_type: type[Any]) -> Any:
        """Claim the unit, count it, and open a session; nothing is left claimed on failure."""
        if not self._claim.acquire(blocking=False):  # atomic: one entry wins, every other is refused
            raise already_active()
        depth = None
        try:
            depth = enter_durable(self._options.durable)
            session = self._factory()
            if not isinstance(session, session_type):
                raise InvalidArgumentError(
                    f"the session factory of a {type(self).__name__} must return a "
                    f"{session_type.__module__}.{session_type.__name__}, got {type(session).__name__}"
                )
        except BaseException:
            leave_durable(depth)
            self._claim.release()
            raise
        self._depth = depth
        return session

    def _start(self, session: Any, sync: Session) -> None:
        options = self._options
        try:
            if options.binds:
                bind_with_options(sync, options.isolation_level, options.read_only)
            instrument(type(sync))
            ledger = Ledger(options)
            attach(sync, ledger)
        except BaseException:
            sync.close()  # holds no connection yet: closing needs no I/O
            self._end_claim()
            raise
        self._ledger = ledger
        self._repositories = {}
        self._sync = sync
        self._session = session

    def _leave(self, error: BaseException | None) -> tuple[Ledger, str | None]:
        """End the block's bookkeeping before its session closes; what was discarded, if real work."""
        ledger = self._ledger
        sync = self._sync
        assert ledger is not None
        assert sync is not None
        discarded = uncommitted_work(sync, ledger) if error is None else None
        ledger.deferring = True
        self._session = None
        if self._repositories:
            for repository in self._repositories.values():
                repository.session = ENDED_SESSION
            self._repositories = {}
        return ledger, discarded

    def _left(self, ledger: Ledger, error: BaseException | None, discarded: str | None) -> None:
        """After the session closed: free the unit, then report what the hooks and the exit found."""
        sync = self._sync
        if sync is not None:
            detach(sync)
        self._sync = None
        self._ledger = None
        self._end_claim()
        failures = ledger.take_failures()
        if error is not None:
            attach_hook_failures(error, failures)
            return
        if discarded is not None:
            warn_uncommitted(discarded)
        if failures:
            raise hook_error(failures, committed=False)

    def _end_claim(self) -> None:
        leave_durable(self._depth)
        self._depth = None
        self._claim.release()

    def _active(self, action: str) -> Any:
        session = self._session
        if session is None:
            raise not_active(action)
        return session

    # -- rules around the I/O -------------------------------------------------------------------

    def _check_commit(self, sync: Session) -> Ledger:
        ledger = self._ledger
        assert ledger is not None
        if sync.get_nested_transaction() is not None:
            raise inside_savepoint("commit()")
        if ledger.failed:
            raise partial_commit()
        if self._options.read_only and (sync.new or sync.dirty or sync.deleted):
            raise read_only_refusal("commit() with changes in the session was")
        ledger.deferring = True
        return ledger

    def _check_rollback(self, sync: Session) -> Ledger:
        ledger = self._ledger
        assert ledger is not None
        if sync.get_nested_transaction() is not None:
            raise inside_savepoint("rollback()")
        ledger.deferring = True
        return ledger

    def _failed_commit(self, ledger: Ledger, done: int, exc: BaseException) -> BaseException | None:
        """The error a failed `commit()` raises; `None` if it committed and was interrupted after."""
        if ledger.commits_done > done:
            return None
        translated = (
            translate(exc, commit_sent=ledger.committing) if isinstance(exc, sa_exc.DBAPIError) else None
        )
        ledger.unknown = unknown_outcome(exc, translated)
        return translated or exc

    def _failed(self, ledger: Ledger, error: BaseException) -> None:
        """After a failed commit or rollback of the unit: its hooks' failures become notes on `error`."""
        ledger.deferring = False
        attach_hook_failures(error, ledger.take_failures())

    def _finished(self, ledger: Ledger, *, committed: bool) -> None:
        """After a commit or rollback of the unit: raise what its hooks and handlers raised."""
        ledger.deferring = False
        failures = ledger.take_failures()
        if failures:
            raise hook_error(failures, committed=committed)

    def _register(self, action: str, fn: Callable[[], Any], robust: bool, *, rollback: bool) -> None:
        self._active(action)
        check_hook(fn, allow_async=self._options.allow_async)
        ledger = self._ledger
        assert ledger is not None
        scope = ledger.scope
        (scope.on_rollback if rollback else scope.on_commit).append((fn, robust))

    def _savepoint_scope(self) -> Any:
        ledger = self._ledger
        assert ledger is not None
        return ledger.scope

    # -- hooks ----------------------------------------------------------------------------------

    def on_commit(self, fn: Callable[[], object], *, robust: bool = False) -> None:
        """Run `fn()` once the current transaction has committed.

        Hooks run after the commit, exactly once, in the order they were registered, after the
        domain events were dispatched; a hook of an [`AsyncUnitOfWork`][uow.AsyncUnitOfWork] may be
        a coroutine function. They run whichever way the transaction commits: `unit.commit()`,
        `unit.session.commit()` or the end of `with unit.session.begin():`. A hook registered inside
        a savepoint is dropped if the savepoint rolls back; every hook is dropped if the transaction
        rolls back. A failing hook never undoes the commit and never stops the later hooks: the
        failures are raised together as a [`HookError`][uow.HookError] once all hooks ran, or, with
        `robust=True`, logged to the `uow` logger instead. A hook may open a unit of its own.

        Raises:
            StateError: The unit is not active.
            InvalidArgumentError: `fn` is not callable, or is a coroutine function given to a
                `UnitOfWork`.
        """
        self._register("on_commit()", fn, robust, rollback=False)

    def on_rollback(self, fn: Callable[[], object], *, robust: bool = False) -> None:
        """Run `fn()` when the work of the current transaction (or savepoint) is rolled back.

        It runs when the savepoint it was registered in rolls back (`unit.savepoint()` or
        `session.begin_nested()`), or when the transaction rolls back (`rollback()`, a failed
        commit, or leaving the block without committing); it is dropped once the transaction
        commits, and skipped (with a warning) when a commit's outcome is unknown. Failures are raised
        as a [`HookError`][uow.HookError] after all hooks ran, or attached as notes when an exception
        is already propagating; `robust=True` logs them instead.

        Raises:
            StateError: The unit is not active.
            InvalidArgumentError: `fn` is not callable, or is a coroutine function given to a
                `UnitOfWork`.
        """
        self._register("on_rollback()", fn, robust, rollback=True)


class UnitOfWork(_Unit):
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
        ledger, discarded = self._leave(exc)
        try:
            _cleanup(
                lambda error: _close(session, ledger, error), exc, exc, "rolling back and closing the session"
            )
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
                _cleanup(lambda cause: _recover(session, cause), exc, error, _RECOVERING)
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
                ledger.deferring = True
                _cleanup(lambda _: _roll_back(session, nested), exc, exc, "rolling back the savepoint")
                ledger.deferring = False
                attach_hook_failures(exc, ledger.take_failures())
            raise
        if scope.failed:
            ledger.deferring = True
            _roll_back(session, nested)
            ledger.deferring = False
            error = partial_savepoint()
            attach_hook_failures(error, ledger.take_failures())
            raise error
        try:
            nested.commit()
        except BaseException as exc:
            _cleanup(lambda _: _roll_back(session, nested), exc, exc, "rolling back the savepoint")
            translated = translate(exc) if isinstance(exc, sa_exc.DBAPIError) else None
            if translated is None:
                raise
            raise translated from exc

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


class AsyncUnitOfWork(_Unit):
    """The async twin of [`UnitOfWork`][uow.UnitOfWork], on an `AsyncSession`.

    ```python
    async with AsyncUnitOfWork(async_session) as unit:
        await unit.repository(User).add(User(id="7", name="hanmeimei"))
        await unit.commit()
    ```

    It keeps every rule of [`UnitOfWork`][uow.UnitOfWork]: nothing is committed implicitly, leaving the block
    or an exception rolls back, the same warning, errors, savepoints, hooks and events; hooks and the
    dispatcher may be coroutine functions. In addition:

    - Cancellation (`asyncio.CancelledError`, including from `asyncio.timeout`) anywhere in the
      block, during `commit()` or during exit invalidates the connection (it may have been cut
      off mid-statement; the server rolls back) and the cleanup runs to its end before the
      cancellation propagates. The connection is always returned to the pool. A cancellation that
      arrives while the unit cleans up after another error propagates as a cancellation.
    - One call at a time: starting `commit()`, `rollback()` or a repository method while
      another one of the same unit is still running (`asyncio.gather` over one unit) raises
      [`StateError`][uow.StateError]. Calls made one after another from different tasks are fine.
    - Objects stay loaded after a commit by default (`expire_on_commit=False`), because reading an
      expired attribute would need implicit I/O, which async code cannot do.
    """

    __slots__ = ("_expire_on_commit", "_guard")

    def __init__(
        self,
        session_factory: Callable[[], AsyncSession],
        *,
        expire_on_commit: bool | None = False,
        dispatch: Callable[[Any], Any] | None = None,
        isolation_level: str | None = None,
        read_only: bool = False,
        durable: bool = False,
    ) -> None:
        """Create a unit that opens its sessions with `session_factory`.

        Args:
            session_factory: An `async_sessionmaker`, or any callable
                taking no arguments that returns a new `AsyncSession`.
            expire_on_commit: Whether `commit()` expires the objects the session holds. The
                default, `False`, keeps them loaded, so that reading an attribute after a commit
                never needs the implicit I/O that async code cannot do; `True` expires them as
                plain SQLAlchemy does (reload them with `await unit.session.refresh(obj)`);
                `None` keeps whatever the factory's sessions are configured with.
            dispatch: As for [`UnitOfWork`][uow.UnitOfWork]; may be a coroutine function.
            isolation_level: As for [`UnitOfWork`][uow.UnitOfWork].
            read_only: As for [`UnitOfWork`][uow.UnitOfWork].
            durable: As for [`UnitOfWork`][uow.UnitOfWork].

        Raises:
            InvalidArgumentError: `session_factory` is not callable, or an option is invalid.
        """
        super().__init__(
            session_factory, make_options(dispatch, isolation_level, read_only, durable, allow_async=True)
        )
        self._guard = CallGuard()
        self._expire_on_commit = expire_on_commit

    async def __aenter__(self) -> Self:
        from sqlalchemy.ext.asyncio import AsyncSession

        session: AsyncSession = self._open(AsyncSession)
        sync = session.sync_session
        if self._expire_on_commit is not None:
            sync.expire_on_commit = self._expire_on_commit
        self._guard = CallGuard()
        self._start(session, sync)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        session: AsyncSession | None = self._session
        if session is None:
            return
        ledger, discarded = self._leave(exc)
        try:
            await _cleanup_async(
                lambda error: _close_async(session, ledger, error),
                exc,
                exc,
                "rolling back and closing the session",
            )
        except BaseException as failure:
            self._left(ledger, failure, None)
            raise
        self._left(ledger, exc, discarded)

    @property
    def session(self) -> AsyncSession:
        """The live async session of the active block.

        Raises:
            StateError: The unit is not active.
        """
        session: AsyncSession = self._active("unit.session")
        return session

    async def commit(self) -> None:
        """Flush pending changes and commit the transaction; see `UnitOfWork.commit()`.

        If the commit is cancelled, whether it reached the database is unknown: the connection is
        invalidated and the cancellation propagates.

        Raises:
            StateError: As for `UnitOfWork.commit()`, or another call of this unit is still
                running.
        """
        session: AsyncSession = self._active("commit()")
        with self._guard.call("commit()"):
            ledger = self._check_commit(session.sync_session)
            done = ledger.commits_done
            try:
                await session.flush()  # first: a failure now is known not to have reached COMMIT
                await session.commit()
            except BaseException as exc:
                error = self._failed_commit(ledger, done, exc)
                if error is not None:
                    await _cleanup_async(
                        lambda cause: _recover_async(session, cause),
                        exc,
                        error,
                        "rolling back the failed commit",
                    )
                self._failed(ledger, error or exc)
                if error is None or error is exc:
                    raise
                raise error from exc
        self._finished(ledger, committed=True)

    async def rollback(self) -> None:
        """Discard pending changes and roll back the transaction; see `UnitOfWork.rollback()`.

        Raises:
            StateError: The unit is not active, a savepoint is open, or another call of this unit is
                still running.
            HookError: An after-rollback hook failed (after all of them ran).
        """
        session: AsyncSession = self._active("rollback()")
        with self._guard.call("rollback()"):
            ledger = self._check_rollback(session.sync_session)
            try:
                await session.rollback()
                if ledger.pending:
                    await session.run_sync(settle, ledger)
            except BaseException as exc:
                if interrupted(exc):  # cut off mid-rollback: the connection's state is unknown
                    await _cleanup_async(
                        lambda _: session.invalidate(), exc, exc, "invalidating the connection"
                    )
                self._failed(ledger, exc)
                raise
        self._finished(ledger, committed=False)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A nested transaction: `async with unit.savepoint():`; see `UnitOfWork.savepoint()`."""
        session: AsyncSession = self._active("savepoint()")
        with self._guard.call("savepoint()"):
            await session.run_sync(check_savepoints)
            nested = await session.begin_nested()
        scope = self._savepoint_scope()
        ledger = self._ledger
        assert ledger is not None
        try:
            yield
        except BaseException as exc:
            if not interrupted(exc):
                ledger.deferring = True
                await _cleanup_async(
                    lambda _: _roll_back_async(session, nested), exc, exc, "rolling back the savepoint"
                )
                ledger.deferring = False
                attach_hook_failures(exc, ledger.take_failures())
            raise
        if scope.failed:
            ledger.deferring = True
            await _roll_back_async(session, nested)
            ledger.deferring = False
            error = partial_savepoint()
            attach_hook_failures(error, ledger.take_failures())
            raise error
        try:
            await nested.commit()
        except BaseException as exc:
            await _cleanup_async(
                lambda _: _roll_back_async(session, nested), exc, exc, "rolling back the savepoint"
            )
            translated = translate(exc) if isinstance(exc, sa_exc.DBAPIError) else None
            if translated is None:
                raise
            raise translated from exc

    def attempts(self, retry: Retry | None = None) -> AsyncAttempts:
        """The attempts of this unit's work: `async for attempt in unit.attempts(retry):`.

        `async with attempt as unit:` runs one; see `UnitOfWork.attempts()`.

        Raises:
            StateError: The unit is active already.
        """
        if self._session is not None:
            raise already_active()
        return AsyncAttempts(self, retry if retry is not None else Retry())

    async def run(self, work: Callable[[Self], Awaitable[T]], *, retry: Retry | None = None) -> T:
        """Await `work(unit)` in this unit, again after transient failures; see `UnitOfWork.run()`."""
        async for attempt in self.attempts(retry):
            async with attempt:
                return await work(self)
        raise AssertionError("a retry loop ends by returning or raising")  # pragma: no cover

    @overload
    def repository(self, target: type[AR]) -> AR: ...
    @overload
    def repository(self, target: type[T]) -> AsyncRepository[T]: ...
    def repository(self, target: type[Any]) -> AsyncRepository[Any]:
        """The async repository for `target` in this block, created on first use.

        `target` is a mapped class (giving an [`AsyncRepository`][uow.AsyncRepository] of it) or a subclass of
        [`AsyncRepository`][uow.AsyncRepository]. Within one block the same `target` gives the same instance.

        Raises:
            StateError: The unit is not active.
            InvalidArgumentError: `target` is neither a mapped class nor a repository class.
        """
        repository = self._repositories.get(target)
        if repository is not None:
            return repository  # type: ignore[no-any-return]  # the cache holds what was built below
        session = self._active("repository()")
        if isinstance(target, type) and issubclass(target, AsyncRepository):
            repository = target(session, _guard=self._guard)
        else:
            repository = AsyncRepository(session, target, _guard=self._guard)
        self._repositories[target] = repository
        return repository


# -- retries ------------------------------------------------------------------------------------


class _AttemptBase(Generic[U]):
    __slots__ = ("_loop", "_unit", "number")

    def __init__(self, unit: U, loop: Loop) -> None:
        self._unit = unit
        self._loop = loop
        self.number = loop.next()
        """This attempt's number: 1 for the first."""

    @property
    def failure(self) -> BaseException | None:
        """The transient error that ended this attempt, to be retried; `None` otherwise."""
        return self._loop.failure if self._loop.number == self.number else None

    def _entered(self) -> None:
        self._unit._attempt = self.number

    def _leaving(self) -> tuple[bool, bool]:
        """Whether this attempt committed, and whether a COMMIT of it was cut off."""
        unit = self._unit
        unit._attempt = None
        ledger = unit._ledger
        if ledger is None:
            return False, False
        return ledger.commits_done > 0, ledger.commits_started > ledger.commits_done


class Attempt(_AttemptBase["UnitOfWork"]):
    """One attempt of a unit run with retries; `with attempt as unit:` runs it.

    A transient error that ends the block is swallowed and the loop goes on to the next attempt;
    anything else propagates at once.
    """

    __slots__ = ()

    def __enter__(self) -> UnitOfWork:
        unit = self._unit.__enter__()
        self._entered()
        return unit

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        committed, in_flight = self._leaving()
        self._unit.__exit__(exc_type, exc, traceback)
        return self._loop.ended(exc, committed=committed, in_flight=in_flight)


class AsyncAttempt(_AttemptBase["AsyncUnitOfWork"]):
    """One attempt of an async unit run with retries; `async with attempt as unit:` runs it."""

    __slots__ = ()

    async def __aenter__(self) -> AsyncUnitOfWork:
        unit = await self._unit.__aenter__()
        self._entered()
        return unit

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        committed, in_flight = self._leaving()
        await self._unit.__aexit__(exc_type, exc, traceback)
        return self._loop.ended(exc, committed=committed, in_flight=in_flight)


class Attempts:
    """The attempts of a unit run with retries: `for attempt in unit.attempts(retry): ...`."""

    __slots__ = ("_loop", "_unit")

    def __init__(self, unit: UnitOfWork, retry: Retry) -> None:
        self._unit = unit
        self._loop = Loop(retry)

    def __iter__(self) -> Attempts:
        return self

    def __next__(self) -> Attempt:
        delay = self._loop.pause()
        if delay is None:
            raise StopIteration
        if delay:
            self._loop.retry.sleep(delay)
        return Attempt(self._unit, self._loop)


class AsyncAttempts:
    """The attempts of an async unit: `async for attempt in unit.attempts(retry): ...`."""

    __slots__ = ("_loop", "_unit")

    def __init__(self, unit: AsyncUnitOfWork, retry: Retry) -> None:
        self._unit = unit
        self._loop = Loop(retry)

    def __aiter__(self) -> AsyncAttempts:
        return self

    async def __anext__(self) -> AsyncAttempt:
        delay = self._loop.pause()
        if delay is None:
            raise StopAsyncIteration
        if delay:
            await self._loop.retry.async_sleep(delay)
        return AsyncAttempt(self._unit, self._loop)


_CLOSING = "rolling back and closing the session"
_RECOVERING = "rolling back the failed commit"

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


async def _cleanup_async(
    step: Callable[[BaseException | None], Coroutine[Any, Any, None]],
    cause: BaseException | None,
    error: BaseException | None,
    during: str,
) -> None:
    """As `_cleanup`, under the async unit's cancellation policy: the whole policy is here.

    A cleanup after an error runs to its end even if the task is cancelled meanwhile, and the
    cancellation is raised once it is over (the caller never carries on while a connection is on its
    way back to the pool). A cleanup after no error is awaited directly; if it is cancelled, it is
    redone as after an interruption (invalidating the connection) and the cancellation propagates.
    """
    if error is None:
        try:
            await step(None)
        except asyncio.CancelledError as cancelled:
            await _finish(step(cancelled))
            raise
        return
    try:
        await _finish(step(cause))
    except BaseException as failure:
        if cleanup_failure_wins(failure, error):
            raise
        attach_failure(error, failure, during)


async def _finish(cleanup: Coroutine[Any, Any, None]) -> None:
    """Run `cleanup` to its end even if the calling task is cancelled meanwhile, then re-raise that."""
    task = asyncio.ensure_future(cleanup)
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            if task.done():
                raise
            cancelled = exc
        else:
            break
    if cancelled is not None:
        raise cancelled


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


async def _close_async(session: AsyncSession, ledger: Ledger, error: BaseException | None) -> None:
    try:
        if error is not None and interrupted(error):
            await session.invalidate()
        else:
            await session.close()
    except BaseException:
        await session.run_sync(discard_connections)
        raise
    if ledger.pending:
        await session.run_sync(settle, ledger)


def _recover(session: Session, error: BaseException | None) -> None:
    """Bring `session` back to a usable state after `error` broke its transaction."""
    if error is not None and interrupted(error):
        session.invalidate()
    else:
        session.rollback()


async def _recover_async(session: AsyncSession, error: BaseException | None) -> None:
    if error is not None and interrupted(error):
        await session.invalidate()
    else:
        await session.rollback()


def _is_open(session: Session, nested: SessionTransaction) -> bool:
    transaction = session.get_nested_transaction()
    while transaction is not None:
        if transaction is nested:
            return True
        transaction = transaction.parent
    return False


def _roll_back(session: Session, nested: SessionTransaction) -> None:
    """Roll back to the savepoint of `nested`, unless it already ended."""
    if _is_open(session, nested):
        nested.rollback()


async def _roll_back_async(session: AsyncSession, nested: AsyncSessionTransaction) -> None:
    transaction = nested.sync_transaction
    if transaction is not None and _is_open(session.sync_session, transaction):
        await nested.rollback()
