"""Relay throughput: messages per second from the outbox table to each broker, per database.

    python -m benchmarks.outbox_throughput [--messages 5000] [--batch-size 100] [--relays 1] [--repeat 3]
        [--databases sqlite,postgresql,mariadb] [--brokers null,nats,rabbitmq,redis] [--async] [--json]

A standalone script (not part of ``python -m benchmarks``). For each database and broker it commits
``--messages`` messages to a table of its own (``uow_outbox_bench``, dropped after), then times
``Relay.drain()`` until every message is marked sent, with ``--relays`` relays at once (threads with a
sync engine, tasks with ``--async``; one on SQLite), and shows the median of ``--repeat`` runs. The
``null`` broker confirms everything without I/O: the database's share of the cost. Every run checks
that each message is marked sent and that the broker holds every one (NATS exactly once each), and
exits non-zero if not.

Servers: ``UOW_BENCH_POSTGRESQL_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/uow_bench``),
``UOW_BENCH_MARIADB_URL`` (default ``mysql+pymysql://root@127.0.0.1:3306/uow_bench``), NATS at
``UOW_BENCH_NATS_URL`` (``nats://127.0.0.1:4222``), RabbitMQ at ``UOW_BENCH_RABBITMQ_URL``
(``amqp://guest:guest@127.0.0.1:5672/``), Redis at ``UOW_BENCH_REDIS_URL`` (``redis://127.0.0.1:6379/0``).
A database or broker that cannot be reached is reported as skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, insert, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from uow.outbox import PENDING, Envelope, Relay, outbox_table, stats

DATABASES = {
    "sqlite": None,
    "postgresql": ("UOW_BENCH_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/uow_bench"),
    "mariadb": ("UOW_BENCH_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/uow_bench"),
}
ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg", "mysql": "aiomysql"}
BROKERS = {
    "null": None,
    "nats": ("UOW_BENCH_NATS_URL", "nats://127.0.0.1:4222"),
    "rabbitmq": ("UOW_BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    "redis": ("UOW_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
}
TABLE = "uow_outbox_bench"


@dataclass
class Result:
    database: str
    broker: str
    relays: int
    messages: int
    seconds: float
    per_second: float
    note: str = ""


class NullPublisher:
    """Confirms every envelope at once: what the relay costs without a broker."""

    async def publish(self, envelopes: Sequence[Envelope]) -> list[BaseException | None]:
        return [None] * len(envelopes)

    async def aclose(self) -> None:
        pass


def _url(name: str, spec: tuple[str, str] | None, workdir: Path) -> str:
    if spec is None:
        return f"sqlite:///{workdir / 'outbox-bench.db'}"
    variable, default = spec
    return os.environ.get(variable, default)


def _async_url(url: str) -> str:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    return parsed.set(drivername=f"{backend}+{ASYNC_DRIVERS[backend]}").render_as_string(hide_password=False)


class Broker:
    """A broker's destination of this run's own: made before, checked and removed after."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url
        self.run_id = f"uowbench{uuid.uuid4().hex[:8]}"

    @property
    def topic(self) -> str:
        return self.run_id if self.name == "rabbitmq" else "orders"

    def publisher(self) -> Any:
        if self.name == "nats":
            from uow.outbox.nats import NatsPublisher

            return NatsPublisher(self.url, subject_prefix=f"{self.run_id}.")
        if self.name == "rabbitmq":
            from uow.outbox.rabbitmq import RabbitMQPublisher

            return RabbitMQPublisher(self.url)
        if self.name == "redis":
            from uow.outbox.redis import RedisStreamsPublisher

            return RedisStreamsPublisher(self.url, stream_prefix=f"{self.run_id}:")
        return NullPublisher()

    async def setup(self) -> None:
        if self.name == "nats":
            import nats

            client = await asyncio.wait_for(nats.connect(self.url, max_reconnect_attempts=1), 5)
            await client.jetstream().add_stream(name=self.run_id, subjects=[f"{self.run_id}.>"])
            await client.close()
        elif self.name == "rabbitmq":
            import aio_pika

            connection = await aio_pika.connect(self.url)
            channel = await connection.channel()
            await channel.declare_queue(self.run_id, durable=False, auto_delete=False)
            await connection.close()
        elif self.name == "redis":
            from redis.asyncio import Redis

            client = Redis.from_url(self.url, socket_connect_timeout=5)
            await client.ping()
            await client.aclose()

    async def held_and_remove(self) -> int | None:
        """How many messages the destination holds; it is removed."""
        if self.name == "nats":
            import nats

            client = await nats.connect(self.url)
            context = client.jetstream()
            held = (await context.stream_info(self.run_id)).state.messages
            await context.delete_stream(self.run_id)
            await client.close()
            return int(held)
        if self.name == "rabbitmq":
            import aio_pika

            connection = await aio_pika.connect(self.url)
            channel = await connection.channel()
            queue = await channel.declare_queue(self.run_id, passive=True)
            held = queue.declaration_result.message_count
            await queue.delete(if_unused=False, if_empty=False)
            await connection.close()
            return int(held or 0)
        if self.name == "redis":
            from redis.asyncio import Redis

            client = Redis.from_url(self.url)
            stream = f"{self.run_id}:orders"
            held = await client.xlen(stream)
            await client.delete(stream)
            await client.aclose()
            return int(held)
        return None


