"""Publish outbox messages to NATS JetStream, deduplicated by message id (extra `uow[nats]`).

Each envelope is published to the subject `subject_prefix + topic` with the header `Nats-Msg-Id`
set to the message id: JetStream drops a message whose id it saw within the stream's duplicate
window (two minutes by default), so a batch that a relay publishes again after a crash is stored
once. The stream that takes the subjects is the application's to create.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from uow._errors import InvalidArgumentError
from uow.outbox._publisher import ClosesOnExit, Envelope, PublishError, PublisherUnavailableError

__all__ = ["ID_HEADER", "KEY_HEADER", "NatsPublisher", "envelope_of", "message_id"]

_logger = logging.getLogger("uow.outbox")

ID_HEADER = "Nats-Msg-Id"
"""The header that carries the message id; JetStream deduplicates on it."""
KEY_HEADER = "Uow-Key"
"""The header that carries the message's key, when it has one."""


class NatsPublisher(ClosesOnExit):
    """A [`Publisher`][uow.outbox.Publisher] to NATS JetStream.

    ```python
    async with NatsPublisher("nats://127.0.0.1:4222", subject_prefix="shop.") as publisher:
        await Relay(engine, outbox, publisher).run()
    ```

    It connects on first use (or uses the `client` given, which it then does not close) and
    publishes a batch concurrently, each message waiting for its JetStream acknowledgement. A
    message without an acknowledgement in `timeout` seconds, or whose subject no stream takes,
    fails on its own; an unreachable server fails the batch with `PublisherUnavailableError`.
    """

    def __init__(
        self,
        servers: str | list[str] = "nats://127.0.0.1:4222",
        *,
        subject_prefix: str = "",
        timeout: float = 5.0,
        connect_timeout: float = 5.0,
        client: Client | None = None,
        **options: Any,
    ) -> None:
        """Publish to the NATS servers at `servers`.

        Args:
            servers: One URL or a list of them.
            subject_prefix: Put before every topic to make the subject.
            timeout: Seconds to wait for each message's acknowledgement.
            connect_timeout: Seconds to wait for a connection before giving the batch up.
            client: A connected client to use instead of connecting.
            **options: Passed to `nats.connect()` (credentials, TLS, reconnect settings).
        """
        if not timeout > 0 or not connect_timeout > 0:
            raise InvalidArgumentError(
                f"timeout and connect_timeout must be positive, got {timeout!r} and {connect_timeout!r}"
            )
        self.servers: str | list[str] = servers
        self.subject_prefix: str = subject_prefix
        self.timeout: float = float(timeout)
        self.connect_timeout: float = float(connect_timeout)
        self._options: dict[str, Any] = {"error_cb": _log_error, **options}
        self._client = client
        self._owned = client is None
        self._jetstream: JetStreamContext | None = None
        self._lock = asyncio.Lock()

    async def _context(self) -> JetStreamContext:
        async with self._lock:
            client = self._client
            if client is None or (self._owned and client.is_closed):
                try:
                    client = await asyncio.wait_for(
                        nats.connect(self.servers, **self._options), self.connect_timeout
                    )
                except Exception as exc:
                    raise PublisherUnavailableError(
                        f"cannot connect to NATS at {self.servers}: {type(exc).__name__} {exc}"
                    ) from exc
                self._client = client
                self._jetstream = None
            if not client.is_connected:
                raise PublisherUnavailableError(f"not connected to NATS at {self.servers}")
            if self._jetstream is None:
                self._jetstream = client.jetstream(timeout=self.timeout)
            return self._jetstream

    async def publish(self, envelopes: Sequence[Envelope]) -> list[BaseException | None]:
        """Publish `envelopes` with JetStream; one result per envelope, `None` when acknowledged."""
        jetstream = await self._context()

        async def one(envelope: Envelope) -> None:
            headers = {**envelope.headers, ID_HEADER: str(envelope.id)}
            if envelope.key is not None:
                headers[KEY_HEADER] = envelope.key
            try:
                await jetstream.publish(
                    self.subject_prefix + envelope.topic,
                    envelope.payload,
                    timeout=self.timeout,
                    headers=headers,
                )
            except nats.errors.Error as exc:
                raise PublishError(
                    f"JetStream did not take {envelope.id}: {type(exc).__name__} {exc}"
                ) from exc

        results = await asyncio.gather(*(one(envelope) for envelope in envelopes), return_exceptions=True)
        return [result if isinstance(result, BaseException) else None for result in results]

    async def aclose(self) -> None:
        """Close the connection this publisher opened (not a `client` it was given)."""
        client, self._jetstream = self._client, None
        if client is not None and self._owned:
            self._client = None
            if not client.is_closed:
                await client.close()


async def _log_error(error: Exception) -> None:
    _logger.warning("NATS: %s %s", type(error).__name__, error)


def message_id(msg: Msg) -> str | None:
    """The outbox message id of a received message: its `Nats-Msg-Id` header."""
    return (msg.headers or {}).get(ID_HEADER)


def envelope_of(msg: Msg, *, subject_prefix: str = "") -> Envelope:
    """The envelope that a received message was published from.

    Raises:
        InvalidArgumentError: The message has no `Nats-Msg-Id` header with a UUID.
    """
    headers = dict(msg.headers or {})
    raw = headers.pop(ID_HEADER, None)
    try:
        id = UUID(raw or "")
    except ValueError:
        raise InvalidArgumentError(f"the message on {msg.subject!r} carries no outbox id") from None
    key = headers.pop(KEY_HEADER, None)
    topic = msg.subject.removeprefix(subject_prefix)
    return Envelope(id=id, topic=topic, payload=msg.data, key=key, headers=headers)
