"""What the sync and async units share: state, checks and bookkeeping around the ledger, no I/O.

[`UnitOfWork`][uow.UnitOfWork] (`_unit.py`) and [`AsyncUnitOfWork`][uow.AsyncUnitOfWork]
(`_async_unit.py`) subclass [`UnitBase`][uow._base.UnitBase] and add only their I/O; the attempts
of `run()` and `attempts()` are here too, for both flavours.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import Token
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, SessionTransaction

from uow import _observe
from uow._classify import translate
from uow._errors import InvalidArgumentError
from uow._listeners import Ledger, attach, bind_with_options, detach, uncommitted_work
from uow._observe import DEBUG, LEVELS, RunWatch, open_block, open_run
from uow._repository import ENDED_SESSION
from uow._retry import Loop, Retry
from uow._rules import (
    Options,
    already_active,
    attach_hook_failures,
    check_hook,
    enter_durable,
    hook_error,
    inside_savepoint,
    leave_durable,
    not_active,
    partial_commit,
    read_only_refusal,
    unknown_outcome,
    warn_uncommitted,
)

__all__ = [
    "CLOSING",
    "RECOVERING",
    "AsyncAttempt",
    "AsyncAttempts",
    "Attempt",
    "Attempts",
    "UnitBase",
    "to_undo",
]

CLOSING = "rolling back and closing the session"
RECOVERING = "rolling back the failed commit"


class UnitBase:
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

    def _enter(self, session_type: type[Any]) -> Any:
        """Claim the unit, count it, open a session and start its ledger; nothing is left on failure."""
        if not self._claim.acquire(blocking=False):  # atomic: one entry wins, every other is refused
            raise already_active()
        options = self._options
        depth = None
        try:
            depth = enter_durable(options.durable)
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
        sync: Session = session.sync_session if options.allow_async else session
        try:
            if options.isolation_level is not None or options.read_only:  # options.binds, inlined
                bind_with_options(sync, options.isolation_level, options.read_only)
            ledger = Ledger(options)
            attach(sync, ledger)
            try:  # whether anything watches the block, without a call while nothing does
                watched = LEVELS[DEBUG] or _observe.observer is not None
            except KeyError:  # logging's cache was cleared by a change of level: open_block refills it
                watched = True
            if watched:
                ledger.watch = open_block(sync, self._attempt, "async" if options.allow_async else "sync")
        except BaseException:
            sync.close()  # holds no connection yet: closing needs no I/O
            self._end_claim()
            raise
        self._ledger = ledger  # _repositories is empty: made so by __init__, emptied by _leave
        self._sync = sync
        self._session = session
        return session

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
        failures = ledger.failures
        raised = hook_error(failures, committed=False) if failures and error is None else None
        if ledger.watch is not None:
            ledger.watch.exited(error or raised, discarded)
        if error is not None:
            attach_hook_failures(error, failures)
            return
        if discarded is not None:
            warn_uncommitted(discarded)
        if raised is not None:
            raise raised

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
        scope = ledger.scope
        if scope.failed or (scope.parent is not None and ledger.failed):  # the walk only if it can matter
            raise partial_commit()
        if self._options.read_only and (sync.new or sync.dirty or sync.deleted):
            raise read_only_refusal("commit() with changes in the session was")
        ledger.deferring = True
        if ledger.watch is not None:  # the commit starts with the unit's flush
            ledger.watch.commit_started()
        return ledger

    def _check_rollback(self, sync: Session) -> Ledger:
        ledger = self._ledger
        assert ledger is not None
        if sync.get_nested_transaction() is not None:
            raise inside_savepoint("rollback()")
        ledger.deferring = True
        if ledger.watch is not None:
            ledger.watch.rolling_back()
        return ledger

    def _failed_commit(self, ledger: Ledger, done: int, exc: BaseException) -> BaseException | None:
        """The error a failed `commit()` raises; `None` if it committed and was interrupted after."""
        if ledger.commits_done > done:
            return None
        translated = (
            translate(exc, commit_sent=ledger.committing) if isinstance(exc, sa_exc.SQLAlchemyError) else None
        )
        ledger.unknown = unknown_outcome(exc, translated)
        if ledger.watch is not None:
            ledger.watch.commit_failed(translated or exc, unknown=ledger.unknown)
        return translated or exc

    def _defer(self) -> None:
        """The unit takes over raising what the hooks of the SQLAlchemy call it makes now raise."""
        ledger = self._ledger
        assert ledger is not None
        ledger.deferring = True

    def _failed(self, ledger: Ledger, error: BaseException) -> None:
        """After a failed commit or rollback of the unit: its hooks' failures become notes on `error`."""
        ledger.deferring = False
        attach_hook_failures(error, ledger.take_failures())

    def _finished(self, ledger: Ledger, *, committed: bool) -> None:
        """After a commit or rollback of the unit: raise what its hooks and handlers raised."""
        ledger.deferring = False
        if ledger.failures:
            raise hook_error(ledger.take_failures(), committed=committed)

    def _register(self, action: str, fn: Callable[[], Any], robust: bool, *, rollback: bool) -> None:
        self._active(action)
        check_hook(fn, allow_async=self._options.allow_async)
        ledger = self._ledger
        assert ledger is not None
        scope = ledger.scope
        (scope.on_rollback if rollback else scope.on_commit).append((fn, robust))

    def _savepoint_scope(self) -> Any:
        """The scope of the savepoint a `savepoint()` block just began, held by the block until it ends."""
        ledger = self._ledger
        assert ledger is not None
        scope = ledger.scope
        scope.held = True
        return scope

    def _releasing(self, scope: Any, sync: Session, nested: SessionTransaction | None) -> bool:
        """After a savepoint block ended normally: whether its savepoint is there to release.

        It is gone if `unit.session.rollback()` ran inside the block; then nothing is released.
        """
        scope.held = False
        return nested is not None and is_open(sync, nested)

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


