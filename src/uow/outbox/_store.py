"""The relay's SQL, written once, and the two drivers that send it: sync engines and async engines.

Where the database locks rows (PostgreSQL, MySQL, MariaDB), a batch is claimed with
`SELECT ... FOR UPDATE SKIP LOCKED` in a transaction that stays open while the batch is published
and ends with the rows marked: concurrent relays skip each other's rows, and a relay that dies
mid-batch leaves its rows locked only until the server notices the dropped connection. Elsewhere
(SQLite) the batch is read and marked in two short transactions, so one relay must run at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Delete,
    Engine,
    Select,
    Table,
    Update,
    bindparam,
    case,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from uow.outbox._publisher import Envelope
from uow.outbox._tables import DEAD, PENDING, SENT

__all__ = [
    "AsyncStore",
    "Claimed",
    "Failure",
    "OutboxStats",
    "SyncStore",
    "locks_rows",
    "purge_statement",
    "read_stats",
    "requeue_statement",
    "stats_statement",
]

_LOCKING = frozenset({"postgresql", "mysql", "mariadb"})
_MYSQL = frozenset({"mysql", "mariadb"})


def locks_rows(dialect_name: str) -> bool:
    """Whether several relays can share the database: it has `FOR UPDATE SKIP LOCKED`."""
    return dialect_name in _LOCKING


@dataclass(frozen=True, slots=True)
class Failure:
    """What a failed attempt does to its row."""

    position: int
    attempts: int
    dead: bool
    next_attempt_at: datetime
    error: str


@dataclass(slots=True)
class Claimed:
    """A claimed batch: its rows' positions and envelopes, and the connection that holds their locks."""

    positions: list[int] = field(default_factory=list)
    envelopes: list[Envelope] = field(default_factory=list)
    connection: Any = None


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """The outbox's progress and lag, read in one query."""

    pending: int
    """Messages not yet published, due now or backing off."""
    due: int
    """Pending messages whose next attempt is due now."""
    retrying: int
    """Pending messages that failed at least once."""
    sent: int
    dead: int
    """Messages that failed `max_attempts` times; requeue them once the cause is fixed."""
    oldest_pending_at: datetime | None
    """When the oldest pending message was recorded (UTC, no time zone)."""
    oldest_pending_age: timedelta | None
    """How long the oldest pending message has waited: the relay's lag."""


# -- statements -----------------------------------------------------------------------------------


def _claim_statement(table: Table, batch_size: int, lock: bool) -> Select[*tuple[Any, ...]]:
    c = table.c
    statement = (
        select(c.position, c.id, c.topic, c.key, c.payload, c.headers, c.created_at, c.attempts)
        .where(c.state == PENDING, c.next_attempt_at <= bindparam("at"))
        .order_by(c.position)
        .limit(batch_size)
    )
    return statement.with_for_update(skip_locked=True) if lock else statement


def _sent_statement(table: Table) -> Update:
    c = table.c
    return (
        update(table)
        .where(c.position.in_(bindparam("positions", expanding=True)))
        .values(state=SENT, sent_at=bindparam("at"), attempts=c.attempts + 1, last_error=None)
    )


def _failed_statement(table: Table) -> Update:
    c = table.c
    return (
        update(table)
        .where(c.position == bindparam("f_position"))
        .values(
            state=bindparam("f_state"),
            attempts=bindparam("f_attempts"),
            next_attempt_at=bindparam("f_next"),
            last_error=bindparam("f_error"),
        )
    )


def _failed_params(failures: Sequence[Failure]) -> list[dict[str, Any]]:
    return [
        {
            "f_position": failure.position,
            "f_state": DEAD if failure.dead else PENDING,
            "f_attempts": failure.attempts,
            "f_next": failure.next_attempt_at,
            "f_error": failure.error,
        }
        for failure in failures
    ]


def stats_statement(table: Table, at: datetime) -> Select[*tuple[Any, ...]]:
    c = table.c
    return select(
        c.state,
        func.count(),
        func.min(c.created_at),
        func.sum(case((c.next_attempt_at <= at, 1), else_=0)),
        func.sum(case((c.attempts > 0, 1), else_=0)),
    ).group_by(c.state)


def read_stats(rows: Sequence[Any], at: datetime) -> OutboxStats:
    counts = dict.fromkeys((PENDING, SENT, DEAD), 0)
    oldest: datetime | None = None
    due = retrying = 0
    for state, count, first, due_now, failed_before in rows:
        counts[state] = int(count)
        if state == PENDING:
            oldest, due, retrying = first, int(due_now or 0), int(failed_before or 0)
    return OutboxStats(
        pending=counts[PENDING],
        due=due,
        retrying=retrying,
        sent=counts[SENT],
        dead=counts[DEAD],
        oldest_pending_at=oldest,
        oldest_pending_age=None if oldest is None else max(at - oldest, timedelta(0)),
    )


