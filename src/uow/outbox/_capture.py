"""Domain events into the outbox: taken just before each commit, dropped with rolled-back work.

Listeners are registered once per session class and act only on sessions whose `info` names an
outbox, which a captured factory gives every session it makes. Each level of a session's
transaction tree (the root, each savepoint) remembers the event number it began at:

| a level ends | its events |
|---|---|
| about to commit (COMMIT or RELEASE) | every event still recorded becomes an outbox row in it |
| committed | (already rows) |
| rolled back, or closed without a commit | those recorded since it began are dropped |
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from uow._errors import InvalidArgumentError
from uow._events import drop, keep_pending, next_mark, take

if TYPE_CHECKING:
    from uow.outbox._outbox import Message, Outbox

__all__ = ["capture"]

_KEY = "uow.outbox.capture"
_STATE = "uow.outbox.capture.state"


@dataclass(frozen=True, slots=True)
class _Capture:
    outbox: Outbox
    to_message: Callable[[object], Message | None]


@dataclass(slots=True)
class _State:
    """One session's levels and whether the level that is ending now was committed."""

    marks: dict[SessionTransaction, int] = field(default_factory=dict)
    committed: bool = False


def capture(
    outbox: Outbox, factory: Callable[..., Any], to_message: Callable[[object], Message | None] | None
) -> None:
    if isinstance(factory, async_sessionmaker):
        found: Any = factory.kw.get("sync_session_class") or getattr(
            factory.class_, "sync_session_class", Session
        )
        session_class: type[Session] = found
    elif isinstance(factory, sessionmaker):
        session_class = factory.class_
        if issubclass(session_class, AsyncSession):  # pragma: no cover - sessionmaker(class_=AsyncSession)
            session_class = session_class.sync_session_class
    else:
        raise InvalidArgumentError(
            f"capture_events() takes a sessionmaker or an async_sessionmaker, got {factory!r}"
        )
    if to_message is None:
        to_message = _as_message
    info = dict(factory.kw.get("info") or {})
    info[_KEY] = _Capture(outbox, to_message)
    factory.configure(info=info)
    _instrument(session_class)


def _as_message(event: object) -> Message:
    from uow.outbox._outbox import Message

    if isinstance(event, Message):
        return event
    raise InvalidArgumentError(
        f"the outbox cannot turn a {type(event).__name__} event into a message: record "
        "uow.outbox.Message events, or give capture_events() a to_message function"
    )


_instrumented: set[type[Session]] = set()
_lock = threading.Lock()


def _instrument(session_class: type[Session]) -> None:
    with _lock:
        if any(cls in _instrumented for cls in session_class.__mro__):
            return
        for name, listener in (
            ("after_transaction_create", _on_create),
            ("after_transaction_end", _on_end),
            ("after_commit", _on_committed),
            ("before_flush", _before_flush),
            ("before_commit", _before_commit),
        ):
            event.listen(session_class, name, listener)
        _instrumented.add(session_class)


def _state(session: Session) -> _State | None:
    info = session.__dict__.get("info")
    if info is None or _KEY not in info:
        return None
    state: _State | None = info.get(_STATE)
    if state is None:
        state = info[_STATE] = _State()
    return state


def _on_create(session: Session, transaction: SessionTransaction) -> None:
    state = _state(session)
    if state is None:
        return
    if transaction.nested:
        state.marks[transaction] = next_mark()
    elif transaction.parent is None:
        state.marks[transaction] = 0


def _on_committed(session: Session) -> None:
    state = _state(session)
    if state is not None:
        state.committed = True


def _on_end(session: Session, transaction: SessionTransaction) -> None:
    state = _state(session)
    if state is None:
        return
    mark = state.marks.pop(transaction, None)
    committed, state.committed = state.committed, False  # after_commit comes just before the end
    if mark is not None and not committed:  # None: one of SQLAlchemy's inner subtransactions
        drop(session, mark)


def _before_flush(session: Session, flush_context: object, instances: object) -> None:
    if _state(session) is not None:
        keep_pending(session)  # entities that recorded events before they were added


def _before_commit(session: Session) -> None:
    if _state(session) is None:
        return
    captured: _Capture = session.info[_KEY]
    if session.new or session.dirty or session.deleted:
        session.flush()  # database-generated keys, for to_message to read
    events = take(session)
    if not events:
        return
    outbox = captured.outbox
    for domain_event in events:
        message = captured.to_message(domain_event)
        if message is not None:
            session.add(outbox.record(message))
