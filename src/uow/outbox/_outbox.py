"""Recording messages in the outbox: rows written by the unit's own flush, in its own transaction."""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID, uuid4

from sqlalchemy import Connection, Table, event, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapper, Session, registry

from uow._errors import InvalidArgumentError
from uow.outbox._tables import PENDING, check_outbox_table, now

__all__ = ["Message", "Outbox", "sync_session", "to_bytes"]

_MAX_TEXT = 255
_CHANNEL = "uow.outbox.channel"
_NOTIFIED = "uow.outbox.notified"


@dataclass(frozen=True, slots=True)
class Message:
    """A message to record in the outbox: where it goes and what it says.

    Domain events that are `Message`s go to the outbox as they are when an outbox captures a
    session factory's events ([`Outbox.capture_events`][uow.outbox.Outbox.capture_events]); a
    `to_message` function returns one for any other event.
    """

    topic: str
    """Where the message goes: a NATS subject, a RabbitMQ routing key, a Redis stream."""
    payload: object
    """The body: `bytes` as they are, `str` as UTF-8, anything else as compact JSON (by default)."""
    key: str | None = None
    """An optional key sent beside it, such as the id of the aggregate it is about."""
    headers: Mapping[str, str] | None = None
    """Extra headers, names and values as strings."""
    id: UUID = field(default_factory=uuid4)
    """The message's stable id; give your own to make recording itself idempotent."""


def to_bytes(payload: object) -> bytes:
    """The default serializer: bytes as they are, `str` as UTF-8, anything else as compact JSON.

    Raises:
        InvalidArgumentError: The payload is none of those and JSON cannot encode it.
    """
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, bytearray | memoryview):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode()
    try:
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(
            f"the outbox's serializer cannot encode a {type(payload).__name__} payload as JSON: give "
            "bytes, str or JSON-compatible data, or an Outbox(serializer=...) of your own"
        ) from exc


class _HasSession(Protocol):
    @property
    def session(self) -> Session | AsyncSession: ...


Target = Session | AsyncSession | _HasSession
"""Where a message is recorded: a unit of work (sync or async), or a session."""


def sync_session(target: object) -> Session:
    """The sync `Session` behind a unit, an `AsyncSession` or a `Session`.

    Reading `unit.session` raises the unit's own `StateError` outside its block.
    """
    if not isinstance(target, Session | AsyncSession):
        target = getattr(target, "session", target)
    if isinstance(target, AsyncSession):
        return target.sync_session
    if isinstance(target, Session):
        return target
    raise InvalidArgumentError(
        f"expected a unit of work, a Session or an AsyncSession, got {type(target).__name__}"
    )


class _Record:
    """One outbox row as the unit's session writes it; mapped onto each outbox table in turn."""

    def __init__(self, **values: Any) -> None:
        for name, value in values.items():
            setattr(self, name, value)


_records: weakref.WeakKeyDictionary[Table, type[_Record]] = weakref.WeakKeyDictionary()
_records_lock = threading.Lock()


def _record_class(table: Table) -> type[_Record]:
    """The class whose objects are rows of `table`, mapped once per table with a registry of its own.

    Being ORM objects, recorded messages follow SQLAlchemy's unit of work: they are inserted by
    the session's flush, in the transaction and savepoint where they were added, and discarded
    with them.
    """
    with _records_lock:
        record = _records.get(table)
        if record is None:
            record = type("OutboxRecord", (_Record,), {"__module__": __name__})
            registry().map_imperatively(record, table)
            event.listen(record, "after_insert", _notify)
            _records[table] = record
        return record


def _notify(mapper: Mapper[Any], connection: Connection, target: object) -> None:
    """On PostgreSQL, send NOTIFY once per transaction level that inserts outbox rows.

    The notification is delivered when the transaction commits, and dropped with a rolled-back
    transaction or savepoint; a relay that LISTENs wakes up at once instead of at its next poll.
    """
    table = mapper.local_table
    channel = table.info.get(_CHANNEL) if isinstance(table, Table) else None
    if channel is None or connection.dialect.name != "postgresql":
        return
    level = connection.get_nested_transaction() or connection.get_transaction()
    if connection.info.get(_NOTIFIED) is level:
        return
    connection.execute(select(func.pg_notify(channel, "")))
    connection.info[_NOTIFIED] = level