def _seed(engine: Engine, table: Any, topic: str, count: int) -> None:
    from datetime import UTC, datetime

    at = datetime.now(UTC).replace(tzinfo=None)
    rows = [
        {
            "id": uuid.uuid4(),
            "topic": topic,
            "key": str(n % 16),
            "payload": b'{"order":%d,"total":"%d.00","lines":[1,2,3]}' % (n, n % 997),
            "headers": None,
            "created_at": at,
            "state": PENDING,
            "attempts": 0,
            "next_attempt_at": at,
        }
        for n in range(count)
    ]
    with engine.begin() as connection:
        for start in range(0, count, 1000):
            connection.execute(insert(table), rows[start : start + 1000])


def _drain_threads(engine: Engine, table: Any, broker: Broker, relays: int, batch_size: int) -> None:
    errors: list[BaseException] = []

    def one() -> None:
        try:
            Relay(engine, table, broker.publisher(), batch_size=batch_size, listen=False).drain_sync()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(relays)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


async def _drain_tasks(engine: AsyncEngine, table: Any, broker: Broker, relays: int, batch_size: int) -> None:
    publishers = [broker.publisher() for _ in range(relays)]
    try:
        await asyncio.gather(
            *(Relay(engine, table, each, batch_size=batch_size, listen=False).drain() for each in publishers)
        )
    finally:
        for publisher in publishers:
            await publisher.aclose()


def measure(database: str, url: str, broker: Broker, args: argparse.Namespace) -> Result:
    relays = 1 if database == "sqlite" else args.relays
    check = create_engine(url)
    try:
        metadata = MetaData()
        table = outbox_table(metadata, TABLE)
        metadata.drop_all(check)
        metadata.create_all(check)
        asyncio.run(broker.setup())
        _seed(check, table, broker.topic, args.messages)
        started = time.perf_counter()
        if args.use_async:
            engine = create_async_engine(_async_url(url))

            async def run() -> None:
                try:
                    await _drain_tasks(engine, table, broker, relays, args.batch_size)
                finally:
                    await engine.dispose()

            asyncio.run(run())
        else:
            engine = create_engine(url, pool_size=max(5, relays))
            try:
                _drain_threads(engine, table, broker, relays, args.batch_size)
            finally:
                engine.dispose()
        seconds = time.perf_counter() - started
        found = stats(check, table)
        held = asyncio.run(broker.held_and_remove())
        metadata.drop_all(check)
    finally:
        check.dispose()
    if found.sent != args.messages or found.pending or found.dead:
        raise SystemExit(f"{database}/{broker.name}: {found} after draining {args.messages} messages")
    short = held is not None and held < args.messages
    if short or (broker.name == "nats" and held != args.messages):
        raise SystemExit(f"{database}/{broker.name}: the broker holds {held} of {args.messages} messages")
    note = (
        "" if held is None or held == args.messages else f"{held - args.messages} duplicate(s) at the broker"
    )
    return Result(database, broker.name, relays, args.messages, seconds, args.messages / seconds, note)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.outbox_throughput", description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--relays", type=int, default=1, help="relays at once on PostgreSQL and MariaDB")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per database and broker; the median is shown"
    )
    parser.add_argument("--databases", default="sqlite,postgresql,mariadb")
    parser.add_argument("--brokers", default="null,nats,rabbitmq,redis")
    parser.add_argument("--async", dest="use_async", action="store_true", help="async drivers and tasks")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)

    results: list[Result] = []
    with tempfile.TemporaryDirectory() as workdir:
        for database in args.databases.split(","):
            url = _url(database, DATABASES[database], Path(workdir))
            for name in args.brokers.split(","):
                spec = BROKERS[name]
                broker = Broker(name, "" if spec is None else os.environ.get(spec[0], spec[1]))
                try:
                    runs = []
                    for _ in range(args.repeat):
                        runs.append(measure(database, url, broker, args))
                        broker = Broker(name, broker.url)
                    runs.sort(key=lambda run: run.per_second)
                    result = runs[len(runs) // 2]
                    spread = f"{runs[0].per_second:.0f}-{runs[-1].per_second:.0f}"
                    result.note = " ".join(filter(None, [f"(runs: {spread})", result.note]))
                except SystemExit:
                    raise
                except Exception as exc:  # a server that is not there: say so and go on
                    reason = str(exc).splitlines()[0][:100]
                    results.append(
                        Result(database, name, 0, 0, 0.0, 0.0, f"skipped: {type(exc).__name__} {reason}")
                    )
                    continue
                results.append(result)
                if not args.json:
                    print(
                        f"{database:<11} {name:<9} {result.relays} relay(s) {result.messages:>6} messages "
                        f"{result.seconds:7.2f} s {result.per_second:9.0f} messages/s {result.note}",
                        flush=True,
                    )
    if args.json:
        print(json.dumps([asdict(result) for result in results], indent=2))
    else:
        for result in results:
            if result.note.startswith("skipped"):
                print(f"{result.database:<11} {result.broker:<9} {result.note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
