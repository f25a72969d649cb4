"""A publisher of the specifications' own: it keeps what it publishes, and refuses or fails on demand."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence

from uow.outbox import Envelope, PublishError, PublisherUnavailableError


class RecordingPublisher:
    """Keeps every envelope it publishes; refuses those `refuse` picks; unavailable while `down`."""

    def __init__(
        self, refuse: Callable[[Envelope], bool] = lambda envelope: False, delay: float = 0.0
    ) -> None:
        self.refuse = refuse
        self.delay = delay
        self.down = False
        self.published: list[Envelope] = []
        self.refused: list[Envelope] = []
        self.calls = 0
        self.closed = 0
        self._lock = threading.Lock()

    async def publish(self, envelopes: Sequence[Envelope]) -> list[BaseException | None]:
        self.calls += 1
        if self.down:
            raise PublisherUnavailableError("the broker is down")
        if self.delay:
            await asyncio.sleep(self.delay)
        results: list[BaseException | None] = []
        with self._lock:
            for envelope in envelopes:
                if self.refuse(envelope):
                    self.refused.append(envelope)
                    results.append(PublishError(f"refused {envelope.topic}"))
                else:
                    self.published.append(envelope)
                    results.append(None)
        return results

    async def aclose(self) -> None:
        self.closed += 1

    @property
    def topics(self) -> list[str]:
        return [envelope.topic for envelope in self.published]
