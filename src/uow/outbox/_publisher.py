"""What the relay hands to a broker, and what a broker's publisher must do with it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self, runtime_checkable
from uuid import UUID

from uow._errors import UnitOfWorkError

__all__ = ["Envelope", "OutboxError", "PublishError", "Publisher", "PublisherUnavailableError"]


class OutboxError(UnitOfWorkError):
    """The root of the errors of `uow.outbox`."""


class PublisherUnavailableError(OutboxError, ConnectionError):
    """A publisher could not reach its broker: nothing of the batch was published.

    The relay leaves the batch pending without counting an attempt against its messages, and
    tries again after a pause.
    """


class PublishError(OutboxError):
    """The broker refused one message (unroutable, rejected, not confirmed in time).

    A publisher returns it (or any other exception) in place of that message's result; the relay
    counts an attempt against the message and schedules the next one.
    """


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message on its way out, as the relay read it from the outbox table."""

    id: UUID
    """The stable id: the same for every delivery of this message, for deduplication."""
    topic: str
    payload: bytes
    key: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    """When the message was recorded (UTC, no time zone)."""
    attempts: int = 0
    """How many times publishing it was tried before."""


@runtime_checkable
class Publisher(Protocol):
    """Publishes batches of envelopes to a broker; the relay calls it and records the outcome.

    `publish()` returns one result per envelope, in order: `None` when the broker confirmed that
    envelope (it is then marked sent), an exception when the broker refused it (an attempt is
    counted and the message backs off). Raising instead means the publisher could not try at all
    (raise [`PublisherUnavailableError`][uow.outbox.PublisherUnavailableError] for an unreachable
    broker): the whole batch stays pending, no attempt is counted, and the relay pauses.

    A message may be published again after a crash, or when a confirmation was lost: publishers
    send `envelope.id` where the receiver (or the broker) can deduplicate on it.
    """

    async def publish(self, envelopes: Sequence[Envelope]) -> Sequence[BaseException | None]:
        """Publish `envelopes`; one result per envelope, `None` for each one confirmed."""
        ...

    async def aclose(self) -> None:
        """Close the connection to the broker; publishing again opens a new one."""
        ...


class ClosesOnExit:
    """`async with publisher:` hands the publisher out and closes its broker connection at the end."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection to the broker; publishing again opens a new one."""
        raise NotImplementedError