class Outbox:
    """Records outgoing messages in an outbox table, in the same transaction as the unit's work.

    ```python
    outbox = Outbox(outbox_table(Base.metadata))

    with UnitOfWork(Session) as unit:
        order = Order(id=7)
        unit.session.add(order)
        outbox.add(unit, "orders.placed", {"order": 7}, key="7")
        unit.commit()             # the order and its message, or neither
    ```

    A message is an ORM object in the unit's session: the unit's flush inserts it, so it commits
    exactly when the work does. A rolled-back unit, a rolled-back savepoint (`unit.savepoint()` or
    `session.begin_nested()`) and a block left without `commit()` leave no row behind. A
    [`Relay`][uow.outbox.Relay] publishes the committed rows afterwards.

    On PostgreSQL each transaction that adds messages also sends `NOTIFY` on a channel named after
    the table (delivered only when it commits), so that relays listening there wake up at once;
    `notify=False` leaves it to their polling.
    """

    __slots__ = ("_record", "serializer", "table")

    def __init__(
        self,
        table: Table,
        *,
        serializer: Callable[[object], bytes] = to_bytes,
        notify: bool = True,
    ) -> None:
        """Record messages in `table`.

        Args:
            table: A table made by [`outbox_table()`][uow.outbox.outbox_table].
            serializer: Turns payloads into bytes; the default takes bytes, str and JSON data.
            notify: Send PostgreSQL `NOTIFY` on commit, on the channel named after the table. It
                is a setting of the table: the last `Outbox` made for a table decides.

        Raises:
            InvalidArgumentError: `table` lacks a column of the outbox table.
        """
        self.table: Table = check_outbox_table(table)
        self.serializer: Callable[[object], bytes] = serializer
        self._record = _record_class(table)
        if notify:
            table.info[_CHANNEL] = table.name
        else:
            table.info.pop(_CHANNEL, None)

    def __repr__(self) -> str:
        return f"<Outbox {self.table.fullname}>"

    @property
    def channel(self) -> str | None:
        """The PostgreSQL channel that commits notify and relays listen on; `None` if off."""
        channel: str | None = self.table.info.get(_CHANNEL)
        return channel

    def add(
        self,
        target: Target,
        topic: str,
        payload: object,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        id: UUID | None = None,
    ) -> UUID:
        """Record a message in the unit's current transaction; returns its id.

        No SQL is sent: the unit's next flush (at the latest its commit) inserts the row, within
        whichever savepoint is open now. The same call serves `UnitOfWork` and `AsyncUnitOfWork`.

        Args:
            target: An active unit of work, or a `Session` or `AsyncSession`.
            topic: Where the message goes (at most 255 characters).
            payload: The body, encoded by the outbox's serializer now.
            key: An optional key sent beside it (at most 255 characters).
            headers: Extra headers, names and values as strings.
            id: The message's id; a new random UUID by default.

        Raises:
            StateError: `target` is a unit that is not active.
            InvalidArgumentError: A field is empty, too long or of the wrong type, or the payload
                cannot be serialized.
        """
        message = Message(topic, payload, key, headers, uuid4() if id is None else id)
        self.add_message(target, message)
        return message.id

    def add_message(self, target: Target, message: Message) -> UUID:
        """Record `message` as [`add()`][uow.outbox.Outbox.add] does; returns its id."""
        session = sync_session(target)
        session.add(self.record(message))
        return message.id

    def record(self, message: Message) -> object:
        """The ORM object that stores `message`; adding it to a session records the message.

        Raises:
            InvalidArgumentError: A field is empty, too long or of the wrong type.
        """
        topic, key, headers = message.topic, message.key, message.headers
        if not isinstance(topic, str) or not topic or len(topic) > _MAX_TEXT:
            raise InvalidArgumentError(
                f"topic must be a non-empty str of at most 255 characters, got {topic!r}"
            )
        if key is not None and (not isinstance(key, str) or len(key) > _MAX_TEXT):
            raise InvalidArgumentError(f"key must be None or a str of at most 255 characters, got {key!r}")
        if not isinstance(message.id, UUID):
            raise InvalidArgumentError(f"id must be a uuid.UUID, got {message.id!r}")
        if headers is not None:
            if not isinstance(headers, Mapping) or not all(
                isinstance(name, str) and isinstance(value, str) for name, value in headers.items()
            ):
                raise InvalidArgumentError(f"headers must map str to str, got {headers!r}")
            headers = dict(headers) or None
        payload = self.serializer(message.payload)
        if not isinstance(payload, bytes):
            raise InvalidArgumentError(
                f"the outbox's serializer must return bytes, returned {type(payload).__name__}"
            )
        recorded = now()
        return self._record(
            id=message.id,
            topic=topic,
            key=key,
            payload=payload,
            headers=headers,
            created_at=recorded,
            state=PENDING,
            attempts=0,
            next_attempt_at=recorded,
        )

    def capture_events(
        self, factory: Callable[..., Any], to_message: Callable[[object], Message | None] | None = None
    ) -> None:
        """Record the domain events of the sessions that `factory` makes as outbox messages.

        Events recorded by [`HasEvents`][uow.HasEvents] entities in those sessions are turned into
        messages by `to_message` just before each commit (of the transaction or of a savepoint),
        and inserted by that commit's flush: they commit with the work. Events recorded inside a
        savepoint that rolls back, or in a transaction that rolls back, are dropped. `to_message`
        sees the entities flushed, so database-generated keys are set; it returns `None` for an
        event that is not to be published. The events go to the outbox instead of a unit's
        `dispatch=` handler, which sees none of them.

        Args:
            factory: A `sessionmaker` or `async_sessionmaker`. Its `info` gets a key of the outbox,
                and its session class (for an `async_sessionmaker`, its sync session class) gets
                the listeners, once.
            to_message: Turns an event into a [`Message`][uow.outbox.Message]. By default events
                must be `Message`s; a commit with any other event raises `InvalidArgumentError`
                and rolls back.

        Raises:
            InvalidArgumentError: `factory` is not a `sessionmaker` or `async_sessionmaker`.
        """
        from uow.outbox._capture import capture

        capture(self, factory, to_message)
