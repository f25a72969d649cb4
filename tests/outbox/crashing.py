"""The publisher that the crash specifications give the relay command: a real one that logs and holds.

`python -m uow.outbox relay --publisher tests.outbox.crashing:publisher` builds it from the
environment: ``UOW_CRASH_BROKER`` (a nats://, amqp:// or redis:// URL), ``UOW_CRASH_PREFIX``
(put before every topic), ``UOW_CRASH_LOG`` (a file that gets one line ``<id> <sha256 of the
payload>`` per message the broker confirmed, written before the relay marks them) and
``UOW_CRASH_HOLD`` (seconds to wait after that, before the relay marks them: the window in which
a relay killed has published a batch that stays pending).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Sequence

from uow.outbox import Envelope, Publisher


class LoggingPublisher:
    def __init__(self, inner: Publisher, log: str, hold: float) -> None:
        self.inner = inner
        self.log = log
        self.hold = hold

    async def publish(self, envelopes: Sequence[Envelope]) -> Sequence[BaseException | None]:
        results = await self.inner.publish(envelopes)
        lines = "".join(
            f"{envelope.id} {digest(envelope.payload)}\n"
            for envelope, result in zip(envelopes, results, strict=True)
            if result is None
        )
        descriptor = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(descriptor, lines.encode())
        finally:
            os.close(descriptor)
        await asyncio.sleep(self.hold)
        return results

    async def aclose(self) -> None:
        await self.inner.aclose()


def digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()[:16]


def publisher() -> LoggingPublisher:
    url = os.environ["UOW_CRASH_BROKER"]
    prefix = os.environ.get("UOW_CRASH_PREFIX", "")
    inner: Publisher
    if url.startswith("nats://"):
        from uow.outbox.nats import NatsPublisher

        inner = NatsPublisher(url, subject_prefix=prefix)
    elif url.startswith("amqp://"):
        from uow.outbox.rabbitmq import RabbitMQPublisher

        inner = RabbitMQPublisher(url, routing_key_prefix=prefix)
    else:
        from uow.outbox.redis import RedisStreamsPublisher

        inner = RedisStreamsPublisher(url, stream_prefix=prefix)
    return LoggingPublisher(inner, os.environ["UOW_CRASH_LOG"], float(os.environ.get("UOW_CRASH_HOLD", "0")))