U = TypeVar("U", bound=UnitBase)
S = TypeVar("S", bound=Any)
A = TypeVar("A", bound=Any)


# -- retries ------------------------------------------------------------------------------------


class _Run:
    """What the sync and async attempt iterators share: the unit, the loop, and the loop's watch."""

    __slots__ = ("_loop", "_unit", "watch")

    def __init__(self, unit: Any, retry: Retry) -> None:
        self._unit = unit
        self._loop = Loop(retry)
        self.watch: RunWatch | None = None
        """Who watches the loop (`_observe.py`); set as its first attempt starts, if anything does."""

    def _pause(self) -> float | None:
        """The pause before the next attempt, as `Loop.pause()` says; the watch hears of it."""
        loop = self._loop
        watch = self.watch
        try:
            delay = loop.pause()
        except BaseException as error:
            if watch is not None:
                watch.exhausted(error)
            raise
        if watch is not None and delay is not None and loop.number:
            watch.retrying(loop.number, loop.failure, delay)
        return delay


class _AttemptBase(Generic[U]):
    """What the sync and async attempts share: the number, the loop, the unit's bookkeeping."""

    __slots__ = ("_loop", "_previous", "_run", "_unit", "number")

    def __init__(self, unit: U, run: _Run) -> None:
        self._unit = unit
        self._run = run
        self._loop = run._loop
        self._previous: int | None = None
        self.number: int = self._loop.next()
        """This attempt's number: 1 for the first."""

    @property
    def failure(self) -> BaseException | None:
        """The transient error that ended this attempt, to be retried; `None` otherwise."""
        return self._loop.failure if self._loop.number == self.number else None

    def _entering(self) -> None:
        """Before the unit's block opens: number it (its watch reads the number), and tell the loop's."""
        unit = self._unit
        self._previous = unit._attempt
        unit._attempt = self.number
        run = self._run
        if self.number == 1:
            run.watch = open_run("async" if unit._options.allow_async else "sync")
        if run.watch is not None:
            run.watch.attempt_entering(self.number)

    def _entered(self) -> None:
        watch = self._run.watch
        if watch is not None:
            ledger = self._unit._ledger
            watch.attempt_entered(None if ledger is None else ledger.watch)

    def _not_entered(self, error: BaseException) -> None:
        self._unit._attempt = self._previous
        self._not_ended(error)

    def _leaving(self) -> tuple[bool, bool]:
        """Whether this attempt committed, and whether a COMMIT of it was cut off."""
        unit = self._unit
        unit._attempt = None
        ledger = unit._ledger
        if ledger is None:
            return False, False
        return ledger.commits_done > 0, ledger.commits_started > ledger.commits_done

    def _ended(self, error: BaseException | None, *, committed: bool, in_flight: bool) -> bool:
        """Whether the error that ended the attempt is swallowed for another attempt."""
        retried = self._loop.ended(error, committed=committed, in_flight=in_flight)
        watch = self._run.watch
        if watch is not None:
            watch.attempt_ended(error, retried=retried)
        return retried

    def _not_ended(self, error: BaseException) -> None:
        """The attempt's block could not be entered or left: `error` propagates, the loop is over."""
        watch = self._run.watch
        if watch is not None:
            watch.attempt_ended(error, retried=False)


