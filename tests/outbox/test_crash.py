"""Relays killed with SIGKILL at random points lose no message, and every duplicate carries the same id.

Relays run as ``python -m uow.outbox relay`` subprocesses. Their publisher (``crashing.py``) logs
each message the broker confirmed and then holds the batch for a moment before the relay marks it
sent, so that a relay killed in that window has published a batch that is still pending: another
relay claims and publishes it again, with the same ids. Some relays are killed in that window,
others at random moments, while the rest keep running; on SQLite one relay runs at a time. In the
end every message is marked sent, each was delivered at least once with its recorded payload, and
JetStream (deduplicating on ``Nats-Msg-Id``) holds exactly one copy of each.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import uow
from tests.conftest import Backend
from tests.drivers import Flavour
from tests.outbox.conftest import Tables
from tests.outbox.crashing import digest
from tests.outbox.models import OUTBOX
from uow.outbox import SENT, Outbox, stats

outbox = Outbox(OUTBOX)
N = 100
HOLD = 0.2
BATCH = 10
ROOT = Path(__file__).resolve().parents[2]


class RelayProcess:
    """One relay command in a subprocess, with the log of what its publisher had confirmed."""

    def __init__(self, url: str, broker: str, prefix: str, workdir: Path, number: int) -> None:
        self.log = workdir / f"relay-{number}.log"
        self.stderr = workdir / f"relay-{number}.err"
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(Path(uow.__file__).parents[1]), str(ROOT)]),
            "UOW_CRASH_BROKER": broker,
            "UOW_CRASH_PREFIX": prefix,
            "UOW_CRASH_LOG": str(self.log),
            "UOW_CRASH_HOLD": str(HOLD),
        }
        command = [
            sys.executable, "-m", "uow.outbox", "relay", "--url", url,
            "--publisher", "tests.outbox.crashing:publisher",
            "--batch-size", str(BATCH), "--poll-interval", "0.05", "--max-backoff", "0.2",
            "--log-level", "INFO",
        ]  # fmt: skip
        with self.stderr.open("wb") as errors:
            self.process = subprocess.Popen(command, cwd=ROOT, env=environment, stderr=errors)

    def confirmed(self) -> int:
        """How many messages its publisher logged as confirmed so far."""
        return self.log.read_text().count("\n") if self.log.exists() else 0

    def ready(self) -> bool:
        """Whether it has started relaying (it says so once, on its standard error)."""
        return b"relaying" in self.stderr.read_bytes()

    def kill(self) -> None:
        self.process.kill()  # SIGKILL: no cleanup of any kind
        self.process.wait(10)

    def stop(self) -> None:
        """Ask it to finish its batch and exit (SIGTERM); `wait()` for it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self) -> None:
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()

    def report(self) -> str:
        return f"relay exited {self.process.returncode}: {self.stderr.read_text()[-2000:]}"


