"""Running a whole unit again when its transaction failed for a transient reason."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import exc as sa_exc

from uow._classify import is_transient, lost_before_sending, reason
from uow._errors import CommitOutcomeUnknownError, InvalidArgumentError, TransientError

__all__ = ["Loop", "Retry", "exhausted"]

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


def swallows(retry: Retry, error: BaseException | None, *, committed: bool, in_flight: bool) -> bool:
    """Whether an attempt that ended with `error` is to be run again.

    Never once the attempt committed (running its work again could apply it twice), nor when a COMMIT
    was cut off with the connection (its outcome is unknown), even when the commit went through
    `unit.session`.
    """
    if error is None or committed or not retry.retries(error):
        return False
    if not (in_flight and getattr(error, "connection_invalidated", False)):
        return True
    return isinstance(error, sa_exc.DBAPIError) and lost_before_sending(error)


class Loop:
    """The bookkeeping of a retry loop: which attempt comes next, and what to raise at the end.

    The sync and async attempt iterators only sleep for the pause it returns.
    """

    __slots__ = ("failure", "number", "retry")

    def __init__(self, retry: Retry) -> None:
        self.retry: Retry = retry
        self.number: int = 0
        self.failure: BaseException | None = None
        """The transient error that ended the last attempt, to be retried; `None` otherwise."""

    def pause(self) -> float | None:
        """The pause before the next attempt; `None` when the loop is over. Raises when out of tries."""
        if self.number == 0:
            return 0.0
        failure = self.failure
        if failure is None:
            return None
        if self.number >= self.retry.attempts:
            raise exhausted(failure, self.number)
        delay = self.retry.delay(self.number)
        logger.info(
            "attempt %d failed with %r; retrying in %.3f s",
            self.number,
            failure,
            delay,
            extra={
                "uow_event": "retry",
                "uow_attempt": self.number,
                "uow_reason": reason(failure),
                "uow_delay": delay,
            },
        )
        return delay

    def next(self) -> int:
        """Start the next attempt; its number."""
        self.failure = None
        self.number += 1
        return self.number

    def ended(self, error: BaseException | None, *, committed: bool, in_flight: bool) -> bool:
        """Record how an attempt ended; whether its error is swallowed for another attempt."""
        if not swallows(self.retry, error, committed=committed, in_flight=in_flight):
            return False
        self.failure = error
        return True


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
