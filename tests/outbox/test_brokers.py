"""The publishers on the real brokers: what arrives, what the broker refuses, and consumers under redelivery.

NATS JetStream stores a message published twice once (its id is the ``Nats-Msg-Id``); RabbitMQ
confirms each message and returns the unroutable; Redis Streams carry the id in a field and, with
a deduplication window, add a message once. Every consumer applies each message once through the
inbox, however often the broker redelivers it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tests.drivers import Flavour
from tests.outbox.conftest import Tables
from tests.outbox.models import INBOX, OUTBOX, Ledger
from uow import AsyncUnitOfWork
from uow.outbox import PENDING, SENT, BatchResult, Envelope, Inbox, Outbox, PublisherUnavailableError, Relay

outbox = Outbox(OUTBOX)
inbox = Inbox(INBOX, consumer="billing")
N = 60
DATABASES = pytest.mark.parametrize("backend_setup", ["sqlite-file", "postgresql", "mariadb"], indirect=True)
SYNC = pytest.mark.parametrize("flavour", ["sync"], indirect=True)
ASYNC = pytest.mark.parametrize("flavour", ["async"], indirect=True)


def record(flavour: Flavour, topic: str, count: int = N) -> dict[uuid.UUID, bytes]:
    """Commit `count` messages to `topic`; their ids and payloads."""
    with flavour.unit() as unit:
        payloads = {outbox.add(unit, topic, {"n": n}, key=f"k{n % 3}"): b'{"n":%d}' % n for n in range(count)}
        unit.commit()
    return payloads


def drain(flavour: Flavour, runner: asyncio.Runner, publisher: Any, **options: Any) -> BatchResult:
    """Relay everything due through `publisher`, then close it."""

    async def main() -> BatchResult:
        try:
            return await Relay(flavour.engine, outbox, publisher, batch_size=25, **options).drain()
        finally:
            await publisher.aclose()

    result: BatchResult = runner.run(asyncio.wait_for(main(), 60))
    return result


async def consume_once_each(
    flavour: Flavour, deliveries: AsyncIterator[tuple[str, Callable[[bool], Awaitable[None]]]], expected: int
) -> int:
    """Apply each delivery through the inbox; every third new one is 'lost' before its ack (redelivered).

    `deliveries` yields (message id, settle) where settle(True) acknowledges and settle(False) asks
    for redelivery. Returns how many deliveries there were.
    """
    seen = 0
    applied = 0
    async for message_id, settle in deliveries:
        seen += 1
        async with AsyncUnitOfWork(flavour.session_factory) as unit:
            new = await inbox.accept_async(unit, message_id)
            if new:
                unit.session.add(Ledger(consumer="billing", message_id=message_id))
            await unit.commit()
        if new:
            applied += 1
        await settle(not new or applied % 3 != 0)  # the work committed; the ack may still be lost
        if applied == expected and seen >= expected + expected // 3:
            break
    return seen


# -- NATS JetStream ---------------------------------------------------------------------------------


@pytest.fixture
def jetstream(nats_url: str, run_id: str, runner: asyncio.Runner) -> Iterator[tuple[Any, str]]:
    """A stream of this test's own on the subjects ``<run id>.>``; deleted after the test."""
    import nats

    client = runner.run(nats.connect(nats_url))
    context = client.jetstream()
    runner.run(context.add_stream(name=run_id, subjects=[f"{run_id}.>"]))
    try:
        yield context, f"{run_id}."
    finally:
        runner.run(context.delete_stream(run_id))
        runner.run(client.close())


@DATABASES
@SYNC
def test_jetstream_receives_each_committed_message_with_its_id_as_nats_msg_id(
    flavour: Flavour, tables: Tables, runner: asyncio.Runner, nats_url: str, jetstream: tuple[Any, str]
) -> None:
    from uow.outbox.nats import NatsPublisher, envelope_of

    context, prefix = jetstream
    payloads = record(flavour, "orders")
    publisher = NatsPublisher(nats_url, subject_prefix=prefix)

    assert drain(flavour, runner, publisher) == BatchResult(claimed=N, sent=N)

    async def read() -> list[Envelope]:
        subscription = await context.pull_subscribe(f"{prefix}>", stream=prefix.rstrip("."))
        messages = await subscription.fetch(N, timeout=5)
        return [envelope_of(message, subject_prefix=prefix) for message in messages]

    envelopes = runner.run(read())
    assert {envelope.id: envelope.payload for envelope in envelopes} == payloads
    assert {(envelope.topic, envelope.key) for envelope in envelopes} == {
        ("orders", f"k{n}") for n in range(3)
    }
    assert {row.state for row in tables.rows()} == {SENT}


