"""What a unit needs to know about its session, learned through SQLAlchemy's events.

Listeners are registered once per session class (every `sessionmaker` makes a class of its own) and
once on `Engine` for statement errors. They record into `session.info`
under `uow.*` keys and cost nothing for sessions that no unit manages.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction

from uow._errors import StateError
from uow._events import keep_pending

if TYPE_CHECKING:
    from sqlalchemy.engine import ExceptionContext

UNIT = "uow.unit"
_FLUSHED = "uow.flushed_in"
_CONNECTIONS = "uow.connections"
_SESSION = "uow.session"

_instrumented: set[type[Session]] = set()
_lock = threading.Lock()


def instrument(session_class: type[Session]) -> None:
    """Register uow's listeners on `session_class` (and, once, on every engine)."""
    if session_class in _instrumented:
        return
    with _lock:
        if session_class in _instrumented:
            return
        if not _instrumented:
            event.listen(Engine, "handle_error", _on_error)
        event.listen(session_class, "after_flush", _on_flush)
        event.listen(session_class, "before_commit", _on_commit_starts)
        event.listen(session_class, "after_begin", _on_begin)
        event.listen(session_class, "after_commit", _on_committed)
        event.listen(session_class, "before_flush", _before_flush)
        _instrumented.add(session_class)


def _unit_of(session: Session) -> Any:
    info = session.__dict__.get("info")
    return None if info is None else info.get(UNIT)


def _on_flush(session: Session, flush_context: object) -> None:
    session.info[_FLUSHED] = session.get_transaction()


def refuse_writes(state: ORMExecuteState) -> None:
    """Listener of a read-only unit's session: refuse write statements before any SQL is sent."""
    if state.is_insert or state.is_update or state.is_delete:
        raise read_only_refusal("a write statement sent through the session was")


def mark_written(session: Session) -> None:
    """Count a write the unit made without a flush (a bulk INSERT) as uncommitted work."""
    session.info[_FLUSHED] = session.get_transaction()


def _on_begin(session: Session, transaction: SessionTransaction, connection: Connection) -> None:
    info = session.info
    info.setdefault(_CONNECTIONS, {})[connection.engine] = connection
    unit = info.get(UNIT)
    if unit is None:
        return
    connection.info[_SESSION] = weakref.ref(session)
    if not transaction.nested:
        unit._began(connection)


def _on_committed(session: Session) -> None:
    unit = _unit_of(session)
    if unit is not None:
        unit._commits_done += 1


def _before_flush(session: Session, flush_context: object, instances: object) -> None:
    unit = _unit_of(session)
    if unit is None:
        return
    if unit._read_only and (session.new or session.dirty or session.deleted):
        raise read_only_refusal("flushing changes was")
    if unit._options.dispatch is not None:
        keep_pending(session)


def _session_unit(connection: Connection | None) -> tuple[Session | None, Any]:
    if connection is None or connection.closed:
        return None, None
    ref = connection.info.get(_SESSION)
    session = ref() if ref is not None else None
    return session, _unit_of(session) if session is not None else None


def _on_error(context: ExceptionContext) -> None:
    session, unit = _session_unit(context.connection)
    if unit is not None:
        unit._statement_failed(session)


def _on_commit_starts(session: Session) -> None:
    # Session.commit() flushes after this event: a unit flushes first, so for its own commits the
    # count means "COMMIT was sent"; for a commit called on the session directly it errs on the
    # side of "the outcome may be unknown".
    unit = _unit_of(session)
    if unit is not None:
        unit._commits_sent += 1


def read_only_refusal(action: str) -> StateError:
    return StateError(
        f"this unit of work is read-only: {action} refused. "
        "Use a unit without read_only=True for writes, or discard the changes with rollback()"
    )


def flushed_since_commit(session: Session) -> bool:
    """Whether the session flushed changes in its current transaction."""
    info = session.__dict__.get("info")
    if info is None:
        return False
    flushed: SessionTransaction | None = info.get(_FLUSHED)
    return flushed is not None and flushed is session.get_transaction()


def uncommitted_work(session: Session) -> str | None:
    """Describe the work `session` holds that was neither committed nor rolled back, if any."""
    parts = [
        f"{count} {what} object(s)"
        for what, count in (
            ("new", len(session.new)),
            ("changed", len(session.dirty)),
            ("deleted", len(session.deleted)),
        )
        if count
    ]
    if flushed_since_commit(session):
        parts.append("changes already flushed to the database")
    return ", ".join(parts) if parts else None


def discard_connections(session: Session) -> None:
    """Invalidate and close every connection `session` still holds; the pool gets them back."""
    connections: dict[Engine, Connection] = session.info.get(_CONNECTIONS, {})
    for connection in connections.values():
        if not connection.closed:
            try:
                connection.invalidate()
            finally:
                connection.close()


_bound_engines: weakref.WeakKeyDictionary[Engine, dict[tuple[tuple[str, Any], ...], Engine]] = (
    weakref.WeakKeyDictionary()
)


def bind_with_options(session: Session, isolation_level: str | None, read_only: bool) -> None:
    """Make `session` open its connections with a unit's isolation level and read-only mode.

    They apply to each connection while the session holds it; the pool resets them when the
    connection is returned, so the next user of the connection gets the engine's defaults. Read-only
    mode is set here for PostgreSQL; MySQL and MariaDB get `SET TRANSACTION READ ONLY` as their
    transaction begins (see the unit's `_began`).
    """
    bind = session.bind
    if not isinstance(bind, Engine):
        raise StateError(
            "isolation_level and read_only need sessions bound to one Engine "
            "(sessionmaker(bind=engine)); this session has "
            + ("no bind" if bind is None else f"a {type(bind).__name__} bind")
        )
    options: list[tuple[str, Any]] = []
    if isolation_level is not None:
        options.append(("isolation_level", isolation_level))
    if read_only and bind.dialect.name == "postgresql":
        options.append(("postgresql_readonly", True))
    if not options:
        return
    key = tuple(options)
    variants = _bound_engines.get(bind)
    if variants is None:
        variants = _bound_engines[bind] = {}
    engine = variants.get(key)
    if engine is None:
        engine = variants[key] = bind.execution_options(**dict(options))
    session.bind = engine
