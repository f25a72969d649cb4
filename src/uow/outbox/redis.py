"""Publish outbox messages to Redis Streams (extra `uow[redis]`).

Each envelope is appended with `XADD` to the stream `stream_prefix + topic` as the fields `id`
(the message id), `topic`, `key` (empty when none), `payload`, and `headers` (JSON). A batch goes
in one pipeline. Redis does not deduplicate by itself: consumers do, on the `id` field
([`Inbox`][uow.outbox.Inbox]); or give `dedup_window` and the publisher adds a message only if its
id was not added within that many seconds (a `SET NX` marker and the `XADD` in one Lua script).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from uow._errors import InvalidArgumentError
from uow.outbox._publisher import ClosesOnExit, Envelope, PublishError, PublisherUnavailableError

__all__ = ["RedisStreamsPublisher", "envelope_of", "message_id"]

# KEYS: stream, marker. ARGV: marker lifetime in ms, maxlen ('' for none), then field, value, ...
_ADD_ONCE = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return false end
local args = {KEYS[1]}
if ARGV[2] ~= '' then table.insert(args, 'MAXLEN'); table.insert(args, '~'); table.insert(args, ARGV[2]) end
table.insert(args, '*')
for i = 3, #ARGV do table.insert(args, ARGV[i]) end
return redis.call('XADD', unpack(args))
"""


class RedisStreamsPublisher(ClosesOnExit):
    """A [`Publisher`][uow.outbox.Publisher] to Redis Streams.

    ```python
    async with RedisStreamsPublisher("redis://127.0.0.1:6379/0", stream_prefix="shop:") as publisher:
        await Relay(engine, outbox, publisher).run()
    ```

    It connects on first use (or uses the `client` given, which it then does not close). A
    command that fails fails its message; a connection that cannot be made fails the batch with
    `PublisherUnavailableError`.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        stream_prefix: str = "",
        maxlen: int | None = None,
        dedup_window: float | None = None,
        dedup_prefix: str = "uow:outbox:seen:",
        client: Redis | None = None,
    ) -> None:
        """Publish to the Redis server at `url`.

        Args:
            url: A Redis URL.
            stream_prefix: Put before every topic to make the stream's key.
            maxlen: Trim each stream to about this many entries (`MAXLEN ~`); unbounded if `None`.
            dedup_window: Seconds during which a message id is remembered and a second add of it
                skipped (counted as published); no deduplication if `None`.
            dedup_prefix: Put before the message id to make the key that remembers it.
            client: A `redis.asyncio.Redis` client to use instead of connecting.
        """
        if maxlen is not None and (not isinstance(maxlen, int) or maxlen < 1):
            raise InvalidArgumentError(f"maxlen must be None or a positive int, got {maxlen!r}")
        if dedup_window is not None and not dedup_window > 0:
            raise InvalidArgumentError(f"dedup_window must be None or positive, got {dedup_window!r}")
        self.url: str = url
        self.stream_prefix: str = stream_prefix
        self.maxlen: int | None = maxlen
        self.dedup_window: float | None = dedup_window
        self.dedup_prefix: str = dedup_prefix
        self._client = client
        self._owned = client is None

    def _redis(self) -> Redis:
        if self._client is None:
            self._client = Redis.from_url(self.url)
        return self._client

    def _fields(self, envelope: Envelope) -> dict[str, str | bytes]:
        return {
            "id": str(envelope.id),
            "topic": envelope.topic,
            "key": envelope.key or "",
            "payload": envelope.payload,
            "headers": json.dumps(dict(envelope.headers), separators=(",", ":")),
        }

    async def publish(self, envelopes: Sequence[Envelope]) -> list[BaseException | None]:
        """Append `envelopes` to their streams in one pipeline; one result each, `None` when added."""
        client = self._redis()
        pipeline = client.pipeline(transaction=False)
        for envelope in envelopes:
            stream = self.stream_prefix + envelope.topic
            fields = self._fields(envelope)
            if self.dedup_window is None:
                pipeline.xadd(stream, fields, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
            else:
                arguments: list[Any] = [
                    int(self.dedup_window * 1000),
                    "" if self.maxlen is None else self.maxlen,
                ]
                for name, value in fields.items():
                    arguments += [name, value]
                pipeline.eval(_ADD_ONCE, 2, stream, self.dedup_prefix + str(envelope.id), *arguments)
        try:
            replies = await pipeline.execute(raise_on_error=False)
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
            raise PublisherUnavailableError(f"cannot reach Redis at {self.url}: {exc}") from exc
        return [
            PublishError(f"Redis did not add {envelope.id}: {reply}")
            if isinstance(reply, Exception)
            else None
            for envelope, reply in zip(envelopes, replies, strict=True)
        ]

    async def aclose(self) -> None:
        """Close the connection pool this publisher opened (not a `client` it was given)."""
        client = self._client
        if client is not None and self._owned:
            self._client = None
            await client.aclose()


def message_id(fields: Mapping[Any, Any]) -> str | None:
    """The outbox message id of a stream entry's fields (as `XREAD` returns them, bytes or str)."""
    value = fields.get(b"id", fields.get("id"))
    return value.decode() if isinstance(value, bytes) else value


def envelope_of(fields: Mapping[Any, Any], *, stream_prefix: str = "") -> Envelope:
    """The envelope that a stream entry was added from.

    Raises:
        InvalidArgumentError: The entry has no `id` field with a UUID.
    """
    text = {(name.decode() if isinstance(name, bytes) else name): value for name, value in fields.items()}

    def string(name: str) -> str:
        value = text.get(name, b"")
        return value.decode() if isinstance(value, bytes) else str(value)

    try:
        id = UUID(string("id"))
    except ValueError:
        raise InvalidArgumentError("the stream entry carries no outbox id") from None
    payload = text.get("payload", b"")
    return Envelope(
        id=id,
        topic=string("topic").removeprefix(stream_prefix),
        payload=payload if isinstance(payload, bytes) else str(payload).encode(),
        key=string("key") or None,
        headers=json.loads(string("headers") or "{}"),
    )