class Attempt(_AttemptBase[S]):
    """One attempt of a unit run with retries; `with attempt as unit:` runs it.

    A transient error that ends the block is swallowed and the loop goes on to the next attempt;
    anything else propagates at once.
    """

    __slots__ = ()

    def __enter__(self) -> S:
        self._entering()
        try:
            self._unit.__enter__()
        except BaseException as error:
            self._not_entered(error)
            raise
        self._entered()
        return self._unit

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        committed, in_flight = self._leaving()
        try:
            self._unit.__exit__(exc_type, exc, traceback)
        except BaseException as failure:
            self._not_ended(failure)
            raise
        return self._ended(exc, committed=committed, in_flight=in_flight)


class AsyncAttempt(_AttemptBase[A]):
    """One attempt of an async unit run with retries; `async with attempt as unit:` runs it."""

    __slots__ = ()

    async def __aenter__(self) -> A:
        self._entering()
        try:
            await self._unit.__aenter__()
        except BaseException as error:
            self._not_entered(error)
            raise
        self._entered()
        return self._unit

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        committed, in_flight = self._leaving()
        try:
            await self._unit.__aexit__(exc_type, exc, traceback)
        except BaseException as failure:
            self._not_ended(failure)
            raise
        return self._ended(exc, committed=committed, in_flight=in_flight)


class Attempts(_Run, Generic[S]):
    """The attempts of a unit run with retries: `for attempt in unit.attempts(retry): ...`."""

    __slots__ = ()

    def __init__(self, unit: S, retry: Retry) -> None:
        super().__init__(unit, retry)

    def __iter__(self) -> Attempts[S]:
        return self

    def __next__(self) -> Attempt[S]:
        delay = self._pause()
        if delay is None:
            raise StopIteration
        if delay:
            self._loop.retry.sleep(delay)
        return Attempt(self._unit, self)


class AsyncAttempts(_Run, Generic[A]):
    """The attempts of an async unit: `async for attempt in unit.attempts(retry): ...`."""

    __slots__ = ()

    def __init__(self, unit: A, retry: Retry) -> None:
        super().__init__(unit, retry)

    def __aiter__(self) -> AsyncAttempts[A]:
        return self

    async def __anext__(self) -> AsyncAttempt[A]:
        delay = self._pause()
        if delay is None:
            raise StopAsyncIteration
        if delay:
            await self._loop.retry.async_sleep(delay)
        return AsyncAttempt(self._unit, self)


def is_open(session: Session, nested: SessionTransaction) -> bool:
    """Whether the savepoint of `nested` is still one of the session's open levels."""
    transaction = session.get_nested_transaction()
    while transaction is not None:
        if transaction is nested:
            return True
        transaction = transaction.parent
    return False


def to_undo(session: Session, nested: SessionTransaction) -> Literal["savepoint", "transaction"] | None:
    """What undoes the work of the block of `unit.savepoint()` over `nested`, when it raised.

    The savepoint, while it is open. If it ended inside the block (`unit.session.rollback()` rolls
    back the whole transaction, savepoints included), a transaction begun since was begun inside
    the block, so all of its work is the block's: the transaction. `None`: nothing to undo.
    """
    if is_open(session, nested):
        return "savepoint"
    current = session.get_transaction()
    if current is None:
        return None
    root = nested
    while root.parent is not None:
        root = root.parent
    return None if current is root else "transaction"
