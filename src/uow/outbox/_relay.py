"""The relay: claims committed outbox rows, publishes them, marks them sent, at least once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import Engine, Table
from sqlalchemy.ext.asyncio import AsyncEngine

from uow._errors import InvalidArgumentError
from uow.outbox._listen import Listener, listen
from uow.outbox._outbox import Outbox
from uow.outbox._publisher import Envelope, OutboxError, Publisher
from uow.outbox._store import (
    AsyncStore,
    Claimed,
    Failure,
    OutboxStats,
    SyncStore,
    read_stats,
    stats_statement,
)
from uow.outbox._tables import check_outbox_table, now

__all__ = ["Backoff", "BatchResult", "Relay"]

logger = logging.getLogger("uow.outbox")

T = TypeVar("T")

_MAX_ERROR = 2000
_LISTEN_AGAIN = 30.0
"""Seconds between attempts to LISTEN again after the listening connection failed or dropped."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long a message waits after its n-th failed attempt: exponential, capped, with jitter.

    `initial * multiplier ** (n - 1)` seconds, at most `maximum`, then spread by up to
    `jitter` (a fraction) either way so that messages that failed together do not retry together.
    """

    initial: float = 1.0
    maximum: float = 300.0
    multiplier: float = 2.0
    jitter: float = 0.1

    def __call__(self, attempts: int) -> float:
        delay = min(self.maximum, self.initial * self.multiplier ** max(attempts - 1, 0))
        if self.jitter:
            delay *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(delay, 0.0)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one or more batches did."""

    claimed: int = 0
    sent: int = 0
    failed: int = 0
    """Messages whose attempt failed, those that went dead included."""
    dead: int = 0
    """Messages that failed for the last time and are now dead letters."""

    def __add__(self, other: BatchResult) -> BatchResult:
        return BatchResult(
            self.claimed + other.claimed,
            self.sent + other.sent,
            self.failed + other.failed,
            self.dead + other.dead,
        )