def requeue_statement(table: Table, at: datetime) -> Update:
    c = table.c
    return (
        update(table)
        .where(c.state == DEAD)
        .values(state=PENDING, attempts=0, next_attempt_at=at, last_error=None)
    )


def purge_statement(table: Table, before: datetime) -> Delete:
    c = table.c
    return delete(table).where(c.state == SENT, c.sent_at < before)


def _envelopes(rows: Sequence[Any]) -> tuple[list[int], list[Envelope]]:
    positions = [row.position for row in rows]
    envelopes = [
        Envelope(
            id=row.id,
            topic=row.topic,
            payload=bytes(row.payload),
            key=row.key,
            headers=dict(row.headers or {}),
            created_at=row.created_at,
            attempts=row.attempts,
        )
        for row in rows
    ]
    return positions, envelopes


# -- drivers ----------------------------------------------------------------------------------------


class _Statements:
    """What both stores prepare once: the relay's statements, and how claims lock rows."""

    def __init__(self, dialect: str, table: Table, batch_size: int) -> None:
        self.table = table
        self.lock = locks_rows(dialect)
        self._claim = _claim_statement(table, batch_size, self.lock)
        self._sent = _sent_statement(table)
        self._failed = _failed_statement(table)
        self._isolation = {"isolation_level": "READ COMMITTED"} if dialect in _MYSQL else {}


class SyncStore(_Statements):
    """The relay's reads and writes on a sync `Engine`; each call blocks while it runs."""

    def __init__(self, engine: Engine, table: Table, batch_size: int) -> None:
        super().__init__(engine.dialect.name, table, batch_size)
        self.engine = engine

    async def claim(self, at: datetime) -> Claimed:
        if not self.lock:
            with self.engine.begin() as connection:
                rows = connection.execute(self._claim, {"at": at}).all()
            return Claimed(*_envelopes(rows))
        connection = self.engine.connect().execution_options(**self._isolation)
        try:
            connection.begin()
            rows = connection.execute(self._claim, {"at": at}).all()
        except BaseException:
            connection.close()
            raise
        if not rows:
            connection.close()
            return Claimed()
        return Claimed(*_envelopes(rows), connection=connection)

    async def finish(self, claimed: Claimed, sent: list[int], failures: list[Failure], at: datetime) -> None:
        if claimed.connection is None:
            with self.engine.begin() as connection:
                self._mark(connection, sent, failures, at)
            return
        held: Connection = claimed.connection
        try:
            self._mark(held, sent, failures, at)
            held.commit()
        finally:
            held.close()

    def _mark(self, connection: Connection, sent: list[int], failures: list[Failure], at: datetime) -> None:
        if sent:
            connection.execute(self._sent, {"positions": sent, "at": at})
        if failures:
            connection.execute(self._failed, _failed_params(failures))

    async def release(self, claimed: Claimed) -> None:
        if claimed.connection is not None:
            claimed.connection.close()


class AsyncStore(_Statements):
    """The relay's reads and writes on an `AsyncEngine`."""

    def __init__(self, engine: AsyncEngine, table: Table, batch_size: int) -> None:
        super().__init__(engine.dialect.name, table, batch_size)
        self.engine = engine

    async def claim(self, at: datetime) -> Claimed:
        if not self.lock:
            async with self.engine.begin() as connection:
                rows = (await connection.execute(self._claim, {"at": at})).all()
            return Claimed(*_envelopes(rows))
        connection = await self.engine.connect()
        try:
            await connection.execution_options(**self._isolation)
            await connection.begin()
            rows = (await connection.execute(self._claim, {"at": at})).all()
        except BaseException:
            await connection.close()
            raise
        if not rows:
            await connection.close()
            return Claimed()
        return Claimed(*_envelopes(rows), connection=connection)

    async def finish(self, claimed: Claimed, sent: list[int], failures: list[Failure], at: datetime) -> None:
        if claimed.connection is None:
            async with self.engine.begin() as connection:
                await self._mark(connection, sent, failures, at)
            return
        held: AsyncConnection = claimed.connection
        try:
            await self._mark(held, sent, failures, at)
            await held.commit()
        finally:
            await held.close()

    async def _mark(
        self, connection: AsyncConnection, sent: list[int], failures: list[Failure], at: datetime
    ) -> None:
        if sent:
            await connection.execute(self._sent, {"positions": sent, "at": at})
        if failures:
            await connection.execute(self._failed, _failed_params(failures))

    async def release(self, claimed: Claimed) -> None:
        if claimed.connection is not None:
            await claimed.connection.close()
