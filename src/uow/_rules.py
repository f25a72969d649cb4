"""Every rule of a unit of work, once, with no I/O: read this first.

A unit follows SQLAlchemy's `SessionTransaction` tree. Each level of it that can end on its own (the
root transaction, and each nested transaction, i.e. savepoint) has a [`Scope`][uow._rules.Scope]:
the hooks registered while it was the innermost level, the number that separates its domain events
from older ones, and whether a statement failed in it. What happens when a level ends is decided
here and performed by the listeners (`_listeners.py`) and the sync and async units (`_unit.py`):

| a level ends | its scope |
|---|---|
| nested, committed (RELEASE) | merges into its parent: hooks, failure |
| nested, rolled back | dropped: events forgotten, `on_rollback` hooks run, failure cleared |
| nested, RELEASE or ROLLBACK TO failed | the parent is marked failed: its work may be in the transaction |
| root, committed | events are dispatched, then the `on_commit` hooks run |
| root, ended otherwise | events are forgotten, `on_rollback` hooks run (not when the outcome is unknown) |

A unit refuses `commit()` while its root scope is marked failed (the partial-commit guard) and while a
nested transaction is open.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

from uow._errors import (
    CommitOutcomeUnknownError,
    HookError,
    InvalidArgumentError,
    StateError,
    UncommittedWorkWarning,
)
from uow._events import next_mark

logger = logging.getLogger("uow")

Hook = tuple[Callable[[], Any], bool]
"""A hook and whether it is robust (its failure is logged instead of raised)."""

ISOLATION_LEVELS = frozenset({"SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED", "READ UNCOMMITTED"})

active_units: ContextVar[int] = ContextVar("uow_active_units", default=0)
"""How many units are active in the current thread or task; durable units require none."""


class Options:
    """How a unit runs its transactions; checked once, when the unit is made, and never changed."""

    # A plain class: a frozen dataclass costs `import uow` about 4 million instructions.
    __slots__ = ("allow_async", "dispatch", "durable", "isolation_level", "read_only")

    def __init__(
        self,
        dispatch: Callable[[Any], Any] | None = None,
        isolation_level: str | None = None,
        read_only: bool = False,
        durable: bool = False,
        allow_async: bool = False,
    ) -> None:
        self.dispatch: Callable[[Any], Any] | None = dispatch
        self.isolation_level: str | None = isolation_level
        self.read_only: bool = read_only
        self.durable: bool = durable
        self.allow_async: bool = allow_async

    @property
    def binds(self) -> bool:
        """Whether the session's engine needs execution options for this unit."""
        return self.isolation_level is not None or self.read_only


_DEFAULTS = {False: Options(), True: Options(allow_async=True)}


def make_options(
    dispatch: Callable[[Any], Any] | None,
    isolation_level: str | None,
    read_only: bool,
    durable: bool,
    *,
    allow_async: bool,
) -> Options:
    """Check a unit's options; units with the defaults share one `Options`."""
    if dispatch is None and isolation_level is None and not read_only and not durable:
        return _DEFAULTS[allow_async]
    if dispatch is not None:
        if not callable(dispatch):
            raise InvalidArgumentError(f"dispatch must be a callable taking one event, got {dispatch!r}")
        if not allow_async and inspect.iscoroutinefunction(dispatch):
            raise InvalidArgumentError(
                f"dispatch {getattr(dispatch, '__qualname__', dispatch)!r} is a coroutine function: a "
                "UnitOfWork cannot await it; use AsyncUnitOfWork, or dispatch with a plain function"
            )
    if isolation_level is not None:
        level = isolation_level.upper().replace("_", " ")
        if level not in ISOLATION_LEVELS:
            raise InvalidArgumentError(
                f"isolation_level must be one of {', '.join(sorted(ISOLATION_LEVELS))}, "
                f"got {isolation_level!r} (AUTOCOMMIT is refused: a unit commits only when told to)"
            )
        isolation_level = level
    return Options(dispatch, isolation_level, bool(read_only), bool(durable), allow_async)


class Scope:
    """One level of a session's transaction tree: the root transaction or a savepoint."""

    __slots__ = ("failed", "flushed", "held", "mark", "on_commit", "on_rollback", "parent")

    def __init__(self, parent: Scope | None) -> None:
        self.parent: Scope | None = parent
        self.failed: bool = False
        self.flushed: bool = False
        """Whether changes were written in this level (and not rolled back with a savepoint)."""
        self.mark: int = 0 if parent is None else next_mark()
        """Events recorded with a greater number belong to this level (a savepoint) or a newer one;
        the root's events are all the session's, so the root needs no mark."""
        self.on_commit: list[Hook] = []
        self.on_rollback: list[Hook] = []
        self.held: bool = False
        """Whether this is the savepoint of a `unit.savepoint()` block, which alone may release it."""

    def absorb(self, child: Scope) -> None:
        """Take over the hooks and the failure of a child level that was released into this one."""
        self.failed = self.failed or child.failed
        self.flushed = self.flushed or child.flushed
        self.on_commit.extend(child.on_commit)
        self.on_rollback.extend(child.on_rollback)


# -- the block ----------------------------------------------------------------------------------


def interrupted(error: BaseException) -> bool:
    """Whether `error` may have cut a driver call short, leaving the connection in an unknown state.

    That is every `BaseException` that is not an `Exception`: cancellation, `KeyboardInterrupt`,
    `SystemExit`. Such a connection is invalidated (closed; the server rolls back) instead of being
    asked to roll back.
    """
    return not isinstance(error, Exception)


def cleanup_failure_wins(failure: BaseException, error: BaseException) -> bool:
    """Whether `failure`, raised while cleaning up after `error`, must propagate instead of `error`.

    An interruption (a cancellation above all) that arrives during the cleanup must reach the caller;
    any other failure is attached to `error` as a note.
    """
    return interrupted(failure) and not interrupted(error)


