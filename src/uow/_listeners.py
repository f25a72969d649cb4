"""What a unit learns from SQLAlchemy's events, kept in one [`Ledger`][uow._listeners.Ledger] per block.

SQLAlchemy's `SessionTransaction` tree is the truth about what is committed: the listeners follow it,
so commits, rollbacks and savepoints behave alike whether they go through the unit
(`unit.commit()`, `unit.savepoint()`) or through `unit.session` (`session.commit()`,
`with session.begin():`, `with session.begin_nested():`). Hooks and domain events run when
SQLAlchemy ends the transaction they belong to (see `_rules.py` for what each ending means).

Listeners are registered once per session class (every `sessionmaker` makes a class of its own) and
once on `Engine` for statement errors (a dialect event, free for engines until a statement fails).
A session that no unit manages has no ledger, and every listener returns at once for it.
"""

from __future__ import annotations

import inspect
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction
from sqlalchemy.sql.ddl import ExecutableDDLElement
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.expression import RollbackToSavepointClause

from uow._errors import StateError
from uow._events import drop, keep_pending, take
from uow._observe import BlockWatch
from uow._rules import (
    Hook,
    Options,
    Scope,
    hook_error,
    hook_failed,
    implicit_commit_refusal,
    inside_savepoint,
    outside_unit,
    partial_commit,
    read_only_refusal,
    skipped_rollback_hooks,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import ExceptionContext

__all__ = ["Ledger", "instrument", "ledger_of", "mark_written", "settle"]

_KEY = "uow.ledger"
_MYSQL_DIALECTS = frozenset({"mysql", "mariadb"})


class Ledger:
    """What a unit's block knows about its session's transactions, fed by SQLAlchemy's events.

    `scope` is the innermost level of the transaction tree that can end on its own; before the root
    transaction begins it is the scope that the root will adopt, so hooks may be registered first.
    """

    __slots__ = (
        "__weakref__",
        "commits_done",
        "commits_started",
        "committed",
        "committing",
        "connections",
        "deferring",
        "events",
        "failures",
        "flushing",
        "in_flight",
        "options",
        "releasing",
        "scope",
        "scopes",
        "unknown",
        "watch",
    )

    def __init__(self, options: Options) -> None:
        self.options = options
        self.scope = Scope(None)
        self.scopes: dict[SessionTransaction, Scope] = {}
        self.committed = False
        """Whether the transaction level that is ending right now was committed."""
        self.committing = False
        """Whether the root transaction's commit has begun (after the unit's own flush)."""
        self.in_flight = False
        """Whether the connection was lost while COMMIT itself was on its way."""
        self.unknown = False
        """Whether the root transaction now ending failed to commit with an unknown outcome."""
        self.releasing: Scope | None = None
        """The savepoint whose commit (its flush, then RELEASE SAVEPOINT) is under way."""
        self.flushing = False
        self.commits_started = 0
        self.commits_done = 0
        self.events: list[object] = []
        self.failures: list[Exception] = []
        self.deferring = False
        """Whether the unit raises the hooks' failures itself (or attaches them to an error)."""
        self.connections: list[Connection] = []
        self.watch: BlockWatch | None = None
        """Who watches the block (`_observe.py`); `None` unless something does."""

    @property
    def flushed(self) -> bool:
        """Whether the current transaction wrote changes that a savepoint did not roll back."""
        scope: Scope | None = self.scope
        while scope is not None:
            if scope.flushed:
                return True
            scope = scope.parent
        return False

    @property
    def failed(self) -> bool:
        """Whether a statement failed in the current transaction and its error was caught."""
        scope: Scope | None = self.scope
        while scope is not None:
            if scope.failed:
                return True
            scope = scope.parent
        return False

    @property
    def pending(self) -> bool:
        """Whether the scope awaiting a root transaction holds hooks, or events may be recorded."""
        scope = self.scope
        return bool(scope.on_commit or scope.on_rollback) or self.options.dispatch is not None

    def take_failures(self) -> list[Exception]:
        failures = self.failures
        self.failures = []
        return failures

    # -- running what the end of a level calls for ----------------------------------------------

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        result = fn(*args)
        if inspect.isawaitable(result):
            _await(result)

    def run_hooks(self, hooks: list[Hook], stage: str) -> None:
        """Call every hook in order, outside the unit; collect or log the failures."""
        with outside_unit():
            for fn, robust in hooks:
                try:
                    self._call(fn)
                except Exception as exc:
                    hook_failed(fn, robust, exc, self.failures, stage)
                    if self.watch is not None:
                        self.watch.hook_failed(stage, robust=robust)

    def after_commit(self, scope: Scope) -> None:
        """Dispatch the committed events, then run the root's `on_commit` hooks."""
        events = self.events
        dispatch = self.options.dispatch
        if events and dispatch is not None:
            self.events = []
            with outside_unit():
                for domain_event in events:
                    try:
                        self._call(dispatch, domain_event)
                    except Exception as exc:
                        self.failures.append(exc)
                        if self.watch is not None:
                            self.watch.hook_failed("dispatch", robust=False)
        if scope.on_commit:
            self.run_hooks(scope.on_commit, "after-commit")


def _await(awaitable: Any) -> None:
    """Await a coroutine hook of an async unit from inside SQLAlchemy's sync code.

    An `AsyncSession` runs its sync session in a greenlet; SQLAlchemy's own bridge hands the awaitable
    to the event loop and resumes here with its result.
    """
    from sqlalchemy.util import await_only

    try:
        await_only(awaitable)
    except sa_exc.MissingGreenlet as exc:
        awaitable.close()
        raise StateError(
            "an async hook or event handler could not be awaited: the transaction ended outside the "
            "AsyncSession's own methods (through its sync_session)"
        ) from exc


_instrumented: set[type[Session]] = set()
_lock = threading.Lock()


def instrument(session_class: type[Session]) -> None:
    """Register the listeners on `session_class` (and, once, on every engine).

    SQLAlchemy's class-level listeners apply to subclasses too, so a session whose class and a base
    of it are both instrumented (an async unit's plain `Session` beside a sync unit's
    `sessionmaker` class) hears each event twice: every listener is idempotent.
    """
    if session_class in _instrumented:
        return
    with _lock:
        if any(cls in _instrumented for cls in session_class.__mro__):
            _instrumented.add(session_class)  # a base hears its events already
            return
        if not _instrumented:
            # handle_error is a dialect event: unlike connection events, it costs the engines nothing
            # until a statement fails.
            event.listen(Engine, "handle_error", _on_error)
        for name, listener in (
            ("after_transaction_create", _on_create),
            ("after_transaction_end", _on_end),
            ("after_begin", _on_begin),
            ("before_commit", _on_commit_starts),
            ("after_commit", _on_committed),
            ("before_flush", _before_flush),
            ("after_flush", _on_flush),
        ):
            event.listen(session_class, name, listener)
        _instrumented.add(session_class)


def attach(session: Session, ledger: Ledger) -> None:
    """Make `ledger` the one `session`'s listeners feed, until `detach()`."""
    session_class = type(session)
    if session_class not in _instrumented:
        instrument(session_class)
    session.info[_KEY] = ledger
    if session._transaction is not None:  # the factory's session began already (an event of the user's)
        ledger.scopes[session.get_transaction()] = ledger.scope  # type: ignore[index]
    if ledger.options.read_only:
        event.listen(session, "do_orm_execute", _guard_statement)


def detach(session: Session) -> None:
    session.info.pop(_KEY, None)


def ledger_of(session: Session) -> Ledger | None:
    """The ledger of the unit that manages `session`, if one does."""
    info = session.__dict__.get("info")
    return None if info is None else info.get(_KEY)


def mark_written(session: Session) -> None:
    """Count a write the unit made without a flush (a bulk INSERT) as uncommitted work."""
    info = session.__dict__.get("info")
    ledger = info.get(_KEY) if info else None
    if ledger is not None:
        ledger.scope.flushed = True


# -- the transaction tree -----------------------------------------------------------------------


def _on_create(session: Session, transaction: SessionTransaction) -> None:
    info = session.__dict__.get("info")
    ledger = info.get(_KEY) if info else None
    if ledger is None or transaction in ledger.scopes:
        return
    if transaction.nested:
        scope = Scope(ledger.scope)
        ledger.scopes[transaction] = scope
        ledger.scope = scope
        if ledger.watch is not None:
            ledger.watch.savepoint_started(scope)
    elif transaction.parent is None:
        ledger.scopes[transaction] = ledger.scope


def _on_begin(session: Session, transaction: SessionTransaction, connection: Connection) -> None:
    info = session.__dict__.get("info")
    ledger = info.get(_KEY) if info else None
    if ledger is None or connection in ledger.connections:
        return
    if ledger.watch is not None and not ledger.connections:
        ledger.watch.transaction_began(connection)
    connection.info[_KEY] = weakref.ref(ledger)
    ledger.connections.append(connection)
    if connection.dialect.name in _MYSQL_DIALECTS:
        engine = connection.engine
        if engine not in _guarded_engines:
            _guard_engine(engine)
        if not transaction.nested and ledger.options.read_only:
            connection.exec_driver_sql("SET TRANSACTION READ ONLY")


def _on_commit_starts(session: Session) -> None:
    info = session.__dict__.get("info")
    ledger = info.get(_KEY) if info else None
    if ledger is None:
        return
    scope = ledger.scope
    if scope.parent is not None:  # a savepoint is being released
        if scope.held:  # by unit.session.commit(), inside the block of unit.savepoint()
            raise inside_savepoint("unit.session.commit()")
        ledger.releasing = scope
    elif not ledger.committing:
        if scope.failed:  # `unit.commit()` refused already; this is `unit.session.commit()`
            raise partial_commit()
        ledger.committing = True
        ledger.commits_started += 1
        if ledger.watch is not None:
            ledger.watch.commit_started()


def _on_committed(session: Session) -> None:
    info = session.__dict__.get("info")
    ledger = info.get(_KEY) if info else None
    if ledger is None or ledger.committed:
        return
    ledger.committed = True
    if ledger.scope.parent is None:  # the root committed
        ledger.commits_done += 1
        if ledger.options.dispatch is not None:
            ledger.events = take(session)


def _on_end(session: Session, transaction: SessionTransaction) -> None:
    info = session.__dict__.get("info")
    ledger = info.get(_KEY) if info else None
    if ledger is None:
        return
    scope = ledger.scopes.pop(transaction, None)
    if scope is None:  # one of SQLAlchemy's subtransactions, or begun before the unit
        return
    committed = ledger.committed
    ledger.committed = False
    ledger.releasing = None
    ledger.flushing = False
    parent = scope.parent
    if parent is not None:
        ledger.scope = parent
        if committed:
            parent.absorb(scope)
        else:
            if ledger.options.dispatch is not None:
                drop(session, scope.mark)
            if scope.on_rollback:
                ledger.run_hooks(scope.on_rollback, "after-rollback")
        if ledger.watch is not None:
            ledger.watch.savepoint_ended(scope, committed=committed)
        return
    _end_root(session, ledger, scope, committed)


def _end_root(session: Session, ledger: Ledger, scope: Scope, committed: bool) -> None:
    wrote = scope.flushed
    if scope.on_commit or scope.on_rollback or scope is not ledger.scope:
        ledger.scope = Scope(None)
    else:  # no hook hangs on it: cleared, it serves the next transaction as a new scope would
        scope.flushed = scope.failed = False
    ledger.committing = False
    ledger.connections = []
    unknown = ledger.unknown or (ledger.in_flight and not committed)
    ledger.unknown = ledger.in_flight = False
    if committed:
        if ledger.events or scope.on_commit:
            ledger.after_commit(scope)
    else:
        ledger.events = []
        if ledger.options.dispatch is not None:
            drop(session)
        if unknown:
            if scope.on_rollback:
                skipped_rollback_hooks(len(scope.on_rollback))
        elif scope.on_rollback:
            ledger.run_hooks(scope.on_rollback, "after-rollback")
    if ledger.watch is not None:
        ledger.watch.transaction_ended(committed=committed, unknown=unknown, wrote=wrote)
    if ledger.failures and not ledger.deferring:
        raise hook_error(ledger.take_failures(), committed=committed)


def settle(session: Session, ledger: Ledger) -> None:
    """End, as rolled back, a scope whose root transaction never began (nothing to roll back)."""
    if session.get_transaction() is None:
        _end_root(session, ledger, ledger.scope, committed=False)


# -- failures -----------------------------------------------------------------------------------


def _connection_ledger(connection: Connection | None) -> Ledger | None:
    if connection is None or connection.closed:
        return None
    ref = connection.info.get(_KEY)
    return ref() if ref is not None else None


def _on_error(context: ExceptionContext) -> None:
    ledger = _connection_ledger(context.connection)
    if ledger is None:
        return
    scope = ledger.scope
    if scope.parent is not None and (
        (ledger.releasing is scope and not ledger.flushing) or _rolls_back_to_savepoint(context)
    ):
        # RELEASE SAVEPOINT or ROLLBACK TO SAVEPOINT failed: the savepoint's work may be left
        # behind in the enclosing transaction, which must not commit it.
        scope = scope.parent
    scope.failed = True
    if ledger.committing and context.statement is None and context.is_disconnect:
        ledger.in_flight = True
    if ledger.watch is not None:
        ledger.watch.statement_failed(context.sqlalchemy_exception or context.original_exception)


def _rolls_back_to_savepoint(context: ExceptionContext) -> bool:
    compiled = getattr(context.execution_context, "compiled", None)
    return isinstance(getattr(compiled, "statement", None), RollbackToSavepointClause)


def _on_flush(session: Session, flush_context: object) -> None:
    info = session.__dict__.get("info")
    ledger = info.get(_KEY) if info else None
    if ledger is not None:
        ledger.scope.flushed = True
        ledger.flushing = False


def _before_flush(session: Session, flush_context: object, instances: object) -> None:
    info = session.__dict__.get("info")
    ledger = info.get(_KEY) if info else None
    if ledger is None:
        return
    ledger.flushing = True
    options = ledger.options
    if options.read_only and (session.new or session.dirty or session.deleted):
        raise read_only_refusal("flushing changes was")
    if options.dispatch is not None:
        keep_pending(session)


# MariaDB and MySQL commit the open transaction before these statements (CREATE TEMPORARY TABLE and
# DROP TEMPORARY TABLE excepted).
_IMPLICIT_COMMIT = frozenset(
    {"ALTER", "ANALYZE", "CREATE", "DROP", "FLUSH", "GRANT", "INSTALL", "LOAD", "LOCK", "OPTIMIZE",
     "RENAME", "REPAIR", "REVOKE", "TRUNCATE", "UNINSTALL", "UNLOCK"}
)  # fmt: skip


def _commits_implicitly(statement: Any) -> bool:
    if isinstance(statement, ExecutableDDLElement):
        return True
    if not isinstance(statement, TextClause):
        return False
    words = statement.text.lstrip(" \t\r\n(").split(None, 2)
    if not words or words[0].upper() not in _IMPLICIT_COMMIT:
        return False
    return not (words[0].upper() in {"CREATE", "DROP"} and len(words) > 1 and words[1].upper() == "TEMPORARY")


def _guard_statement(state: ORMExecuteState) -> None:
    """Refuse, before any SQL is sent, a write statement of a read-only unit."""
    ledger = ledger_of(state.session)
    if ledger is not None and (state.is_insert or state.is_update or state.is_delete):
        raise read_only_refusal("a write statement sent through the session was")


_guarded_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def _guard_engine(engine: Engine) -> None:
    """Have `_guard_connection` check the statements of a MySQL-family engine a unit has used."""
    with _lock:
        if engine not in _guarded_engines:
            event.listen(engine, "before_execute", _guard_connection)
            _guarded_engines.add(engine)


def _guard_connection(connection: Connection, statement: Any, *_: Any) -> None:
    """Refuse, before it is sent, a statement for which MySQL or MariaDB would commit a unit's work.

    Listens on the engine, so statements sent through the session and through
    `session.connection()` alike are checked (`exec_driver_sql()`, which bypasses SQLAlchemy's
    statement events, is not); only connections that a unit's transaction is using are guarded, so
    other work on the engine, and a caller's own `Connection` once the unit is done with it, are not.
    Any other statement costs the engine two isinstance checks.
    """
    if _commits_implicitly(statement):
        ledger = _connection_ledger(connection)
        if ledger is not None and connection in ledger.connections:
            raise implicit_commit_refusal()


# -- what is left at the end --------------------------------------------------------------------


def uncommitted_work(session: Session, ledger: Ledger) -> str | None:
    """Describe the work `session` holds that was neither committed nor rolled back, if any."""
    # The session's own dicts of pending objects: its `new` and `deleted` properties build sets.
    if not (session._new or session._deleted or session.identity_map.check_modified()):
        scope: Scope | None = ledger.scope  # ledger.flushed, without a call in the common case
        while scope is not None and not scope.flushed:
            scope = scope.parent
        if scope is None:
            return None
    parts = [
        f"{count} {what} object(s)"
        for what, count in (
            ("new", len(session.new)),
            ("changed", len(session.dirty)),
            ("deleted", len(session.deleted)),
        )
        if count
    ]
    if ledger.flushed:
        parts.append("changes already flushed to the database")
    return ", ".join(parts) if parts else None


def discard_connections(session: Session) -> None:
    """Invalidate and close every connection `session`'s unit saw begin; the pool gets them back."""
    info = session.__dict__.get("info")
    ledger = info.get(_KEY) if info else None
    for connection in ledger.connections if ledger is not None else ():
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
    transaction begins.
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
