"""The rules of a unit's transaction that do not touch I/O: frames, hooks, options, failures.

A block's transaction is a stack of frames: the root, and one more for each open savepoint. Each
frame owns the hooks registered while it was on top and remembers whether a statement failed in
it. Releasing a savepoint merges its frame into the one below; rolling it back discards the frame.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

from uow._errors import HookError, InvalidArgumentError, StateError
from uow._events import next_mark

logger = logging.getLogger("uow")

Hook = tuple[Callable[[], Any], bool]
"""A hook and whether it is robust (its failure is logged instead of raised)."""

ISOLATION_LEVELS = frozenset({"SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED", "READ UNCOMMITTED"})

active_units: ContextVar[int] = ContextVar("uow_active_units", default=0)
"""How many units are active in the current thread or task; durable units require none."""


@dataclass(frozen=True, slots=True)
class Options:
    """How a unit runs its transactions; checked once, when the unit is made."""

    dispatch: Callable[[Any], Any] | None = None
    isolation_level: str | None = None
    read_only: bool = False
    durable: bool = False

    @property
    def binds(self) -> bool:
        """Whether the session's engine needs execution options for this unit."""
        return self.isolation_level is not None or self.read_only


def make_options(
    dispatch: Callable[[Any], Any] | None,
    isolation_level: str | None,
    read_only: bool,
    durable: bool,
    *,
    allow_async: bool,
) -> Options:
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
    return Options(dispatch, isolation_level, bool(read_only), bool(durable))


class Frame:
    """One level of a block's transaction: the root, or an open savepoint."""

    __slots__ = ("failed", "mark", "on_commit", "on_rollback")

    def __init__(self) -> None:
        self.failed = False
        self.mark = next_mark()
        self.on_commit: list[Hook] = []
        self.on_rollback: list[Hook] = []

    def absorb(self, child: Frame) -> None:
        self.failed = self.failed or child.failed
        self.on_commit.extend(child.on_commit)
        self.on_rollback.extend(child.on_rollback)


class Frames:
    """The stack of a block's frames."""

    __slots__ = ("stack",)

    def __init__(self) -> None:
        self.stack = [Frame()]

    @property
    def top(self) -> Frame:
        return self.stack[-1]

    @property
    def in_savepoint(self) -> bool:
        return len(self.stack) > 1

    @property
    def failed(self) -> bool:
        return any(frame.failed for frame in self.stack)

    def push(self) -> Frame:
        frame = Frame()
        self.stack.append(frame)
        return frame

    def release(self, frame: Frame) -> None:
        self._pop(frame)
        self.stack[-1].absorb(frame)

    def discard(self, frame: Frame) -> None:
        self._pop(frame)

    def _pop(self, frame: Frame) -> None:
        if self.stack[-1] is not frame:
            raise StateError("savepoints must end in the reverse order they began")
        self.stack.pop()

    def end(self) -> Frame:
        """Close the transaction: return the root frame and start afresh."""
        root = self.stack[0]
        self.stack = [Frame()]
        return root


def leave_unit(entered: Token[int] | None) -> None:
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


def check_hook(fn: object, *, allow_async: bool) -> None:
    if not callable(fn):
        raise InvalidArgumentError(f"a hook must be callable without arguments, got {fn!r}")
    if not allow_async and inspect.iscoroutinefunction(fn):
        raise InvalidArgumentError(
            f"{getattr(fn, '__qualname__', fn)!r} is a coroutine function: a UnitOfWork cannot await "
            "it; use AsyncUnitOfWork, or register a plain function"
        )


def run_hooks(hooks: Sequence[Hook], failures: list[Exception], stage: str) -> None:
    """Call every hook in order; collect the failures of non-robust ones, log the robust ones."""
    for fn, robust in hooks:
        try:
            fn()
        except Exception as exc:
            _failed(fn, robust, exc, failures, stage)


async def run_hooks_async(hooks: Sequence[Hook], failures: list[Exception], stage: str) -> None:
    """As `run_hooks()`, awaiting hooks that are coroutine functions."""
    for fn, robust in hooks:
        try:
            result = fn()
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            _failed(fn, robust, exc, failures, stage)


def dispatch_events(dispatch: Callable[[Any], Any], events: list[object], failures: list[Exception]) -> None:
    for event in events:
        try:
            dispatch(event)
        except Exception as exc:
            failures.append(exc)


async def dispatch_events_async(
    dispatch: Callable[[Any], Any | Awaitable[Any]], events: list[object], failures: list[Exception]
) -> None:
    for event in events:
        try:
            result = dispatch(event)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            failures.append(exc)


def after_commit(
    dispatch: Callable[[Any], Any] | None, events: list[object] | None, root: Frame | None
) -> None:
    """Hand the events to `dispatch`, then run the root frame's on_commit hooks, outside the unit.

    Every event and hook runs; their failures are raised together afterwards (the data is committed).
    """
    failures: list[Exception] = []
    with outside_unit():
        if events and dispatch is not None:
            dispatch_events(dispatch, events, failures)
        if root is not None:
            run_hooks(root.on_commit, failures, "after-commit")
    if failures:
        raise hook_error(failures, committed=True)


async def after_commit_async(
    dispatch: Callable[[Any], Any] | None, events: list[object] | None, root: Frame | None
) -> None:
    """As `after_commit`, awaiting coroutine handlers and hooks."""
    failures: list[Exception] = []
    with outside_unit():
        if events and dispatch is not None:
            await dispatch_events_async(dispatch, events, failures)
        if root is not None:
            await run_hooks_async(root.on_commit, failures, "after-commit")
    if failures:
        raise hook_error(failures, committed=True)


def _failed(
    fn: Callable[[], Any], robust: bool, exc: Exception, failures: list[Exception], stage: str
) -> None:
    if robust:
        logger.exception("robust %s hook %r failed; carrying on", stage, fn)
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