def enter_durable(durable: bool) -> Token[int]:
    """Count one more active unit in this thread or task; refuse a durable unit inside another."""
    depth = active_units.get()
    if durable and depth:
        raise StateError(
            "a durable unit of work must be the outermost one, but another unit is active in "
            "this thread or task; run the durable work outside it (for example from an "
            "on_commit hook), or drop durable=True"
        )
    return active_units.set(depth + 1)


def leave_durable(entered: Token[int] | None) -> None:
    """Count one active unit less, undoing the count made when it was entered."""
    if entered is None:
        return
    try:
        active_units.reset(entered)
    except ValueError:  # left in another context than it was entered in
        active_units.set(max(0, active_units.get() - 1))


@contextmanager
def outside_unit() -> Iterator[None]:
    """Run hooks and handlers as if the active unit were not there: they may open durable units."""
    token = active_units.set(max(0, active_units.get() - 1))
    try:
        yield
    finally:
        active_units.reset(token)


def unknown_outcome(error: BaseException, translated: BaseException | None) -> bool:
    """Whether a failed commit may have committed after all (so after-rollback hooks must not run)."""
    return interrupted(error) or isinstance(translated, CommitOutcomeUnknownError)


def check_hook(fn: object, *, allow_async: bool) -> None:
    if not callable(fn):
        raise InvalidArgumentError(f"a hook must be callable without arguments, got {fn!r}")
    if not allow_async and inspect.iscoroutinefunction(fn):
        raise InvalidArgumentError(
            f"{getattr(fn, '__qualname__', fn)!r} is a coroutine function: a UnitOfWork cannot await "
            "it; use AsyncUnitOfWork, or register a plain function"
        )


# -- what failures mean -------------------------------------------------------------------------


def hook_failed(
    fn: Callable[[], Any], robust: bool, exc: Exception, failures: list[Exception], stage: str
) -> None:
    """Log the failure of a robust hook; note and collect that of any other."""
    if robust:
        logger.exception(
            "robust %s hook %r failed; carrying on",
            stage,
            fn,
            extra={"uow_event": "hook_failed", "uow_hook_stage": stage},
        )
    else:
        exc.add_note(f"uow: raised by the {stage} hook {getattr(fn, '__qualname__', fn)!r}")
        failures.append(exc)


def hook_error(failures: list[Exception], *, committed: bool) -> HookError:
    outcome = "the data IS committed" if committed else "the work was rolled back"
    return HookError(
        f"{len(failures)} hook(s) or event handler(s) failed after the "
        f"{'commit' if committed else 'rollback'}; {outcome}",
        failures,
        committed=committed,
    )


def attach_failure(error: BaseException, failure: BaseException, during: str) -> None:
    """Record on `error` that `failure` happened while cleaning up after it; `error` wins."""
    error.add_note(f"uow: {during} after this error also failed: {failure!r}")
    logger.error(
        "%s failed while handling %r", during, error, exc_info=failure, extra={"uow_event": "cleanup_failed"}
    )


def attach_hook_failures(error: BaseException, failures: list[Exception]) -> None:
    for failure in failures:
        attach_failure(error, failure, "an after-rollback hook")


def skipped_rollback_hooks(count: int) -> None:
    logger.warning(
        "the commit was interrupted and its outcome is unknown: %d after-rollback hook(s) not run",
        count,
        extra={"uow_event": "hooks_skipped", "uow_outcome": "unknown"},
    )


def warn_uncommitted(discarded: str) -> None:
    warnings.warn(
        f"unit of work ended without commit(); rolled back {discarded}. "
        "Call unit.commit() to keep the work, or unit.rollback() to discard it explicitly.",
        UncommittedWorkWarning,
        stacklevel=3,
    )


# -- refusals -----------------------------------------------------------------------------------


def not_active(action: str) -> StateError:
    return StateError(
        f"{action} needs an active unit of work: call it inside 'with unit:' "
        "(a unit is active from entering its block until the block ends)"
    )


def already_active() -> StateError:
    return StateError(
        "this unit of work is already active: a unit runs one block at a time, in one thread or task; "
        "create another UnitOfWork for independent work, or finish this block first"
    )


def inside_savepoint(action: str) -> StateError:
    return StateError(
        f"{action} was called inside a savepoint (an open nested transaction), where it would end "
        "the savepoint too: leave the savepoint block first (raise an exception inside it to roll "
        "the savepoint back)"
    )


def partial_commit() -> StateError:
    return StateError(
        "commit() refused: a statement failed earlier in this transaction and its error was caught, so "
        "committing now could save only part of the work (MariaDB and SQLite undo just the failed "
        "statement, and a savepoint that failed to release may have left its work behind). Call "
        "unit.rollback(), or wrap statements that may fail in 'with unit.savepoint():'"
    )


def partial_savepoint() -> StateError:
    return StateError(
        "a statement failed inside this savepoint and its error was caught, so the savepoint's work "
        "is incomplete: it was rolled back instead of released. Let the error leave the savepoint "
        "block, or give the failing statement a savepoint of its own"
    )


def read_only_refusal(action: str) -> StateError:
    return StateError(
        f"this unit of work is read-only: {action} refused. "
        "Use a unit without read_only=True for writes, or discard the changes with rollback()"
    )


def implicit_commit_refusal() -> StateError:
    return StateError(
        "MySQL and MariaDB commit the open transaction before this statement (DDL, LOCK TABLES and a "
        "few others commit implicitly), which would break the unit's promise that nothing is "
        "committed before commit(): refused. Run schema changes outside a unit of work (for example "
        "with engine.begin() or your migration tool)"
    )
