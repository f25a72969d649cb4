"""The inbox: an idempotent consumer, recorded in the same transaction as the message's effects."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import Insert, Table, insert
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from uow._errors import InvalidArgumentError
from uow._listeners import mark_written
from uow.outbox._outbox import sync_session
from uow.outbox._tables import check_inbox_table, now

__all__ = ["Inbox"]

_ROWCOUNT = {"preserve_rowcount": True}
_MAX_CONSUMER = 200
_MAX_ID = 255


class Inbox:
    """Applies each message once per consumer, however often the broker delivers it.

    ```python
    inbox = Inbox(inbox_table(Base.metadata), consumer="billing")

    async def handle(msg):                   # called for every delivery
        async with AsyncUnitOfWork(Session) as unit:
            if await inbox.accept_async(unit, message_id(msg)):
                ...                          # the message's effects
            await unit.commit()              # effects and inbox row, or neither
        await msg.ack()
    ```

    `accept()` inserts `(consumer, message_id)` into the inbox table within the unit's
    transaction and says whether it was new. The row commits with the effects, so a delivery that
    is repeated after a crash, a lost acknowledgement or a re-publish is recognised and skipped;
    one whose unit rolled back left no row, and is applied when it comes again. Two units that
    accept the same message at once are serialised by the table's primary key: the second waits
    for the first to end, and gets `False` if it committed.
    """

    __slots__ = ("consumer", "table")

    def __init__(self, table: Table, consumer: str = "default") -> None:
        """Record the messages that `consumer` applied in `table`.

        Args:
            table: A table made by [`inbox_table()`][uow.outbox.inbox_table].
            consumer: The name of the consumer; consumers that share a table keep separate records.

        Raises:
            InvalidArgumentError: `table` lacks a column of the inbox table, or `consumer` is
                empty or longer than 200 characters.
        """
        if not isinstance(consumer, str) or not consumer or len(consumer) > _MAX_CONSUMER:
            raise InvalidArgumentError(
                f"consumer must be a non-empty str of at most 200 characters, got {consumer!r}"
            )
        self.table: Table = check_inbox_table(table)
        self.consumer: str = consumer

    def __repr__(self) -> str:
        return f"<Inbox {self.table.fullname} consumer={self.consumer!r}>"

    def accept(self, target: Session | Any, message_id: UUID | str) -> bool:
        """Record `message_id` in the unit's transaction; whether it was not recorded before.

        `True`: apply the message in this unit, and commit. `False`: a committed unit applied it
        already; skip it (and acknowledge it). The row is sent at once (one `INSERT`, ignoring a
        duplicate), counts as the unit's uncommitted work, and is rolled back with the unit or the
        savepoint it was sent in.

        Args:
            target: An active `UnitOfWork`, or a `Session`.
            message_id: The id the message was delivered with (a UUID, or its text).

        Raises:
            StateError: `target` is a unit that is not active.
            InvalidArgumentError: `message_id` is empty or too long, or `target` is async.
        """
        if isinstance(target, AsyncSession) or isinstance(getattr(target, "session", None), AsyncSession):
            raise InvalidArgumentError("accept() takes a sync unit or Session; await accept_async() instead")
        session = sync_session(target)
        result: Any = session.execute(
            self._statement(session), self._row(message_id), execution_options=_ROWCOUNT
        )
        mark_written(session)
        return _inserted(result.rowcount)

    async def accept_async(self, target: AsyncSession | Any, message_id: UUID | str) -> bool:
        """[`accept()`][uow.outbox.Inbox.accept] for an `AsyncUnitOfWork` or an `AsyncSession`."""
        session = target if isinstance(target, AsyncSession) else getattr(target, "session", target)
        if not isinstance(session, AsyncSession):
            raise InvalidArgumentError(
                "accept_async() takes an async unit or AsyncSession; call accept() for a sync one"
            )
        statement = self._statement(session.sync_session)
        result: Any = await session.execute(statement, self._row(message_id), execution_options=_ROWCOUNT)
        mark_written(session.sync_session)
        return _inserted(result.rowcount)

    def _row(self, message_id: UUID | str) -> dict[str, Any]:
        text = str(message_id) if isinstance(message_id, UUID) else message_id
        if not isinstance(text, str) or not text or len(text) > _MAX_ID:
            raise InvalidArgumentError(
                f"message_id must be a UUID or a non-empty str of at most 255 characters, got {message_id!r}"
            )
        return {"consumer": self.consumer, "message_id": text, "received_at": now()}

    def _statement(self, session: Session) -> Insert:
        bind = session.get_bind()
        name = bind.dialect.name
        if name == "postgresql":
            return postgresql_insert(self.table).on_conflict_do_nothing()
        if name == "sqlite":
            return sqlite_insert(self.table).on_conflict_do_nothing()
        if name in {"mysql", "mariadb"}:
            return insert(self.table).prefix_with("IGNORE")
        raise InvalidArgumentError(f"the inbox supports PostgreSQL, MySQL, MariaDB and SQLite, not {name}")


def _inserted(rowcount: int) -> bool:
    if rowcount < 0:  # pragma: no cover - SQLAlchemy before 2.0.28 ignores preserve_rowcount
        raise InvalidArgumentError("the inbox needs SQLAlchemy 2.0.28 or later (preserve_rowcount)")
    return rowcount > 0
