"""The relay: committed messages are published at least once, marked sent, retried, and dead in the end."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

import uow
from tests.drivers import Flavour
from tests.outbox.conftest import Tables
from tests.outbox.models import OUTBOX
from tests.outbox.publishers import RecordingPublisher
from uow import AsyncUnitOfWork
from uow.outbox import (
    DEAD,
    PENDING,
    SENT,
    BatchResult,
    Outbox,
    PublisherUnavailableError,
    Relay,
    purge_sent,
    purge_sent_async,
    requeue_dead,
    requeue_dead_async,
    stats,
    stats_async,
)

outbox = Outbox(OUTBOX)
SERVERS = pytest.mark.parametrize("backend_setup", ["postgresql", "mariadb"], indirect=True)
POSTGRESQL = pytest.mark.parametrize("backend_setup", ["postgresql"], indirect=True)


def record(flavour: Flavour, *topics: str) -> list[Any]:
    with flavour.unit() as unit:
        ids = [outbox.add(unit, topic, topic.encode()) for topic in topics]
        unit.commit()
    return ids


def relay(flavour: Flavour, publisher: RecordingPublisher, **options: Any) -> Relay:
    return Relay(flavour.engine, outbox, publisher, **options)


def run(runner: asyncio.Runner, awaitable: Any) -> Any:
    return runner.run(awaitable)


def tend(
    flavour: Flavour, runner: asyncio.Runner, sync: Callable[..., Any], async_: Callable[..., Any], *args: Any
) -> Any:
    """Call the sync function of a pair on a sync engine, and await the async one on an async engine."""
    if isinstance(flavour.engine, Engine):
        return sync(flavour.engine, outbox, *args)
    return runner.run(async_(flavour.engine, outbox, *args))


def test_drain_publishes_the_committed_messages_in_recording_order_and_marks_them_sent(
    flavour: Flavour, tables: Tables, runner: asyncio.Runner
) -> None:
    ids = record(flavour, "a", "b", "c")
    with flavour.unit() as unit:
        outbox.add(unit, "rolled back", b"")
        unit.rollback()
    publisher = RecordingPublisher()

    result = run(runner, relay(flavour, publisher).drain())

    assert result == BatchResult(claimed=3, sent=3)
    assert [(envelope.id, envelope.topic, envelope.payload) for envelope in publisher.published] == [
        (ids[0], "a", b"a"),
        (ids[1], "b", b"b"),
        (ids[2], "c", b"c"),
    ]
    rows = tables.rows()
    assert [(row.state, row.attempts, row.last_error) for row in rows] == [(SENT, 1, None)] * 3
    assert all(row.sent_at >= row.created_at for row in rows)


def test_envelopes_carry_the_key_the_headers_and_the_recording_time(
    flavour: Flavour, tables: Tables, runner: asyncio.Runner
) -> None:
    with flavour.unit() as unit:
        outbox.add(unit, "t", {"n": 1}, key="k-1", headers={"trace": "x"})
        unit.commit()
    publisher = RecordingPublisher()

    run(runner, relay(flavour, publisher).drain())

    (envelope,) = publisher.published
    (row,) = tables.rows()
    assert (envelope.key, dict(envelope.headers), envelope.payload) == ("k-1", {"trace": "x"}, b'{"n":1}')
    assert (envelope.created_at, envelope.attempts) == (row.created_at, 0)


def test_a_step_claims_at_most_batch_size_messages(
    flavour: Flavour, tables: Tables, runner: asyncio.Runner
) -> None:
    record(flavour, *"abcde")
    publisher = RecordingPublisher()
    small = relay(flavour, publisher, batch_size=2)

    assert run(runner, small.step()) == BatchResult(claimed=2, sent=2)
    assert publisher.topics == ["a", "b"]
    assert run(runner, small.drain()) == BatchResult(claimed=3, sent=3)
    assert publisher.topics == list("abcde")
    assert run(runner, small.step()) == BatchResult()


def test_a_refused_message_backs_off_and_the_rest_of_its_batch_is_sent(
    flavour: Flavour, tables: Tables, runner: asyncio.Runner
) -> None:
    record(flavour, "good", "bad", "good too")
    publisher = RecordingPublisher(refuse=lambda envelope: envelope.topic == "bad")
    slow = relay(flavour, publisher, backoff=lambda attempts: 60.0 * attempts)

    assert run(runner, slow.drain()) == BatchResult(claimed=3, sent=2, failed=1)

    rows = {row.topic: row for row in tables.rows()}
    bad = rows["bad"]
    assert (bad.state, bad.attempts, bad.sent_at) == (PENDING, 1, None)
    assert bad.last_error == "PublishError: refused bad"
    assert timedelta(seconds=59) < bad.next_attempt_at - bad.created_at < timedelta(seconds=70)
    assert (rows["good"].state, rows["good too"].state) == (SENT, SENT)
    assert run(runner, slow.drain()) == BatchResult()  # not due before its backoff has passed


def test_a_message_refused_max_attempts_times_is_dead_until_requeued(
    flavour: Flavour, tables: Tables, runner: asyncio.Runner
) -> None:
    record(flavour, "bad")
    publisher = RecordingPublisher(refuse=lambda envelope: envelope.topic == "bad")
    eager = relay(flavour, publisher, max_attempts=3, backoff=lambda attempts: 0.0)

    assert run(runner, eager.drain()) == BatchResult(claimed=3, failed=3, dead=1)

    (row,) = tables.rows()
    assert (row.state, row.attempts) == (DEAD, 3)
    assert tend(flavour, runner, stats, stats_async).dead == 1
    assert run(runner, eager.drain()) == BatchResult()  # the relay leaves dead letters alone

    publisher.refuse = lambda envelope: False
    assert tend(flavour, runner, requeue_dead, requeue_dead_async) == 1
    (row,) = tables.rows()
    assert (row.state, row.attempts, row.last_error) == (PENDING, 0, None)
    assert run(runner, eager.drain()) == BatchResult(claimed=1, sent=1)


def test_an_unavailable_publisher_leaves_the_batch_pending_without_counting_an_attempt(
    flavour: Flavour, tables: Tables, runner: asyncio.Runner
) -> None:
    record(flavour, "a", "b")
    publisher = RecordingPublisher()
    publisher.down = True

    with pytest.raises(PublisherUnavailableError):
        run(runner, relay(flavour, publisher).step())

    assert [(row.state, row.attempts) for row in tables.rows()] == [(PENDING, 0)] * 2
    publisher.down = False
    assert run(runner, relay(flavour, publisher).drain()) == BatchResult(claimed=2, sent=2)


def test_stats_count_the_messages_by_state_and_age_the_oldest_pending_one(
    flavour: Flavour, tables: Tables, runner: asyncio.Runner
) -> None:
    empty = tend(flavour, runner, stats, stats_async)
    assert (empty.pending, empty.sent, empty.dead, empty.oldest_pending_age) == (0, 0, 0, None)
    record(flavour, "sent", "bad", "waiting")
    publisher = RecordingPublisher(refuse=lambda envelope: envelope.topic == "bad")
    run(runner, relay(flavour, publisher, batch_size=2, backoff=lambda attempts: 600.0).step())
    time.sleep(0.05)

    found = tend(flavour, runner, stats, stats_async)

    oldest = tables.rows()[1]
    assert (found.pending, found.due, found.retrying, found.sent, found.dead) == (2, 1, 1, 1, 0)
    assert found.oldest_pending_at == oldest.created_at
    assert found.oldest_pending_age is not None
    assert found.oldest_pending_age >= timedelta(seconds=0.05)


def test_purge_deletes_only_the_messages_sent_longer_ago_than_asked(
    flavour: Flavour, tables: Tables, runner: asyncio.Runner
) -> None:
    record(flavour, "sent", "pending")
    run(runner, relay(flavour, RecordingPublisher(), batch_size=1).step())

    assert tend(flavour, runner, purge_sent, purge_sent_async, timedelta(days=1)) == 0
    assert tend(flavour, runner, purge_sent, purge_sent_async, timedelta(0)) == 1
    assert tables.topics() == ["pending"]


def test_purge_refuses_a_negative_age(flavour: Flavour, tables: Tables, runner: asyncio.Runner) -> None:
    with pytest.raises(uow.InvalidArgumentError, match="older_than"):
        tend(flavour, runner, purge_sent, purge_sent_async, timedelta(seconds=-1))


def test_a_relay_of_the_bare_table_relays_as_one_of_the_outbox(
    flavour: Flavour, tables: Tables, runner: asyncio.Runner
) -> None:
    record(flavour, "a")
    publisher = RecordingPublisher()

    run(runner, Relay(flavour.engine, OUTBOX, publisher).drain())

    assert publisher.topics == ["a"]


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 10_001}, "batch_size"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"poll_interval": 0}, "poll_interval"),
    ],
)
def test_a_relay_refuses_settings_out_of_range(
    options: dict[str, Any], complaint: str, flavour: Flavour
) -> None:
    with pytest.raises(uow.InvalidArgumentError, match=complaint):
        relay(flavour, RecordingPublisher(), **options)


def test_a_relay_refuses_a_publisher_without_publish_and_aclose(flavour: Flavour) -> None:
    with pytest.raises(uow.InvalidArgumentError, match="publisher must have"):
        Relay(flavour.engine, outbox, object())  # type: ignore[arg-type]


# -- running ---------------------------------------------------------------------------------------


def test_run_publishes_what_commits_while_it_runs_and_returns_when_stopped(
    flavour: Flavour, tables: Tables, runner: asyncio.Runner
) -> None:
    publisher = RecordingPublisher()
    stop = asyncio.Event()
    running = relay(flavour, publisher, poll_interval=0.02, listen=False)

    async def scenario() -> None:
        task = asyncio.create_task(running.run(stop))
        for topic in ("first", "second"):
            await record_now(flavour, topic)
            await until(lambda topic=topic: topic in publisher.topics)
        stop.set()
        await asyncio.wait_for(task, 5)

    run(runner, scenario())
    assert publisher.topics == ["first", "second"]


def test_run_carries_on_after_the_publisher_was_unavailable(
    flavour: Flavour, tables: Tables, runner: asyncio.Runner
) -> None:
    record(flavour, "a")
    publisher = RecordingPublisher()
    publisher.down = True
    stop = asyncio.Event()
    running = relay(flavour, publisher, poll_interval=0.02, listen=False, backoff=lambda attempts: 0.02)

    async def scenario() -> None:
        task = asyncio.create_task(running.run(stop))
        await until(lambda: publisher.calls >= 2)
        publisher.down = False
        await until(lambda: publisher.topics == ["a"])
        stop.set()
        await asyncio.wait_for(task, 5)

    run(runner, scenario())
    assert [(row.state, row.attempts) for row in tables.rows()] == [(SENT, 1)]


@POSTGRESQL
def test_on_postgresql_run_wakes_up_when_a_unit_with_messages_commits(
    flavour: Flavour, tables: Tables, runner: asyncio.Runner
) -> None:
    publisher = RecordingPublisher()
    stop = asyncio.Event()
    running = relay(flavour, publisher, poll_interval=60.0)
    record(flavour, "first")

    async def scenario() -> float:
        task = asyncio.create_task(running.run(stop))
        await until(lambda: publisher.topics == ["first"])  # listening, and waiting for the next poll
        started = time.monotonic()
        await record_now(flavour, "second")
        await until(lambda: publisher.topics == ["first", "second"])
        waited = time.monotonic() - started
        stop.set()
        await asyncio.wait_for(task, 5)
        return waited

    assert run(runner, scenario()) < 5.0


async def record_now(flavour: Flavour, topic: str) -> None:
    """Commit a message from within the loop that runs the relay."""
    if not flavour.is_async:
        record(flavour, topic)  # blocks the loop meanwhile, as the relay's own sync calls do
        return
    async with AsyncUnitOfWork(flavour.session_factory) as unit:
        outbox.add(unit, topic, b"")
        await unit.commit()


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not come true in time")
        await asyncio.sleep(0.01)


# -- several relays ---------------------------------------------------------------------------------


@SERVERS
def test_several_relays_at_once_never_publish_a_message_twice(
    flavour: Flavour, tables: Tables, runner: asyncio.Runner
) -> None:
    ids = record(flavour, *(f"m{number}" for number in range(200)))
    publishers = [RecordingPublisher(delay=0.01) for _ in range(4)]
    relays = [relay(flavour, publisher, batch_size=10) for publisher in publishers]

    if flavour.is_async:

        async def together() -> None:
            await asyncio.gather(*(each.drain() for each in relays))

        run(runner, together())
    else:
        with ThreadPoolExecutor(len(relays)) as pool:
            list(pool.map(lambda each: asyncio.run(each.drain()), relays))

    published = [envelope.id for publisher in publishers for envelope in publisher.published]
    assert sorted(published) == sorted(ids)
    assert sum(1 for publisher in publishers if publisher.published) >= 2
    assert {row.state for row in tables.rows()} == {SENT}


@pytest.mark.parametrize("flavour", ["sync"], indirect=True)  # async engines belong to one loop
def test_drain_sync_and_run_sync_run_in_a_loop_of_their_own_and_close_the_publisher(
    flavour: Flavour, tables: Tables
) -> None:
    record(flavour, "a")
    publisher = RecordingPublisher()
    synced = relay(flavour, publisher)

    assert synced.drain_sync() == BatchResult(claimed=1, sent=1)
    assert publisher.closed == 1
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    synced.run_sync(stop.is_set, check_every=0.02)
    assert publisher.closed == 2
