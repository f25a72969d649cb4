"""The command: `python -m uow.outbox relay|stats|requeue|purge --url DATABASE_URL ...`."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from uow.outbox._publisher import Publisher
from uow.outbox._relay import Backoff, Relay
from uow.outbox._stats import (
    purge_sent,
    purge_sent_async,
    requeue_dead,
    requeue_dead_async,
    stats,
    stats_async,
)
from uow.outbox._tables import outbox_table

__all__ = ["main", "make_publisher"]

logger = logging.getLogger("uow.outbox")

_SCHEMES = {
    "nats": "nats",
    "tls": "nats",
    "amqp": "rabbitmq",
    "amqps": "rabbitmq",
    "redis": "redis",
    "rediss": "redis",
    "unix": "redis",
}


def make_publisher(spec: str, prefix: str = "", exchange: str = "") -> Publisher:
    """The publisher a `--publisher` argument names: a broker URL, or `module:attribute`.

    `nats://` and `tls://` give a NATS JetStream publisher, `amqp://` and `amqps://` a RabbitMQ
    one, `redis://`, `rediss://` and `unix://` a Redis Streams one; `prefix` goes before every
    topic. `package.module:name` imports `name`: a publisher, or a callable that returns one.
    """
    scheme = spec.partition("://")[0].lower() if "://" in spec else ""
    kind = _SCHEMES.get(scheme)
    if kind == "nats":
        from uow.outbox.nats import NatsPublisher

        return NatsPublisher(spec, subject_prefix=prefix)
    if kind == "rabbitmq":
        from uow.outbox.rabbitmq import RabbitMQPublisher

        return RabbitMQPublisher(spec, exchange=exchange, routing_key_prefix=prefix)
    if kind == "redis":
        from uow.outbox.redis import RedisStreamsPublisher

        return RedisStreamsPublisher(spec, stream_prefix=prefix)
    module, _, name = spec.partition(":")
    if scheme or not module or not name:
        raise SystemExit(
            f"--publisher {spec!r}: give a nats://, amqp:// or redis:// URL, or module:attribute"
        )
    target: Any = getattr(importlib.import_module(module), name)
    publisher = target if isinstance(target, Publisher) and not isinstance(target, type) else target()
    if not isinstance(publisher, Publisher):
        raise SystemExit(f"--publisher {spec!r} gave {publisher!r}, which is not a Publisher")
    return publisher


def _engine(url: str) -> Engine | AsyncEngine:
    if make_url(url).get_dialect().is_async:
        return create_async_engine(url)
    return create_engine(url)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m uow.outbox", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("--url", required=True, help="the database URL (a sync or an async driver)")
        sub.add_argument("--table", default="uow_outbox", help="the outbox table (default: uow_outbox)")
        sub.add_argument("--schema", default=None, help="the schema that holds it, if not the default")
        return sub

    relay = command("relay", "publish the outbox's committed messages until stopped (SIGTERM, Ctrl-C)")
    relay.add_argument(
        "--publisher", required=True, help="nats://..., amqp://..., redis://..., or module:attribute"
    )
    relay.add_argument("--prefix", default="", help="put before every topic (subject, routing key, stream)")
    relay.add_argument(
        "--exchange", default="", help="RabbitMQ: the exchange (default: the default exchange)"
    )
    relay.add_argument("--batch-size", type=int, default=100)
    relay.add_argument("--max-attempts", type=int, default=20)
    relay.add_argument("--poll-interval", type=float, default=1.0, help="seconds (default: 1)")
    relay.add_argument("--max-backoff", type=float, default=300.0, help="seconds (default: 300)")
    relay.add_argument("--no-listen", action="store_true", help="PostgreSQL: poll only, no LISTEN")
    relay.add_argument("--drain", action="store_true", help="publish what is due, then exit")
    relay.add_argument("--log-level", default="INFO")

    stats_command = command("stats", "print the counts by state and the oldest pending message's age")
    stats_command.add_argument("--json", action="store_true", help="one JSON object")

    command("requeue", "make every dead message pending again")

    purge = command("purge", "delete messages sent more than --older-than seconds ago")
    purge.add_argument("--older-than", type=float, default=7 * 86400.0, help="seconds (default: 7 days)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    table = outbox_table(MetaData(), arguments.table, schema=arguments.schema)
    engine = _engine(arguments.url)
    try:
        if arguments.command == "relay":
            return _relay(arguments, engine, table)
        return asyncio.run(_admin(arguments, engine, table))
    finally:
        if isinstance(engine, Engine):
            engine.dispose()


async def _admin(arguments: argparse.Namespace, engine: Engine | AsyncEngine, table: Any) -> int:
    try:
        if arguments.command == "stats":
            found = (
                await stats_async(engine, table) if isinstance(engine, AsyncEngine) else stats(engine, table)
            )
            if arguments.json:
                age = found.oldest_pending_age
                report = {
                    "pending": found.pending,
                    "due": found.due,
                    "retrying": found.retrying,
                    "sent": found.sent,
                    "dead": found.dead,
                    "oldest_pending_at": None
                    if found.oldest_pending_at is None
                    else found.oldest_pending_at.isoformat(),
                    "oldest_pending_age_seconds": None if age is None else age.total_seconds(),
                }
                print(json.dumps(report))
            else:
                age = found.oldest_pending_age
                oldest = "-" if age is None else f"{age.total_seconds():.1f} s old"
                print(
                    f"pending {found.pending} (due {found.due}, retrying {found.retrying}), "
                    f"sent {found.sent}, dead {found.dead}, oldest pending {oldest}"
                )
            return 0
        if arguments.command == "requeue":
            count = (
                await requeue_dead_async(engine, table)
                if isinstance(engine, AsyncEngine)
                else requeue_dead(engine, table)
            )
            print(f"requeued {count} dead message(s)")
            return 0
        older_than = timedelta(seconds=arguments.older_than)
        if isinstance(engine, AsyncEngine):
            count = await purge_sent_async(engine, table, older_than)
        else:
            count = purge_sent(engine, table, older_than)
        print(f"purged {count} sent message(s)")
        return 0
    finally:
        if isinstance(engine, AsyncEngine):
            await engine.dispose()


def _relay(arguments: argparse.Namespace, engine: Engine | AsyncEngine, table: Any) -> int:
    logging.basicConfig(
        level=arguments.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    publisher = make_publisher(arguments.publisher, arguments.prefix, arguments.exchange)
    relay = Relay(
        engine,
        table,
        publisher,
        batch_size=arguments.batch_size,
        max_attempts=arguments.max_attempts,
        backoff=Backoff(maximum=arguments.max_backoff),
        poll_interval=arguments.poll_interval,
        listen=not arguments.no_listen,
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            if arguments.drain:
                result = await relay.drain()
                logger.info("drained: %d sent, %d failed (%d dead)", result.sent, result.failed, result.dead)
            else:
                logger.info(
                    "relaying %s to %s; SIGTERM or Ctrl-C stops", table.fullname, type(publisher).__name__
                )
                await relay.run(stop)
        finally:
            await publisher.aclose()
            if isinstance(engine, AsyncEngine):
                await engine.dispose()

    asyncio.run(run())
    return 0