class Relay:
    """Publishes the outbox's committed messages through a publisher, at least once.

    ```python
    async with NatsPublisher("nats://127.0.0.1:4222") as publisher:
        await Relay(engine, outbox, publisher).run()   # until cancelled
    ```

    Each batch is claimed, published and marked in one go: on PostgreSQL, MySQL and MariaDB the
    rows are locked with `SELECT ... FOR UPDATE SKIP LOCKED` until they are marked, so any number
    of relays can run side by side without claiming a row twice, and the rows of a relay that dies
    mid-batch (even by `SIGKILL`) become claimable again as soon as its connection drops. Such a
    batch is then published again: delivery is at least once, and every delivery of a message
    carries its id. On SQLite (no row locks) run a single relay.

    A message the broker refuses is retried after [`Backoff`][uow.outbox.Backoff] delays and
    becomes a dead letter after `max_attempts` failed attempts; a publisher that raises (its broker
    unreachable) counts no attempt, and the relay pauses before trying again. Messages are claimed
    in recording order, but with several relays, or after a failure, they may be published out of
    order.

    A sync `Engine` works too: its calls then block the event loop while they run, which suits a
    relay that has its loop to itself ([`run_sync()`][uow.outbox.Relay.run_sync], the command);
    give an `AsyncEngine` to a relay that shares its loop with other work.
    """

    def __init__(
        self,
        engine: Engine | AsyncEngine,
        outbox: Outbox | Table,
        publisher: Publisher,
        *,
        batch_size: int = 100,
        max_attempts: int = 20,
        backoff: Callable[[int], float] | None = None,
        poll_interval: float = 1.0,
        listen: bool = True,
    ) -> None:
        """Relay the messages of `outbox` from the database of `engine` to `publisher`.

        Args:
            engine: The application's database, sync or async.
            outbox: The [`Outbox`][uow.outbox.Outbox], or its table.
            publisher: Publishes each batch; see [`Publisher`][uow.outbox.Publisher].
            batch_size: The most messages claimed and published at once.
            max_attempts: Failed attempts after which a message is dead.
            backoff: Seconds to wait after the n-th failed attempt of a message, and after the n-th
                consecutive failure of the relay itself (database or broker unreachable); a
                [`Backoff()`][uow.outbox.Backoff] by default.
            poll_interval: Seconds `run()` waits between claims that found too little to fill a batch.
            listen: On PostgreSQL with psycopg 3 or asyncpg, also LISTEN on the outbox's channel and
                wake up as soon as a transaction that recorded messages commits.

        Raises:
            InvalidArgumentError: A number is out of range, or `outbox` is not an outbox table.
        """
        if not isinstance(engine, Engine | AsyncEngine):
            raise InvalidArgumentError(f"engine must be an Engine or an AsyncEngine, got {engine!r}")
        if not isinstance(publisher, Publisher):
            raise InvalidArgumentError(
                f"publisher must have async publish() and aclose() methods, got {publisher!r}"
            )
        if not isinstance(batch_size, int) or not 1 <= batch_size <= 10_000:
            raise InvalidArgumentError(f"batch_size must be an int from 1 to 10000, got {batch_size!r}")
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidArgumentError(f"max_attempts must be a positive int, got {max_attempts!r}")
        if not poll_interval > 0:
            raise InvalidArgumentError(f"poll_interval must be positive, got {poll_interval!r}")
        if isinstance(outbox, Outbox):
            table, channel = outbox.table, outbox.channel
        else:
            table, channel = check_outbox_table(outbox), outbox.name
        self.engine: Engine | AsyncEngine = engine
        self.table: Table = table
        self.publisher: Publisher = publisher
        self.batch_size: int = batch_size
        self.max_attempts: int = max_attempts
        self.backoff: Callable[[int], float] = backoff if backoff is not None else Backoff()
        self.poll_interval: float = float(poll_interval)
        self.channel: str | None = channel if listen else None
        """The PostgreSQL channel the relay listens on; `None` when it only polls."""
        self._store: SyncStore | AsyncStore = (
            AsyncStore(engine, table, batch_size)
            if isinstance(engine, AsyncEngine)
            else SyncStore(engine, table, batch_size)
        )

    def __repr__(self) -> str:
        return f"<Relay {self.table.fullname} -> {type(self.publisher).__name__}>"

    # -- one batch ------------------------------------------------------------------------------

    async def step(self) -> BatchResult:
        """Claim one batch of due messages, publish it and record the outcome.

        Returns what the batch did; `claimed == 0` when nothing was due.

        Raises:
            PublisherUnavailableError: The publisher could not try (the batch stays pending).
            sqlalchemy.exc.DBAPIError: The database failed; a batch that was published stays
                pending and is published again later.
        """
        store = self._store
        claimed = await store.claim(now())
        if not claimed.envelopes:
            return BatchResult()
        try:
            results = await self._publish(claimed.envelopes)
            sent, failures = self._outcome(claimed, results)
            await store.finish(claimed, sent, failures, now())
        except BaseException:
            await _shielded(store.release(claimed))
            raise
        dead = sum(failure.dead for failure in failures)
        if failures:
            logger.warning(
                "%d of %d message(s) failed to publish (%d now dead); first: %s",
                len(failures),
                len(claimed.envelopes),
                dead,
                failures[0].error,
            )
        return BatchResult(len(claimed.envelopes), len(sent), len(failures), dead)

    async def _publish(self, envelopes: list[Envelope]) -> Sequence[BaseException | None]:
        results = await self.publisher.publish(envelopes)
        if len(results) != len(envelopes):
            raise OutboxError(
                f"{type(self.publisher).__name__}.publish() returned {len(results)} result(s) "
                f"for {len(envelopes)} envelope(s)"
            )
        return results

    def _outcome(
        self, claimed: Claimed, results: Sequence[BaseException | None]
    ) -> tuple[list[int], list[Failure]]:
        sent: list[int] = []
        failures: list[Failure] = []
        at = now()
        for position, envelope, result in zip(claimed.positions, claimed.envelopes, results, strict=True):
            if result is None:
                sent.append(position)
                continue
            attempts = envelope.attempts + 1
            error = f"{type(result).__name__}: {result}"[:_MAX_ERROR]
            failures.append(
                Failure(
                    position,
                    attempts,
                    attempts >= self.max_attempts,
                    at + timedelta(seconds=self.backoff(attempts)),
                    error,
                )
            )
        return sent, failures

    async def drain(self) -> BatchResult:
        """Publish batches until none is due; returns their sum.

        Messages that fail are not retried within the same call unless their backoff has already
        passed by the time the next batch is claimed.
        """
        total = BatchResult()
        while True:
            result = await self.step()
            total += result
            if result.claimed == 0:
                return total

    # -- the loop -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Relay until `stop` is set (or the task is cancelled), then return.

        A batch that fills up is followed by the next at once; otherwise the relay waits
        `poll_interval` seconds, or less when a PostgreSQL notification arrives. Failures of the
        database or the publisher are logged to the `uow.outbox` logger, and the relay pauses by
        its backoff before trying again; a batch in progress when `stop` is set is finished first.
        """
        stop = stop if stop is not None else asyncio.Event()
        wake = asyncio.Event()
        listener: Listener | None = None
        listen_again = 0.0
        failures = 0
        try:
            while not stop.is_set():
                lost = listener is None or not listener.alive
                if self.channel is not None and lost and time.monotonic() >= listen_again:
                    if listener is not None:
                        await listener.close()
                    listener = await listen(self.engine, self.channel, wake)
                    listen_again = time.monotonic() + _LISTEN_AGAIN
                wake.clear()
                try:
                    result = await self.step()
                except Exception:
                    failures += 1
                    delay = self.backoff(failures)
                    logger.warning("relay batch failed; next try in %.1f s", delay, exc_info=True)
                    await _wait(stop, None, delay)
                    continue
                failures = 0
                if result.claimed < self.batch_size:
                    await _wait(stop, wake, self.poll_interval)
        finally:
            if listener is not None:
                await _shielded(listener.close())

    async def stats(self) -> OutboxStats:
        """The outbox's counts by state and the age of its oldest pending message."""
        at = now()
        statement = stats_statement(self.table, at)
        engine = self.engine
        if isinstance(engine, AsyncEngine):
            async with engine.connect() as connection:
                rows = (await connection.execute(statement)).all()
        else:
            with engine.connect() as connection:
                rows = connection.execute(statement).all()
        return read_stats(rows, at)

    # -- sync ---------------------------------------------------------------------------------

    def run_sync(self, stop: Callable[[], bool] | None = None, *, check_every: float = 0.2) -> None:
        """Run the relay in an event loop of its own until `stop()` returns true (or Ctrl-C).

        For sync applications: a thread or a process of its own runs it. The publisher is closed
        when it returns, so that the next call can reconnect in its own loop.

        Args:
            stop: Polled every `check_every` seconds; for example `threading.Event().is_set`.
            check_every: Seconds between calls of `stop`.
        """

        async def main() -> None:
            event = asyncio.Event()

            async def watch() -> None:
                while stop is not None and not stop():
                    await asyncio.sleep(check_every)
                if stop is not None:
                    event.set()

            watcher = asyncio.create_task(watch())
            try:
                await self.run(event)
            finally:
                watcher.cancel()

        self._in_own_loop(main())

    def drain_sync(self) -> BatchResult:
        """[`drain()`][uow.outbox.Relay.drain] in an event loop of its own; closes the publisher after."""
        return self._in_own_loop(self.drain())

    def step_sync(self) -> BatchResult:
        """[`step()`][uow.outbox.Relay.step] in an event loop of its own; closes the publisher after."""
        return self._in_own_loop(self.step())

    def _in_own_loop(self, work: Coroutine[Any, Any, T]) -> T:
        async def main() -> T:
            try:
                return await work
            finally:
                await self.publisher.aclose()

        return asyncio.run(main())


async def _wait(stop: asyncio.Event, wake: asyncio.Event | None, timeout: float) -> None:
    """Wait until `stop` or `wake` is set, or `timeout` seconds passed."""
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _shielded(cleanup: Coroutine[Any, Any, None]) -> None:
    """Finish `cleanup` even if the task is being cancelled; its own failure is logged, not raised."""
    task = asyncio.ensure_future(cleanup)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await task
        raise
    except Exception:
        logger.warning("cleanup failed", exc_info=True)
