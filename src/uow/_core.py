"""The rules every unit follows, shared by the sync and the async flavour; only the I/O differs."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from contextvars import Token
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.orm import Session

from uow._errors import (
    CommitOutcomeUnknownError,
    InvalidArgumentError,
    StateError,
    UncommittedWorkWarning,
)
from uow._events import drop, take
from uow._repository import ENDED_SESSION
from uow._session import UNIT, bind_with_options, instrument, read_only_refusal, refuse_writes
from uow._transaction import Frame, Frames, Options, active_units, check_hook, leave_unit, make_options

logger = logging.getLogger("uow")

_MYSQL_DIALECTS = frozenset({"mysql", "mariadb"})


def interrupted(error: BaseException) -> bool:
    """Whether `error` may have cut a driver call short, leaving the connection in an unknown state.

    That is every `BaseException` that is not an `Exception`: cancellation, `KeyboardInterrupt`,
    `SystemExit`. Such a connection is invalidated (closed; the server rolls back) instead of being
    asked to roll back.
    """
    return not isinstance(error, Exception)


def warn_uncommitted(discarded: str) -> None:
    warnings.warn(
        f"unit of work ended without commit(); rolled back {discarded}. "
        "Call unit.commit() to keep the work, or unit.rollback() to discard it explicitly.",
        UncommittedWorkWarning,
        stacklevel=3,
    )


def attach_failure(error: BaseException, failure: BaseException, during: str) -> None:
    """Record on `error` that `failure` happened while cleaning up after it; `error` wins."""
    error.add_note(f"uow: {during} after this error also failed: {failure!r}")
    logger.error("%s failed while handling %r", during, error, exc_info=failure)


def attach_hook_failures(error: BaseException, failures: list[Exception]) -> None:
    for failure in failures:
        attach_failure(error, failure, "an after-rollback hook")


def not_active(action: str) -> StateError:
    return StateError(
        f"{action} needs an active unit of work: call it inside 'with unit:' "
        "(a unit is active from entering its block until the block ends)"
    )


def already_active() -> StateError:
    return StateError(
        "this unit of work is already active: a unit runs one block at a time; "
        "create another UnitOfWork for independent work, or finish this block first"
    )


def _inside_savepoint(action: str) -> StateError:
    return StateError(
        f"{action} was called inside a savepoint block, where it would end the savepoint too: "
        "leave the savepoint block first (raise an exception inside it to roll the savepoint back)"
    )


def unknown_outcome(exc: BaseException, translated: BaseException | None) -> bool:
    """Whether a failed commit may have committed after all (so after-rollback hooks must not run)."""
    return interrupted(exc) or isinstance(translated, CommitOutcomeUnknownError)


def skip_rollback_hooks(root: Frame | None) -> None:
    if root is not None and root.on_rollback:
        logger.warning(
            "the commit was interrupted and its outcome is unknown: %d after-rollback hook(s) not run",
            len(root.on_rollback),
        )


def partial_commit() -> StateError:
    return StateError(
        "commit() refused: a statement failed earlier in this unit and its error was caught, so "
        "committing now could save only part of the work (MariaDB and SQLite undo just the failed "
        "statement). Call unit.rollback(), or wrap statements that may fail in 'with unit.savepoint():'"
    )


def partial_savepoint() -> StateError:
    return StateError(
        "a statement failed inside this savepoint and its error was caught, so the savepoint's work "
        "is incomplete: it was rolled back instead of released. Let the error leave the savepoint "
        "block, or give the failing statement a savepoint of its own"
    )


class UnitCore:
    """State and rules shared by the sync and async units; only the I/O differs between them."""

    __slots__ = (
        "_attempt",
        "_commits_done",
        "_commits_sent",
        "_depth",
        "_factory",
        "_frames",
        "_options",
        "_repositories",
        "_session",
        "_sync",
    )

    def __init__(
        self,
        session_factory: Callable[[], Any],
        dispatch: Callable[[Any], Any] | None,
        isolation_level: str | None,
        read_only: bool,
        durable: bool,
        *,
        allow_async: bool,
    ) -> None:
        if not callable(session_factory):
            raise InvalidArgumentError(
                f"a unit of work needs a session factory such as sessionmaker(engine), "
                f"got {session_factory!r}"
            )
        self._factory = session_factory
        self._options: Options = make_options(
            dispatch, isolation_level, read_only, durable, allow_async=allow_async
        )
        self._session: Any = None
        self._sync: Session | None = None
        self._frames: Frames | None = None
        self._repositories: dict[Any, Any] = {}
        self._depth: Token[int] | None = None
        self._commits_sent = 0
        self._commits_done = 0
        self._attempt: int | None = None

    @property
    def active(self) -> bool:
        """Whether the unit is inside its block: between entering it and leaving it."""
        return self._session is not None

    @property
    def attempt(self) -> int | None:
        """The number of the current attempt (1, 2, ...) while run by `run()` or `attempts()`."""
        return self._attempt

    @property
    def _read_only(self) -> bool:
        return self._options.read_only

    def __repr__(self) -> str:
        state = "active" if self._session is not None else "idle"
        return f"<{type(self).__name__} {state}>"

    # -- the block ------------------------------------------------------------------------------

    def _open(self, session_type: type[Any]) -> Any:
        if self._session is not None:
            raise already_active()
        depth = active_units.get()
        if self._options.durable and depth:
            raise StateError(
                "a durable unit of work must be the outermost one, but another unit is active in "
                "this thread or task; run the durable work outside it (for example from an "
                "on_commit hook), or drop durable=True"
            )
        session = self._factory()
        if not isinstance(session, session_type):
            raise InvalidArgumentError(
                f"the session factory of a {type(self).__name__} must return a "
                f"{session_type.__module__}.{session_type.__name__}, got {type(session).__name__}"
            )
        return session

    def _start(self, session: Any, sync: Session) -> None:
        options = self._options
        if options.isolation_level is not None or options.read_only:
            try:
                bind_with_options(sync, options.isolation_level, options.read_only)
            except BaseException:
                sync.close()  # holds no connection yet: closing needs no I/O
                raise
        instrument(type(sync))
        sync.info[UNIT] = self
        if options.read_only:
            event.listen(sync, "do_orm_execute", refuse_writes)
        self._depth = active_units.set(active_units.get() + 1)
        self._repositories = {}
        self._frames = None
        self._commits_sent = 0
        self._commits_done = 0
        self._sync = sync
        self._session = session

    def _release(self) -> tuple[Any, Frames | None]:
        session = self._session
        frames = self._frames
        self._session = None
        self._frames = None
        sync = self._sync
        self._sync = None
        if sync is not None:
            sync.info.pop(UNIT, None)
        if self._repositories:
            for repository in self._repositories.values():
                repository.session = ENDED_SESSION
            self._repositories = {}
        leave_unit(self._depth)
        self._depth = None
        return session, frames

    def _active(self, action: str) -> Any:
        session = self._session
        if session is None:
            raise not_active(action)
        return session

    def _frames_of_block(self) -> Frames:
        frames = self._frames
        if frames is None:
            frames = self._frames = Frames()
        return frames

    # -- called by the session's listeners ------------------------------------------------------

    def _began(self, connection: Connection) -> None:
        if self._options.read_only and connection.dialect.name in _MYSQL_DIALECTS:
            connection.exec_driver_sql("SET TRANSACTION READ ONLY")

    def _statement_failed(self, session: Session) -> None:
        if session is self._sync:
            self._frames_of_block().top.failed = True

    # -- rules ----------------------------------------------------------------------------------

    def _check_commit(self, sync: Session) -> list[object] | None:
        """Refuse a commit that would be wrong; take the events it will dispatch."""
        frames = self._frames
        if frames is not None:
            if frames.in_savepoint:
                raise _inside_savepoint("commit()")
            if frames.failed:
                raise partial_commit()
        if self._options.read_only and (sync.new or sync.dirty or sync.deleted):
            raise read_only_refusal("commit() with changes in the session was")
        if self._options.dispatch is None:
            return None
        return take(sync)

    def _check_rollback(self, sync: Session) -> None:
        frames = self._frames
        if frames is not None and frames.in_savepoint:
            raise _inside_savepoint("rollback()")
        self._drop_events(sync)

    def _drop_events(self, sync: Session, after: int = 0) -> None:
        if self._options.dispatch is not None:
            drop(sync, after)

    def _end_transaction(self) -> Frame | None:
        frames = self._frames
        return frames.end() if frames is not None else None

    def _register(self, action: str, fn: Callable[[], Any], robust: bool, *, allow_async: bool) -> Frame:
        self._active(action)
        check_hook(fn, allow_async=allow_async)
        return self._frames_of_block().top
