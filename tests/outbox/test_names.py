"""The public names of ``uow.outbox`` and where its errors sit in the tree."""

from __future__ import annotations

import pytest

import uow
import uow.outbox


def test_the_public_names_are_pinned() -> None:
    assert uow.outbox.__all__ == [
        "DEAD",
        "PENDING",
        "SENT",
        "Backoff",
        "BatchResult",
        "Envelope",
        "Inbox",
        "Message",
        "Outbox",
        "OutboxError",
        "OutboxStats",
        "Payload",
        "PublishError",
        "Publisher",
        "PublisherUnavailableError",
        "Relay",
        "inbox_table",
        "outbox_table",
        "purge_sent",
        "purge_sent_async",
        "requeue_dead",
        "requeue_dead_async",
        "stats",
        "stats_async",
        "to_bytes",
    ]
    for name in uow.outbox.__all__:
        assert getattr(uow.outbox, name) is not None


@pytest.mark.parametrize(
    ("error", "parents"),
    [
        (uow.outbox.OutboxError, (uow.UnitOfWorkError,)),
        (uow.outbox.PublisherUnavailableError, (uow.outbox.OutboxError, ConnectionError)),
        (uow.outbox.PublishError, (uow.outbox.OutboxError,)),
    ],
)
def test_the_outbox_errors_are_unit_of_work_errors(error: type, parents: tuple[type, ...]) -> None:
    assert issubclass(error, parents)


@pytest.mark.parametrize(
    ("statement", "loaded"),
    [
        ("import uow", []),
        ("import uow.outbox", ["uow.outbox"]),
        ("import uow.outbox.nats", ["nats", "uow.outbox"]),
    ],
)
def test_the_core_never_imports_the_outbox_nor_the_outbox_a_broker_client(
    statement: str, loaded: list[str]
) -> None:
    import subprocess
    import sys

    code = (
        f"import sys; {statement}; "
        "top = {name.split('.')[0] for name in sys.modules} & {'nats', 'aio_pika', 'redis'}; "
        "outbox = {'uow.outbox'} if 'uow.outbox' in sys.modules else set(); "
        "print(sorted(top | outbox))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == repr(loaded)