def wait_until(condition: Any, timeout: float, what: str, relays: list[RelayProcess]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n" + "\n".join(r.report() for r in relays))
        for relay in relays:
            if relay.process.poll() not in (None, -signal.SIGKILL):
                raise AssertionError(relay.report())
        time.sleep(0.01)


def record(flavour: Flavour, topic: str) -> dict[str, str]:
    """Commit N messages in a few units; the digest of each one's payload by id.

    Units that roll back record messages too, in between: none of them may ever reach the broker.
    """
    recorded: dict[str, str] = {}
    for start in range(0, N, 50):
        with flavour.unit() as unit:
            for n in range(start, min(start + 50, N)):
                payload = f'{{"n":{n}}}'.encode()
                recorded[str(outbox.add(unit, topic, payload))] = digest(payload)
            unit.commit()
        with flavour.unit() as unit:
            outbox.add(unit, topic, b"rolled back")
            unit.flush()
            unit.rollback()
    return recorded


def pending(backend: Backend) -> int:
    return stats(backend.check, outbox).pending


def relay_with_kills(
    backend: Backend,
    url: str,
    broker: str,
    prefix: str,
    workdir: Path,
    side_by_side: int,
    record: Callable[[], None],
) -> None:
    """Start relays, `record()` messages, then kill relays mid-batch and at random until the outbox is empty.

    `side_by_side` relays run at once (1 on SQLite); each one killed is replaced at once.
    """
    rng = random.Random()
    started: list[RelayProcess] = []

    def start() -> RelayProcess:
        relay = RelayProcess(url, broker, prefix, workdir, len(started))
        started.append(relay)
        return relay

    running = [start() for _ in range(side_by_side)]
    try:
        wait_until(lambda: all(relay.ready() for relay in running), 60, "the relays to start", started)
        record()
        moments = ["in the window", "at random", "in the window"][: 2 if side_by_side == 1 else 3]
        for kill, moment in enumerate(moments):
            if kill and pending(backend) == 0:
                break  # the first kill always happens: all N messages are pending before it
            if moment == "in the window":  # between the broker's confirms and the relay's marking
                victim = rng.choice([relay for relay in running if relay.ready()] or running)
                before = victim.confirmed()
                wait_until(
                    lambda victim=victim, before=before, kill=kill: (
                        victim.confirmed() > before or (kill > 0 and pending(backend) == 0)
                    ),
                    30,
                    "a confirmed batch",
                    started,
                )
            else:  # claiming, publishing, holding or marking
                victim = rng.choice([relay for relay in running if relay.ready()] or running)
                time.sleep(rng.uniform(0.0, 0.6))
            running.remove(victim)
            victim.kill()
            running.append(start())
        wait_until(lambda: pending(backend) == 0, 60, "the outbox to be empty", started)
    finally:
        for relay in running:
            relay.stop()
        for relay in running:
            relay.wait()


def confirmations(workdir: Path) -> list[tuple[str, str]]:
    lines = [line for log in sorted(workdir.glob("relay-*.log")) for line in log.read_text().splitlines()]
    return [(line.split()[0], line.split()[1]) for line in lines]


def assert_delivered(
    recorded: dict[str, str], delivered: list[tuple[str, str]], confirmed: list[tuple[str, str]]
) -> None:
    """Every recorded message arrived and nothing else; every copy carries its id and its payload."""
    assert set(recorded) == {message_id for message_id, _ in delivered}
    assert all(recorded[message_id] == payload for message_id, payload in delivered)
    assert all(recorded[message_id] == payload for message_id, payload in confirmed)
    assert set(recorded) == {message_id for message_id, _ in confirmed}
    duplicates = Counter(message_id for message_id, _ in confirmed)
    assert sum(duplicates.values()) > len(recorded), "no batch was published twice: no kill hit its window"


# -- the brokers ------------------------------------------------------------------------------------


async def jetstream_setup(url: str, run_id: str) -> None:
    import nats

    client = await nats.connect(url)
    await client.jetstream().add_stream(name=run_id, subjects=[f"{run_id}.>"])
    await client.close()


async def jetstream_contents(url: str, run_id: str) -> tuple[int, list[tuple[str, str]]]:
    import nats

    from uow.outbox.nats import message_id

    client = await nats.connect(url)
    try:
        context = client.jetstream()
        held = (await context.stream_info(run_id)).state.messages
        subscription = await context.pull_subscribe(f"{run_id}.>", stream=run_id)
        messages = await subscription.fetch(held, timeout=10) if held else []
        return held, [(str(message_id(message)), digest(message.data)) for message in messages]
    finally:
        await context.delete_stream(run_id)
        await client.close()


async def rabbitmq_setup(url: str, run_id: str) -> None:
    import aio_pika

    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    await channel.declare_queue(run_id, durable=False, auto_delete=False)
    await connection.close()


async def rabbitmq_contents(url: str, run_id: str) -> list[tuple[str, str]]:
    import aio_pika

    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(run_id, durable=False, auto_delete=False)
        found = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            found.append((str(message.message_id), digest(message.body)))
        await queue.delete(if_unused=False, if_empty=False)
        return found
    finally:
        await connection.close()


async def redis_contents(url: str, run_id: str) -> list[tuple[str, str]]:
    from redis.asyncio import Redis

    from uow.outbox.redis import envelope_of

    client = Redis.from_url(url)
    try:
        entries = await client.xrange(f"{run_id}:orders")
        envelopes = [envelope_of(fields) for _, fields in entries]
        return [(str(envelope.id), digest(envelope.payload)) for envelope in envelopes]
    finally:
        await client.delete(f"{run_id}:orders")
        await client.aclose()


CASES = [
    pytest.param("postgresql", "sync", "nats", id="postgresql-psycopg-nats"),
    pytest.param("mariadb", "async", "nats", id="mariadb-aiomysql-nats"),
    pytest.param("postgresql", "async", "rabbitmq", id="postgresql-asyncpg-rabbitmq"),
    pytest.param("mariadb", "sync", "redis", id="mariadb-pymysql-redis"),
    pytest.param("sqlite-file", "sync", "nats", id="sqlite-one-relay-nats"),
]


@pytest.mark.parametrize(("backend_setup", "driver", "broker"), CASES, indirect=["backend_setup"])
@pytest.mark.parametrize("flavour", ["sync"], indirect=True)
def test_relays_killed_at_random_points_lose_no_message_and_duplicates_carry_the_same_id(
    flavour: Flavour,
    tables: Tables,
    runner: asyncio.Runner,
    request: pytest.FixtureRequest,
    workdir: Path,
    driver: str,
    broker: str,
) -> None:
    backend = tables.backend
    broker_url: str = request.getfixturevalue(f"{broker}_url")
    run_id = f"uowcrash{uuid.uuid4().hex[:10]}"
    url = backend.async_url if driver == "async" else backend.url
    side_by_side = 1 if backend.kind == "sqlite" else 4

    topic, prefix = "orders", f"{run_id}."
    if broker == "nats":
        runner.run(jetstream_setup(broker_url, run_id))
    elif broker == "rabbitmq":
        runner.run(rabbitmq_setup(broker_url, run_id))
        topic, prefix = run_id, ""  # the default exchange routes by queue name
    else:
        prefix = f"{run_id}:"
    recorded: dict[str, str] = {}

    try:
        relay_with_kills(
            backend,
            url,
            broker_url,
            prefix,
            workdir,
            side_by_side,
            lambda: recorded.update(record(flavour, topic)),
        )
    finally:
        if broker == "nats":
            held, delivered = runner.run(jetstream_contents(broker_url, run_id))
        elif broker == "rabbitmq":
            delivered = runner.run(rabbitmq_contents(broker_url, run_id))
        else:
            delivered = runner.run(redis_contents(broker_url, run_id))

    assert {row.state for row in tables.rows()} == {SENT}
    assert_delivered(recorded, delivered, confirmations(workdir))
    if broker == "nats":
        assert held == N  # JetStream dropped every copy it had seen the id of
