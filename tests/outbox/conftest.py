"""The outbox's tables on each backend, and the brokers: NATS JetStream, RabbitMQ and Redis.

Broker URLs come from ``UOW_TEST_NATS_URL``, ``UOW_TEST_RABBITMQ_URL`` and ``UOW_TEST_REDIS_URL``.
As for the database servers, an unset or unreachable broker is skipped with the reason, unless
``UOW_TEST_REQUIRE`` names it (``nats``, ``rabbitmq``, ``redis``), in which case its tests fail.
Every test names its streams, queues and keys with a run id of its own and removes them after.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import delete, select

from tests.conftest import Backend, required_backends
from tests.outbox.models import INBOX, OUTBOX, Base, Ledger, Shipment

BROKERS = {"nats": "UOW_TEST_NATS_URL", "rabbitmq": "UOW_TEST_RABBITMQ_URL", "redis": "UOW_TEST_REDIS_URL"}
_DEFAULT_PORTS = {"nats": 4222, "rabbitmq": 5672, "redis": 6379}
_created: set[int] = set()


@dataclass
class Tables:
    """The backend with the outbox's tables; reads what was committed through its checking engine."""

    backend: Backend

    def rows(self) -> list[Any]:
        with self.backend.check.connect() as connection:
            return list(connection.execute(select(OUTBOX).order_by(OUTBOX.c.position)))

    def topics(self) -> list[str]:
        return [row.topic for row in self.rows()]

    def inbox(self) -> list[tuple[str, str]]:
        with self.backend.check.connect() as connection:
            rows = connection.execute(
                select(INBOX.c.consumer, INBOX.c.message_id).order_by(INBOX.c.message_id)
            )
            return [(row.consumer, row.message_id) for row in rows]

    def ledger(self) -> list[str]:
        with self.backend.check.connect() as connection:
            return list(connection.scalars(select(Ledger.message_id).order_by(Ledger.entry)))

    def clear(self) -> None:
        with self.backend.check.begin() as connection:
            for table in (OUTBOX, INBOX, Ledger.__table__, Shipment.__table__):
                connection.execute(delete(table))


@pytest.fixture
def tables(backend: Backend) -> Iterator[Tables]:
    """The outbox's tables on the test's backend, empty before and after the test."""
    if id(backend) not in _created:
        Base.metadata.drop_all(backend.check)
        Base.metadata.create_all(backend.check)
        _created.add(id(backend))
    made = Tables(backend)
    made.clear()
    yield made
    made.clear()


def _broker_url(name: str) -> str:
    url = os.environ.get(BROKERS[name], "")
    if not url:
        message = f"{name}: set {BROKERS[name]} to run the tests on it"
        if name in required_backends():
            pytest.fail(f"{message} (UOW_TEST_REQUIRE names it)", pytrace=False)
        pytest.skip(message)
    parsed = urlsplit(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or _DEFAULT_PORTS[name]
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        message = f"{name} at {host}:{port} is unreachable: {exc}"
        if name in required_backends():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return url


@pytest.fixture(scope="session")
def nats_url() -> str:
    return _broker_url("nats")


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    return _broker_url("rabbitmq")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _broker_url("redis")


@pytest.fixture
def run_id() -> str:
    """A name part of this test's own, for streams, subjects, queues and keys."""
    return f"uowtest{uuid.uuid4().hex[:10]}"
