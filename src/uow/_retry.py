"""Running a whole unit again when its transaction failed for a transient reason."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import exc as sa_exc

from uow._classify import is_transient
from uow._errors import CommitOutcomeUnknownError, InvalidArgumentError, TransientError

if TYPE_CHECKING:
    from uow._async_unit import AsyncUnitOfWork
    from uow._unit import UnitOfWork

__all__ = ["AsyncAttempt", "AsyncAttempts", "Attempt", "Attempts", "Retry"]

logger = logging.getLogger("uow")

U = TypeVar("U")


@dataclass(frozen=True, slots=True)
class Retry:
    """How often, and after which pauses, a unit of work runs again after a transient failure.

    The pause after failed attempt `n` is drawn uniformly from `[0, ceiling]` ("full jitter"),
    where `ceiling = min(max_delay, initial_delay * multiplier ** (n - 1))`; without `jitter` it
    is the ceiling itself. `sleep` and `async_sleep` do the waiting and can be replaced, so
    that tests never wait; `rng` draws the jitter.

    Which errors are transient is decided by [`is_transient()`][uow.is_transient]; `transient` adds a
    predicate of your own (for example for a driver uow does not know). Commits whose outcome is
    unknown ([`CommitOutcomeUnknownError`][uow.CommitOutcomeUnknownError]) are never retried, and neither is
    an attempt
    that has already committed once.

    Attributes:
        attempts: The most attempts to make, the first included (at least 1).
        initial_delay: The ceiling of the first pause, in seconds.
        max_delay: The largest ceiling, in seconds.
        multiplier: How much the ceiling grows after each failed attempt.
        jitter: Whether to draw the pause at random below the ceiling.
        sleep: Waits between attempts of a [`UnitOfWork`][uow.UnitOfWork].
        async_sleep: Waits between attempts of an [`AsyncUnitOfWork`][uow.AsyncUnitOfWork].
        transient: A predicate that makes more errors worth another attempt.
        rng: Draws the jitter, a float in `[0, 1)`.
    """

    attempts: int = 5
    initial_delay: float = 0.05
    max_delay: float = 2.0
    multiplier: float = 2.0
    jitter: bool = True
    sleep: Callable[[float], object] = field(default=time.sleep, repr=False)
    async_sleep: Callable[[float], Awaitable[object]] = field(default=asyncio.sleep, repr=False)
    transient: Callable[[BaseException], bool] | None = field(default=None, repr=False)
    rng: Callable[[], float] = field(default=random.random, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or isinstance(self.attempts, bool) or self.attempts < 1:
            raise InvalidArgumentError(f"Retry.attempts must be an int of at least 1, got {self.attempts!r}")
        for name in ("initial_delay", "max_delay", "multiplier"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise InvalidArgumentError(f"Retry.{name} must be a non-negative number, got {value!r}")

    def delay(self, failed_attempt: int) -> float:
        """The pause, in seconds, after attempt number `failed_attempt` failed."""
        ceiling = min(self.max_delay, self.initial_delay * self.multiplier ** (failed_attempt - 1))
        return self.rng() * ceiling if self.jitter else ceiling

    def retries(self, error: BaseException) -> bool:
        """Whether `error` is worth another attempt under this policy."""
        if isinstance(error, CommitOutcomeUnknownError):
            return False
        return is_transient(error) or (self.transient is not None and self.transient(error))


class _AttemptCore(Generic[U]):
    __slots__ = ("_committed", "_in_flight", "_retry", "_unit", "failure", "number")

    def __init__(self, unit: U, number: int, retry: Retry) -> None:
        self._unit = unit
        self._retry = retry
        self._committed = False
        self._in_flight = False
        self.number = number
        """This attempt's number: 1 for the first."""
        self.failure: BaseException | None = None
        """The transient error that ended this attempt, to be retried; `None` otherwise."""

    def _note_commits(self, unit: Any) -> None:
        # Once a commit succeeded, running the work again could apply it twice; a COMMIT sent but not
        # completed when the connection dropped has an unknown outcome (even through unit.session).
        self._committed = unit._commits_done > 0
        self._in_flight = unit._commits_sent > unit._commits_done

    def _judge(self, exc: BaseException | None) -> bool:
        """Whether to swallow `exc` (the block's exception) so that the next attempt can run."""
        if exc is None or self._committed or not self._retry.retries(exc):
            return False
        if self._in_flight and getattr(exc, "connection_invalidated", False):
            return False
        self.failure = exc
        return True