@SYNC
@pytest.mark.parametrize("backend_setup", ["sqlite-file"], indirect=True)
def test_jetstream_stores_a_message_published_again_once(
    flavour: Flavour, tables: Tables, runner: asyncio.Runner, nats_url: str, jetstream: tuple[Any, str]
) -> None:
    from uow.outbox.nats import NatsPublisher

    context, prefix = jetstream
    envelopes = [Envelope(uuid.uuid4(), "orders", b"%d" % n) for n in range(N)]

    async def twice() -> list[Any]:
        async with NatsPublisher(nats_url, subject_prefix=prefix) as publisher:
            return [*await publisher.publish(envelopes), *await publisher.publish(envelopes[: N // 2])]

    assert runner.run(twice()) == [None] * (N + N // 2)
    assert runner.run(context.stream_info(prefix.rstrip("."))).state.messages == N


@SYNC
@pytest.mark.parametrize("backend_setup", ["postgresql"], indirect=True)
def test_a_message_on_a_subject_no_stream_takes_fails_and_backs_off(
    flavour: Flavour, tables: Tables, runner: asyncio.Runner, nats_url: str, run_id: str
) -> None:
    from uow.outbox.nats import NatsPublisher

    record(flavour, "nowhere", count=2)
    publisher = NatsPublisher(nats_url, subject_prefix=f"{run_id}.", timeout=1.0)

    assert drain(flavour, runner, publisher, backoff=lambda attempts: 60.0) == BatchResult(
        claimed=2, failed=2
    )
    assert [(row.state, row.attempts) for row in tables.rows()] == [(PENDING, 1)] * 2
    assert all("NoStreamResponseError" in row.last_error for row in tables.rows())


@ASYNC
@pytest.mark.parametrize("backend_setup", ["mariadb"], indirect=True)
def test_a_jetstream_consumer_applies_each_message_once_under_redelivery(
    flavour: Flavour, tables: Tables, runner: asyncio.Runner, nats_url: str, jetstream: tuple[Any, str]
) -> None:
    from uow.outbox.nats import NatsPublisher, message_id

    context, prefix = jetstream
    payloads = record(flavour, "orders")
    drain(flavour, runner, NatsPublisher(nats_url, subject_prefix=prefix))

    async def deliveries() -> AsyncIterator[tuple[str, Callable[[bool], Awaitable[None]]]]:
        subscription = await context.pull_subscribe(
            f"{prefix}>", durable="billing", stream=prefix.rstrip(".")
        )
        while True:
            for message in await subscription.fetch(10, timeout=5):

                async def settle(ack: bool, message: Any = message) -> None:
                    await (message.ack() if ack else message.nak())

                yield str(message_id(message)), settle

    seen = runner.run(asyncio.wait_for(consume_once_each(flavour, deliveries(), N), 60))

    assert seen > N
    assert sorted(tables.ledger()) == sorted(str(message) for message in payloads)


def test_an_unreachable_nats_server_makes_the_publisher_unavailable(runner: asyncio.Runner) -> None:
    from uow.outbox.nats import NatsPublisher

    publisher = NatsPublisher("nats://127.0.0.1:1", connect_timeout=0.5)
    with pytest.raises(PublisherUnavailableError, match="cannot connect to NATS"):
        runner.run(publisher.publish([Envelope(uuid.uuid4(), "t", b"")]))


# -- RabbitMQ ---------------------------------------------------------------------------------------


@pytest.fixture
def rabbitmq_queue(rabbitmq_url: str, run_id: str, runner: asyncio.Runner) -> Iterator[Any]:
    """A queue of this test's own, named by the run id (the default exchange routes to it); deleted after."""
    import aio_pika

    async def declare() -> tuple[Any, Any]:
        connection = await aio_pika.connect(rabbitmq_url)
        channel = await connection.channel()
        return connection, await channel.declare_queue(run_id, durable=False, auto_delete=False)

    async def delete() -> None:
        await queue.delete(if_unused=False, if_empty=False)
        await connection.close()

    connection, queue = runner.run(declare())
    try:
        yield queue
    finally:
        runner.run(delete())


@DATABASES
@SYNC
def test_rabbitmq_confirms_each_committed_message_with_its_id_as_message_id(
    flavour: Flavour, tables: Tables, runner: asyncio.Runner, rabbitmq_url: str, rabbitmq_queue: Any
) -> None:
    from uow.outbox.rabbitmq import RabbitMQPublisher, envelope_of

    payloads = record(flavour, rabbitmq_queue.name)
    publisher = RabbitMQPublisher(rabbitmq_url)

    assert drain(flavour, runner, publisher) == BatchResult(claimed=N, sent=N)

    async def read() -> list[Envelope]:
        found = []
        async with rabbitmq_queue.iterator() as messages:
            async for message in messages:
                await message.ack()
                found.append(envelope_of(message))
                if len(found) == N:
                    return found
        return found

    envelopes = runner.run(asyncio.wait_for(read(), 30))
    assert {envelope.id: envelope.payload for envelope in envelopes} == payloads
    assert {envelope.key for envelope in envelopes} == {"k0", "k1", "k2"}
    assert {row.state for row in tables.rows()} == {SENT}


@SYNC
@pytest.mark.parametrize("backend_setup", ["postgresql"], indirect=True)
def test_a_message_no_rabbitmq_queue_takes_is_returned_and_backs_off(
    flavour: Flavour, tables: Tables, runner: asyncio.Runner, rabbitmq_url: str, run_id: str
) -> None:
    from uow.outbox.rabbitmq import RabbitMQPublisher

    record(flavour, f"{run_id}-nowhere", count=2)
    publisher = RabbitMQPublisher(rabbitmq_url)

    assert drain(flavour, runner, publisher, backoff=lambda attempts: 60.0) == BatchResult(
        claimed=2, failed=2
    )
    assert [(row.state, row.attempts) for row in tables.rows()] == [(PENDING, 1)] * 2
    assert all("NO_ROUTE" in row.last_error for row in tables.rows())


@ASYNC
@pytest.mark.parametrize("backend_setup", ["postgresql"], indirect=True)
def test_a_rabbitmq_consumer_applies_each_message_once_under_redelivery(
    flavour: Flavour, tables: Tables, runner: asyncio.Runner, rabbitmq_url: str, rabbitmq_queue: Any
) -> None:
    from uow.outbox.rabbitmq import RabbitMQPublisher, message_id

    payloads = record(flavour, rabbitmq_queue.name)
    drain(flavour, runner, RabbitMQPublisher(rabbitmq_url))

    async def deliveries() -> AsyncIterator[tuple[str, Callable[[bool], Awaitable[None]]]]:
        async with rabbitmq_queue.iterator() as messages:
            async for message in messages:

                async def settle(ack: bool, message: Any = message) -> None:
                    await (message.ack() if ack else message.nack(requeue=True))

                yield str(message_id(message)), settle

    seen = runner.run(asyncio.wait_for(consume_once_each(flavour, deliveries(), N), 60))

    assert seen > N
    assert sorted(tables.ledger()) == sorted(str(message) for message in payloads)


def test_an_unreachable_rabbitmq_broker_makes_the_publisher_unavailable(runner: asyncio.Runner) -> None:
    from uow.outbox.rabbitmq import RabbitMQPublisher

    publisher = RabbitMQPublisher("amqp://guest:guest@127.0.0.1:1/")
    with pytest.raises(PublisherUnavailableError, match="cannot publish to RabbitMQ"):
        runner.run(publisher.publish([Envelope(uuid.uuid4(), "t", b"")]))


# -- Redis Streams ----------------------------------------------------------------------------------


@asynccontextmanager
async def redis_client(url: str, run_id: str) -> AsyncIterator[Any]:
    """A client; every key of this test's run id is deleted after."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        yield client
    finally:
        keys = [key async for key in client.scan_iter(match=f"{run_id}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@DATABASES
@SYNC
def test_redis_streams_receive_each_committed_message_with_its_id_in_a_field(
    flavour: Flavour, tables: Tables, runner: asyncio.Runner, redis_url: str, run_id: str
) -> None:
    from uow.outbox.redis import RedisStreamsPublisher, envelope_of

    payloads = record(flavour, "orders")
    publisher = RedisStreamsPublisher(redis_url, stream_prefix=f"{run_id}:")

    assert drain(flavour, runner, publisher) == BatchResult(claimed=N, sent=N)

    async def read() -> list[Envelope]:
        async with redis_client(redis_url, run_id) as client:
            entries = await client.xrange(f"{run_id}:orders")
        return [envelope_of(fields, stream_prefix=f"{run_id}:") for _, fields in entries]

    envelopes = runner.run(read())
    assert [envelope.id for envelope in envelopes] == list(payloads)  # one stream keeps the order
    assert {envelope.id: envelope.payload for envelope in envelopes} == payloads
    assert {(envelope.topic, envelope.key) for envelope in envelopes} == {
        ("orders", f"k{n}") for n in range(3)
    }


def test_with_a_dedup_window_a_redis_stream_adds_a_message_published_again_once(
    runner: asyncio.Runner, redis_url: str, run_id: str
) -> None:
    from uow.outbox.redis import RedisStreamsPublisher

    envelopes = [Envelope(uuid.uuid4(), "orders", b"%d" % n) for n in range(N)]

    async def twice() -> tuple[list[Any], int]:
        async with (
            redis_client(redis_url, run_id) as client,
            RedisStreamsPublisher(
                redis_url, stream_prefix=f"{run_id}:", dedup_window=60, dedup_prefix=f"{run_id}-seen:"
            ) as publisher,
        ):
            results = [*await publisher.publish(envelopes), *await publisher.publish(envelopes[: N // 2])]
            return results, await client.xlen(f"{run_id}:orders")

    assert runner.run(twice()) == ([None] * (N + N // 2), N)


@ASYNC
@pytest.mark.parametrize("backend_setup", ["sqlite-file"], indirect=True)
def test_a_redis_consumer_group_applies_each_message_once_under_redelivery(
    flavour: Flavour, tables: Tables, runner: asyncio.Runner, redis_url: str, run_id: str
) -> None:
    from uow.outbox.redis import RedisStreamsPublisher, message_id

    stream = f"{run_id}:orders"
    payloads = record(flavour, "orders")
    drain(flavour, runner, RedisStreamsPublisher(redis_url, stream_prefix=f"{run_id}:"))

    async def scenario() -> int:
        async with redis_client(redis_url, run_id) as client:
            await client.xgroup_create(stream, "billing", id="0")

            async def deliveries() -> AsyncIterator[tuple[str, Callable[[bool], Awaitable[None]]]]:
                while True:
                    # new entries first; then the consumer's pending ones: those it never acknowledged
                    for start in (">", "0"):
                        replies = await client.xreadgroup("billing", "one", {stream: start}, count=20)
                        for _, entries in replies:
                            for entry_id, fields in entries:

                                async def settle(ack: bool, entry_id: Any = entry_id) -> None:
                                    if ack:
                                        await client.xack(stream, "billing", entry_id)

                                yield str(message_id(fields)), settle

            return await consume_once_each(flavour, deliveries(), N)

    seen = runner.run(asyncio.wait_for(scenario(), 60))

    assert seen > N
    assert sorted(tables.ledger()) == sorted(str(message) for message in payloads)


def test_an_unreachable_redis_server_makes_the_publisher_unavailable(runner: asyncio.Runner) -> None:
    from uow.outbox.redis import RedisStreamsPublisher

    async def attempt() -> None:
        async with RedisStreamsPublisher("redis://127.0.0.1:1/0") as publisher:
            await publisher.publish([Envelope(uuid.uuid4(), "t", b"")])

    with pytest.raises(PublisherUnavailableError, match="cannot reach Redis"):
        runner.run(attempt())
