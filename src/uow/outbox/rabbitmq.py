"""Publish outbox messages to RabbitMQ with publisher confirms (extra `uow[rabbitmq]`).

Each envelope is published to `exchange` (the default exchange unless named) with the routing key
`routing_key_prefix + topic`, as a persistent message whose `message_id` property is the message
id and whose `uow-key` header is its key. The channel runs in confirm mode: a message counts as
sent once the broker confirms it, and a message no queue takes is returned and fails
(`mandatory`). RabbitMQ does not deduplicate: consumers do, on `message_id`
([`Inbox`][uow.outbox.Inbox]).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC
from typing import Any
from uuid import UUID

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractIncomingMessage
from aio_pika.connection import make_url

from uow._errors import InvalidArgumentError
from uow.outbox._publisher import ClosesOnExit, Envelope, PublishError, PublisherUnavailableError

__all__ = ["KEY_HEADER", "RabbitMQPublisher", "envelope_of", "message_id"]

KEY_HEADER = "uow-key"
"""The header that carries the message's key, when it has one."""


class RabbitMQPublisher(ClosesOnExit):
    """A [`Publisher`][uow.outbox.Publisher] to RabbitMQ, with publisher confirms.

    ```python
    async with RabbitMQPublisher("amqp://guest:guest@127.0.0.1/", exchange="shop") as publisher:
        await Relay(engine, outbox, publisher).run()
    ```

    It connects on first use and reconnects after the connection drops; a batch is published
    concurrently and each message waits for its confirm. A message the broker rejects, returns
    as unroutable or does not confirm in `timeout` seconds fails on its own; an unreachable broker
    fails the batch with `PublisherUnavailableError`.
    """

    def __init__(
        self,
        url: str = "amqp://guest:guest@127.0.0.1:5672/",
        *,
        exchange: str = "",
        routing_key_prefix: str = "",
        mandatory: bool = True,
        persistent: bool = True,
        timeout: float = 10.0,
        **options: Any,
    ) -> None:
        """Publish to the broker at `url`.

        Args:
            url: An AMQP URL.
            exchange: The exchange to publish to; it must exist. The default exchange routes by
                queue name.
            routing_key_prefix: Put before every topic to make the routing key.
            mandatory: Fail a message that no queue takes, instead of letting the broker drop it.
            persistent: Mark messages persistent, so durable queues keep them across restarts.
            timeout: Seconds to wait for each message's confirm.
            **options: Connection settings added to the URL's query, as `aio_pika.connect()` takes
                them (`heartbeat`, `client_properties`, ...).
        """
        if not timeout > 0:
            raise InvalidArgumentError(f"timeout must be positive, got {timeout!r}")
        self.url: str = url
        self.exchange_name: str = exchange
        self.routing_key_prefix: str = routing_key_prefix
        self.mandatory: bool = mandatory
        self.delivery_mode: aio_pika.DeliveryMode = (
            aio_pika.DeliveryMode.PERSISTENT if persistent else aio_pika.DeliveryMode.NOT_PERSISTENT
        )
        self.timeout: float = float(timeout)
        self._options = options
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._lock = asyncio.Lock()

    async def _ready(self) -> AbstractExchange:
        async with self._lock:
            if self._exchange is not None and self._channel is not None and not self._channel.is_closed:
                return self._exchange
            await self._close()
            try:
                # made here rather than by aio_pika.connect(), so that a failed connection is closed too
                self._connection = aio_pika.Connection(make_url(self.url, **self._options))
                await self._connection.connect(timeout=self.timeout)
                self._channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
                self._exchange = (
                    await self._channel.get_exchange(self.exchange_name, ensure=True)
                    if self.exchange_name
                    else self._channel.default_exchange
                )
            except Exception as exc:
                await self._close()
                raise PublisherUnavailableError(
                    f"cannot publish to RabbitMQ exchange {self.exchange_name or '(default)'!r}: "
                    f"{type(exc).__name__} {exc}"
                ) from exc
            return self._exchange

    async def publish(self, envelopes: Sequence[Envelope]) -> list[BaseException | None]:
        """Publish `envelopes` and wait for their confirms; one result each, `None` when confirmed."""
        exchange = await self._ready()

        async def one(envelope: Envelope) -> None:
            headers: dict[str, Any] = dict(envelope.headers)
            if envelope.key is not None:
                headers[KEY_HEADER] = envelope.key
            message = aio_pika.Message(
                envelope.payload,
                headers=headers,
                message_id=str(envelope.id),
                timestamp=None if envelope.created_at is None else envelope.created_at.replace(tzinfo=UTC),
                delivery_mode=self.delivery_mode,
            )
            try:
                await exchange.publish(
                    message,
                    self.routing_key_prefix + envelope.topic,
                    mandatory=self.mandatory,
                    timeout=self.timeout,
                )
            except Exception as exc:
                raise PublishError(
                    f"RabbitMQ did not confirm {envelope.id}: {type(exc).__name__} {exc}"
                ) from exc

        results = await asyncio.gather(*(one(envelope) for envelope in envelopes), return_exceptions=True)
        return [result if isinstance(result, BaseException) else None for result in results]

    async def aclose(self) -> None:
        """Close the connection; publishing again opens a new one."""
        async with self._lock:
            await self._close()

    async def _close(self) -> None:
        connection, self._connection, self._channel, self._exchange = self._connection, None, None, None
        if connection is not None and not connection.is_closed:
            await connection.close()


def message_id(message: AbstractIncomingMessage) -> str | None:
    """The outbox message id of a received message: its `message_id` property."""
    return message.message_id


def envelope_of(message: AbstractIncomingMessage, *, routing_key_prefix: str = "") -> Envelope:
    """The envelope that a received message was published from.

    Raises:
        InvalidArgumentError: The message's `message_id` is not a UUID.
    """
    try:
        id = UUID(message.message_id or "")
    except ValueError:
        raise InvalidArgumentError(f"the message {message.delivery_tag} carries no outbox id") from None
    headers = {name: str(value) for name, value in (message.headers or {}).items()}
    key = headers.pop(KEY_HEADER, None)
    topic = (message.routing_key or "").removeprefix(routing_key_prefix)
    return Envelope(id=id, topic=topic, payload=message.body, key=key, headers=headers)
