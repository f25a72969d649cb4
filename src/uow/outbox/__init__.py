"""The transactional outbox and inbox: messages that leave the database exactly when the work commits.

- [`Outbox`][uow.outbox.Outbox] records messages (explicit ones, or the domain events of a
  session factory) as rows of an outbox table, in the unit's own transaction.
- [`Relay`][uow.outbox.Relay] publishes the committed rows through a
  [`Publisher`][uow.outbox.Publisher], at least once, and marks them sent; several relays share the
  work on PostgreSQL, MySQL and MariaDB. `python -m uow.outbox relay` runs one.
- Publishers for NATS JetStream (`uow.outbox.nats`), RabbitMQ (`uow.outbox.rabbitmq`) and Redis
  Streams (`uow.outbox.redis`), each behind an extra of its own (`uow[nats]`, `uow[rabbitmq]`,
  `uow[redis]`).
- [`Inbox`][uow.outbox.Inbox] makes a consumer apply each message once, in the same transaction as
  the message's effects.

The tables are the application's: [`outbox_table()`][uow.outbox.outbox_table] and
[`inbox_table()`][uow.outbox.inbox_table] define them in its metadata, for its migrations.
"""

from __future__ import annotations

from uow.outbox._inbox import Inbox
from uow.outbox._outbox import Message, Outbox, to_bytes
from uow.outbox._publisher import Envelope, OutboxError, Publisher, PublishError, PublisherUnavailableError
from uow.outbox._relay import Backoff, BatchResult, Relay
from uow.outbox._stats import (
    purge_sent,
    purge_sent_async,
    requeue_dead,
    requeue_dead_async,
    stats,
    stats_async,
)
from uow.outbox._store import OutboxStats
from uow.outbox._tables import DEAD, PENDING, SENT, Payload, inbox_table, outbox_table

__all__ = [
    "DEAD",
    "PENDING",
    "SENT",
    "Backoff",
    "BatchResult",
    "Envelope",
    "Inbox",
    "Message",
    "Outbox",
    "OutboxError",
    "OutboxStats",
    "Payload",
    "PublishError",
    "Publisher",
    "PublisherUnavailableError",
    "Relay",
    "inbox_table",
    "outbox_table",
    "purge_sent",
    "purge_sent_async",
    "requeue_dead",
    "requeue_dead_async",
    "stats",
    "stats_async",
    "to_bytes",
]
