"""The command: ``python -m uow.outbox relay|stats|requeue|purge``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import uow
from tests.drivers import Flavour
from tests.outbox.conftest import Tables
from tests.outbox.models import OUTBOX
from tests.outbox.publishers import RecordingPublisher
from uow.outbox import DEAD, PENDING, SENT, Outbox
from uow.outbox._cli import main, make_publisher
from uow.outbox.nats import NatsPublisher
from uow.outbox.rabbitmq import RabbitMQPublisher
from uow.outbox.redis import RedisStreamsPublisher

outbox = Outbox(OUTBOX)
SQLITE = pytest.mark.parametrize("backend_setup", ["sqlite-file"], indirect=True)
SYNC = pytest.mark.parametrize("flavour", ["sync"], indirect=True)
PUBLISHER = RecordingPublisher()


def record(flavour: Flavour, *topics: str) -> None:
    with flavour.unit() as unit:
        for topic in topics:
            outbox.add(unit, topic, b"")
        unit.commit()


@SQLITE
@SYNC
def test_relay_drain_publishes_through_the_publisher_it_names_and_exits(
    flavour: Flavour, tables: Tables
) -> None:
    record(flavour, "a", "b")

    assert (
        main(["relay", "--url", tables.backend.url, "--publisher", f"{__name__}:PUBLISHER", "--drain"]) == 0
    )

    assert PUBLISHER.topics[-2:] == ["a", "b"]
    assert {row.state for row in tables.rows()} == {SENT}


@SQLITE
@SYNC
def test_stats_prints_the_counts_and_the_age_of_the_oldest_pending_message(
    flavour: Flavour, tables: Tables, capsys: pytest.CaptureFixture[str]
) -> None:
    record(flavour, "a", "b")

    assert main(["stats", "--url", tables.backend.url, "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert (found["pending"], found["due"], found["sent"], found["dead"]) == (2, 2, 0, 0)
    assert found["oldest_pending_age_seconds"] >= 0

    assert main(["stats", "--url", tables.backend.url]) == 0
    assert capsys.readouterr().out.startswith(
        "pending 2 (due 2, retrying 0), sent 0, dead 0, oldest pending "
    )


@SQLITE
@SYNC
def test_requeue_and_purge_tend_dead_and_sent_messages(
    flavour: Flavour, tables: Tables, capsys: pytest.CaptureFixture[str]
) -> None:
    record(flavour, "dead", "sent")
    with tables.backend.check.begin() as connection:
        connection.execute(OUTBOX.update().where(OUTBOX.c.topic == "dead").values(state=DEAD))
        connection.execute(
            OUTBOX.update().where(OUTBOX.c.topic == "sent").values(state=SENT, sent_at=OUTBOX.c.created_at)
        )

    assert main(["requeue", "--url", tables.backend.url]) == 0
    assert main(["purge", "--url", tables.backend.url, "--older-than", "0"]) == 0

    assert capsys.readouterr().out.splitlines() == ["requeued 1 dead message(s)", "purged 1 sent message(s)"]
    assert [(row.topic, row.state) for row in tables.rows()] == [("dead", PENDING)]


def test_the_command_runs_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "uow.outbox", "--help"],
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(Path(uow.__file__).parents[1])},
    )

    assert result.returncode == 0
    assert "relay" in result.stdout


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("nats://127.0.0.1:4222", NatsPublisher),
        ("tls://nats.example:4222", NatsPublisher),
        ("amqp://guest:guest@127.0.0.1/", RabbitMQPublisher),
        ("redis://127.0.0.1:6379/0", RedisStreamsPublisher),
        ("unix:///run/redis.sock", RedisStreamsPublisher),
        (f"{__name__}:PUBLISHER", RecordingPublisher),
        (f"{__name__}:RecordingPublisher", RecordingPublisher),
    ],
)
def test_a_publisher_is_named_by_a_broker_url_or_by_module_and_attribute(spec: str, kind: type) -> None:
    assert isinstance(make_publisher(spec), kind)


def test_the_prefix_and_the_exchange_reach_the_publisher() -> None:
    publisher = make_publisher("amqp://guest:guest@127.0.0.1/", prefix="shop.", exchange="events")

    assert isinstance(publisher, RabbitMQPublisher)
    assert (publisher.routing_key_prefix, publisher.exchange_name) == ("shop.", "events")


def not_a_publisher() -> object:
    return object()


@pytest.mark.parametrize("spec", ["kafka://127.0.0.1", "no_colon", f"{__name__}:not_a_publisher"])
def test_a_publisher_spec_that_names_no_publisher_is_refused(spec: str) -> None:
    with pytest.raises(SystemExit):
        make_publisher(spec)
