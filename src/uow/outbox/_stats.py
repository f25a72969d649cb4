"""Watching and tending the outbox: progress and lag, dead letters, and sent rows to purge."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, Table
from sqlalchemy.ext.asyncio import AsyncEngine

from uow._errors import InvalidArgumentError
from uow.outbox._outbox import Outbox
from uow.outbox._store import OutboxStats, purge_statement, read_stats, requeue_statement, stats_statement
from uow.outbox._tables import check_outbox_table, now

__all__ = ["purge_sent", "purge_sent_async", "requeue_dead", "requeue_dead_async", "stats", "stats_async"]


def _table(outbox: Outbox | Table) -> Table:
    return outbox.table if isinstance(outbox, Outbox) else check_outbox_table(outbox)


def _cutoff(older_than: timedelta) -> timedelta:
    if not isinstance(older_than, timedelta) or older_than < timedelta(0):
        raise InvalidArgumentError(f"older_than must be a timedelta of zero or more, got {older_than!r}")
    return older_than


def stats(engine: Engine, outbox: Outbox | Table) -> OutboxStats:
    """The outbox's counts by state and the age of its oldest pending message, in one query.

    `pending` counts what waits to be published (`due` of it now, `retrying` of it after a
    failure), `dead` what failed `max_attempts` times; `oldest_pending_age` is the relay's lag.
    Sent rows count until they are purged.
    """
    at = now()
    with engine.connect() as connection:
        rows = connection.execute(stats_statement(_table(outbox), at)).all()
    return read_stats(rows, at)


async def stats_async(engine: AsyncEngine, outbox: Outbox | Table) -> OutboxStats:
    """[`stats()`][uow.outbox.stats] on an `AsyncEngine`."""
    at = now()
    async with engine.connect() as connection:
        rows = (await connection.execute(stats_statement(_table(outbox), at))).all()
    return read_stats(rows, at)


def requeue_dead(engine: Engine, outbox: Outbox | Table) -> int:
    """Make every dead message pending again, due now with no attempts counted; how many."""
    with engine.begin() as connection:
        return int(connection.execute(requeue_statement(_table(outbox), now())).rowcount)


async def requeue_dead_async(engine: AsyncEngine, outbox: Outbox | Table) -> int:
    """[`requeue_dead()`][uow.outbox.requeue_dead] on an `AsyncEngine`."""
    async with engine.begin() as connection:
        return int((await connection.execute(requeue_statement(_table(outbox), now()))).rowcount)


def purge_sent(engine: Engine, outbox: Outbox | Table, older_than: timedelta = timedelta(days=7)) -> int:
    """Delete the messages sent more than `older_than` ago; how many.

    Receivers deduplicate by message id, not by the outbox: a sent row is history only, kept for
    inspection. Pending and dead messages are never deleted.
    """
    before = now() - _cutoff(older_than)
    with engine.begin() as connection:
        return int(connection.execute(purge_statement(_table(outbox), before)).rowcount)


async def purge_sent_async(
    engine: AsyncEngine, outbox: Outbox | Table, older_than: timedelta = timedelta(days=7)
) -> int:
    """[`purge_sent()`][uow.outbox.purge_sent] on an `AsyncEngine`."""
    before = now() - _cutoff(older_than)
    async with engine.begin() as connection:
        return int((await connection.execute(purge_statement(_table(outbox), before))).rowcount)
