"""Domain events: entities record them; the unit hands them to its dispatcher after a commit."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from sqlalchemy.orm import Session, object_session

__all__ = ["HasEvents"]

_KEY = "_uow_events"
_SOURCES = "uow.event_sources"
_sequence = itertools.count(1)


def next_mark() -> int:
    """A number greater than that of every event recorded so far, in any thread."""
    return next(_sequence)


class HasEvents:
    """A mixin for mapped classes whose instances record domain events.

    ```python
    class Order(HasEvents, Base):
        ...
        def ship(self) -> None:
            self.status = "shipped"
            self.record_event(OrderShipped(self.id))
    ```

    A unit of work given a dispatcher (`UnitOfWork(factory, dispatch=handle)`) collects the events
    of every entity in its session and, after a successful commit, calls `handle(event)` for each,
    in the order they were recorded, across entities. Events recorded by work that is rolled back
    (the whole unit, or a savepoint) are dropped and never dispatched. Events live outside the
    mapped state: they are never persisted and survive `expire()`.
    """

    __slots__ = ()

    def record_event(self, event: object) -> None:
        """Record `event` to be dispatched after the unit that holds this entity commits.

        The entity's session keeps it alive until then, even if nothing else refers to it.
        """
        recorded: list[tuple[int, object]] | None = self.__dict__.get(_KEY)
        if recorded is None:
            recorded = self.__dict__[_KEY] = []
        recorded.append((next(_sequence), event))
        session = object_session(self)
        if session is not None:
            keep(session, self)

    @property
    def recorded_events(self) -> list[object]:
        """The events recorded and not yet dispatched or dropped, oldest first."""
        return [event for _, event in self.__dict__.get(_KEY, ())]


def keep(session: Session, entity: HasEvents) -> None:
    """Hold `entity` in `session` until its events are dispatched or dropped."""
    session.info.setdefault(_SOURCES, {})[id(entity)] = entity


def keep_pending(session: Session) -> None:
    """Hold the session's new entities that recorded events before they were added."""
    for entity in session.new:
        if isinstance(entity, HasEvents) and entity.__dict__.get(_KEY):
            keep(session, entity)


def _sources(session: Session) -> list[object]:
    info = session.__dict__.get("info")
    held = info.pop(_SOURCES, None) if info is not None else None
    return [*(held.values() if held else ()), *session.new]


def take(session: Session) -> list[object]:
    """Remove the events recorded on the session's entities and return them in recording order."""
    return take_from(_sources(session))


def take_from(entities: Iterable[object]) -> list[object]:
    """Remove the events recorded on `entities` and return them in recording order."""
    found: list[tuple[int, object]] = []
    for entity in entities:
        if isinstance(entity, HasEvents):
            recorded = entity.__dict__.get(_KEY)
            if recorded:
                found.extend(recorded)
                recorded.clear()
    found.sort(key=lambda item: item[0])
    return [event for _, event in found]


def drop(session: Session, after: int = 0) -> None:
    """Forget the events the session's entities recorded with a number above `after`."""
    for entity in drop_from(_sources(session), after):
        if object_session(entity) is session:
            keep(session, entity)


def drop_from(entities: Iterable[object], after: int = 0) -> list[HasEvents]:
    """Forget the events `entities` recorded with a number above `after`; the entities with events left."""
    remaining: list[HasEvents] = []
    for entity in entities:
        if isinstance(entity, HasEvents):
            recorded = entity.__dict__.get(_KEY)
            if recorded:
                recorded[:] = [item for item in recorded if item[0] <= after]
                if recorded:
                    remaining.append(entity)
    return remaining