class Attempt(_AttemptCore["UnitOfWork"]):
    """One attempt of a unit run with retries; `with attempt as unit:` runs it.

    A transient error that ends the block is swallowed and the loop goes on to the next attempt;
    anything else propagates at once.
    """

    __slots__ = ()

    def __enter__(self) -> UnitOfWork:
        unit = self._unit
        unit.__enter__()
        unit._attempt = self.number
        return unit

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        unit = self._unit
        self._note_commits(unit)
        unit._attempt = None
        unit.__exit__(exc_type, exc, traceback)
        return self._judge(exc)


class AsyncAttempt(_AttemptCore["AsyncUnitOfWork"]):
    """One attempt of an async unit run with retries; `async with attempt as unit:` runs it."""

    __slots__ = ()

    async def __aenter__(self) -> AsyncUnitOfWork:
        unit = self._unit
        await unit.__aenter__()
        unit._attempt = self.number
        return unit

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        unit = self._unit
        self._note_commits(unit)
        unit._attempt = None
        await unit.__aexit__(exc_type, exc, traceback)
        return self._judge(exc)


class _Loop:
    """The bookkeeping of a retry loop: which attempt comes next, and what to raise at the end."""

    __slots__ = ("current", "number", "retry")

    def __init__(self, retry: Retry) -> None:
        self.retry = retry
        self.number = 0
        self.current: _AttemptCore[Any] | None = None

    def pause(self) -> float | None:
        """The pause before the next attempt; `None` when the loop is over. Raises when out of tries."""
        current = self.current
        if current is None:
            return 0.0
        failure = current.failure
        if failure is None:
            return None
        if self.number >= self.retry.attempts:
            raise exhausted(failure, self.number)
        delay = self.retry.delay(self.number)
        logger.info("attempt %d failed with %r; retrying in %.3f s", self.number, failure, delay)
        return delay


class Attempts:
    """The attempts of a unit run with retries: `for attempt in unit.attempts(retry): ...`."""

    __slots__ = ("_loop", "_unit")

    def __init__(self, unit: UnitOfWork, retry: Retry) -> None:
        self._unit = unit
        self._loop = _Loop(retry)

    def __iter__(self) -> Attempts:
        return self

    def __next__(self) -> Attempt:
        loop = self._loop
        delay = loop.pause()
        if delay is None:
            raise StopIteration
        if delay:
            loop.retry.sleep(delay)
        loop.number += 1
        attempt = Attempt(self._unit, loop.number, loop.retry)
        loop.current = attempt
        return attempt


class AsyncAttempts:
    """The attempts of an async unit: `async for attempt in unit.attempts(retry): ...`."""

    __slots__ = ("_loop", "_unit")

    def __init__(self, unit: AsyncUnitOfWork, retry: Retry) -> None:
        self._unit = unit
        self._loop = _Loop(retry)

    def __aiter__(self) -> AsyncAttempts:
        return self

    async def __anext__(self) -> AsyncAttempt:
        loop = self._loop
        delay = loop.pause()
        if delay is None:
            raise StopAsyncIteration
        if delay:
            await loop.retry.async_sleep(delay)
        loop.number += 1
        attempt = AsyncAttempt(self._unit, loop.number, loop.retry)
        loop.current = attempt
        return attempt


def exhausted(failure: BaseException, attempts: int) -> BaseException:
    """The error to raise when the last of `attempts` attempts failed with `failure`."""
    if isinstance(failure, TransientError):
        failure.attempts = attempts
        return failure
    if isinstance(failure, sa_exc.DBAPIError) and is_transient(failure):
        error = TransientError.from_sqlalchemy(failure)
        error.attempts = attempts
        error.__cause__ = failure
        return error
    failure.add_note(f"uow: gave up after {attempts} attempt(s)")
    return failure
