"""The transaction of an in-memory unit: what a session is to a real one, on an `InMemoryStore`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect
from sqlalchemy.orm.attributes import set_committed_value

from uow._errors import InvalidArgumentError, StateError
from uow._evaluate import Predicate, SortKey, sort_rows
from uow._session import read_only_refusal
from uow._store import (
    ORIGIN,
    Change,
    InMemoryStore,
    Key,
    Row,
    Table,
    Values,
    check_unique,
    copy_value,
    instance,
    table_of,
    violation,
)

__all__ = ["Savepoint", "Transaction"]


def _nothing() -> None:
    pass


@dataclass(slots=True)
class _Entry:
    """An object of the identity map and its field values as last flushed or loaded."""

    obj: Any
    table: Table
    snapshot: Values


@dataclass(slots=True)
class Savepoint:
    """A transaction's state when a savepoint began: what rolling back to it restores."""

    changes: dict[type[Any], dict[tuple[Any, ...], Change]]
    identity: dict[Key, _Entry]
    keys: dict[int, Key]
    flushed: bool


class Transaction:
    """What a session is to a real unit: the identity map, pending work, and the flushed changes."""

    def __init__(self, store: InMemoryStore) -> None:
        self.store = store
        self.changes: dict[type[Any], dict[tuple[Any, ...], Change]] = {}
        self.identity: dict[Key, _Entry] = {}
        self.keys: dict[int, Key] = {}
        self.new: dict[int, Any] = {}
        self.deleted: dict[int, Any] = {}
        self.broken: BaseException | None = None
        self.flushed = False
        self.read_only = False
        self.savepoints: list[Savepoint] = []
        self.on_failure: Callable[[], object] = _nothing
        """Called when a statement (a flush, an insert) fails; the unit keeps the score."""

    # -- rows as this transaction sees them -------------------------------------------------------

    def row(self, key: Key) -> Row | None:
        base, ident = key
        change = self.changes.get(base, {}).get(ident)
        if change is not None:
            return change.row
        return self.store.committed(base).get(ident)

    def rows(self, base: type[Any]) -> Iterator[tuple[tuple[Any, ...], Row]]:
        changes = self.changes.get(base, {})
        committed = self.store.committed(base)
        for ident, row in committed.items():
            change = changes.get(ident)
            if change is None:
                yield ident, row
            elif change.row is not None:
                yield ident, change.row
        for ident, change in changes.items():
            if ident not in committed and change.row is not None:
                yield ident, change.row

    def check_usable(self) -> None:
        if self.broken is not None:
            raise sa_exc.PendingRollbackError(
                "This unit's transaction has been rolled back due to a previous exception during "
                f"flush. To begin a new transaction, call unit.rollback() first. Original exception "
                f"was: {self.broken}",
                code="7s2a",
            )

    # -- writes ---------------------------------------------------------------------------------

    def add(self, obj: Any) -> None:
        marker = id(obj)
        if marker in self.keys:
            self.deleted.pop(marker, None)
            return
        if marker in self.new:
            return
        origin = inspect(obj).info.get(ORIGIN)
        if origin is not None and origin[0] is self.store:
            self._attach(obj, origin[1], dict(origin[2]))
        else:
            self.new[marker] = obj

    def remove(self, obj: Any, model: type[Any]) -> None:
        marker = id(obj)
        if self.new.pop(marker, None) is not None:
            return
        if marker not in self.keys:
            origin = inspect(obj).info.get(ORIGIN)
            if origin is None or origin[0] is not self.store:
                raise InvalidArgumentError(f"cannot remove a {model.__name__} that was never added or loaded")
            self._attach(obj, origin[1], dict(origin[2]))
        self.deleted[marker] = obj

    def insert_rows(self, table: Table, rows: list[Values]) -> None:
        """Insert `rows` as one statement: all of them, or none when one violates a constraint."""
        self.check_usable()
        if self.read_only:
            raise read_only_refusal("a write statement sent through the session was")
        staged: dict[tuple[Any, ...], Row] = {}
        try:
            for given in rows:
                values = {field: copy_value(given.get(field)) for field in table.fields}
                self._complete(table, values)
                ident = table.ident(values)
                if ident in staged or self.row((table.base, ident)) is not None:
                    self._duplicate(table, values)
                check_unique(table, ident, values, [*self.rows(table.base), *staged.items()])
                staged[ident] = Row(table.cls, values)
        except BaseException:
            self.on_failure()
            raise
        changes = self.changes.setdefault(table.base, {})
        for ident, row in staged.items():
            self._stage(changes, ident, "insert", row)
        self.flushed = True  # written, not committed: the unit warns if it ends like this

    # -- flush ------------------------------------------------------------------------------------

    def dirty(self) -> list[tuple[_Entry, frozenset[str]]]:
        found = []
        for entry in self.identity.values():
            if id(entry.obj) in self.deleted:
                continue
            state_dict = inspect(entry.obj).dict
            changed = frozenset(
                field for field in entry.table.fields if state_dict.get(field) != entry.snapshot.get(field)
            )
            if changed:
                found.append((entry, changed))
        return found

    def flush(self) -> None:
        """Write pending objects, changes and removals into this transaction, as a session's flush.

        A violation rolls the whole transaction back, as a database does when a flush fails, and
        leaves the transaction unusable until `rollback()`.
        """
        self.check_usable()
        dirty = self.dirty()
        if not (self.new or dirty or self.deleted):
            return
        if self.read_only:
            raise read_only_refusal("flushing changes was")
        try:
            self._flush(dirty)
        except BaseException as exc:
            if not self.savepoints:  # inside a savepoint, leaving it rolls back to it
                self.changes = {}
            self.broken = exc
            self.on_failure()
            raise
        self.flushed = True

    def _flush(self, dirty: list[tuple[_Entry, frozenset[str]]]) -> None:
        # Inserts and updates before deletes, as SQLAlchemy's unit of work orders them.
        for obj in list(self.new.values()):
            table = table_of(type(obj))
            values = table.values_of(obj)
            generated = self._complete(table, values)
            ident = table.ident(values)
            key = (table.base, ident)
            if self.row(key) is not None:
                self._duplicate(table, values)
            check_unique(table, ident, values, self.rows(table.base))
            self._stage(self.changes.setdefault(table.base, {}), ident, "insert", Row(type(obj), values))
            for field in generated:
                set_committed_value(obj, field, copy_value(values[field]))
            del self.new[id(obj)]
            self._register(obj, table, key, values)
        for entry, changed in dirty:
            self._update(entry, changed)
        for obj in list(self.deleted.values()):
            key = self.keys.pop(id(obj))
            self.identity.pop(key)
            self._stage(self.changes.setdefault(key[0], {}), key[1], "delete", None)
            inspect(obj).info.pop(ORIGIN, None)
        self.deleted.clear()

    def _update(self, entry: _Entry, changed: frozenset[str]) -> None:
        table = entry.table
        values = table.values_of(entry.obj)
        for field, make in table.onupdates.items():
            if field not in changed:
                values[field] = make()
                set_committed_value(entry.obj, field, copy_value(values[field]))
                changed = changed | {field}
        self._check_required(table, values)
        old = self.keys[id(entry.obj)]
        ident = table.ident(values)
        changes = self.changes.setdefault(table.base, {})
        if ident != old[1]:  # a new primary key: the row moves
            if self.row((table.base, ident)) is not None:
                self._duplicate(table, values)
            self._stage(changes, old[1], "delete", None)
            self.identity.pop(old)
            kind = "insert"
        else:
            kind = "update"
        check_unique(table, ident, values, self.rows(table.base))
        self._stage(changes, ident, kind, Row(type(entry.obj), values), changed)
        self._register(entry.obj, table, (table.base, ident), values)

    def _stage(
        self,
        changes: dict[tuple[Any, ...], Change],
        ident: tuple[Any, ...],
        kind: str,
        row: Row | None,
        changed: frozenset[str] = frozenset(),
    ) -> None:
        """Record a change, merged with an earlier change of the same row in this transaction."""
        earlier = changes.get(ident)
        if earlier is not None:
            if earlier.kind in ("insert", "replace") and kind == "delete":
                if earlier.kind == "insert":
                    del changes[ident]
                    return
            elif earlier.kind in ("insert", "replace"):
                kind = earlier.kind
            elif earlier.kind == "update" and kind == "update":
                changed = changed | earlier.changed
            elif earlier.kind == "delete" and kind == "insert":
                kind = "replace"
        changes[ident] = Change(kind, row, changed)

    def _complete(self, table: Table, values: Values) -> list[str]:
        """Fill in column defaults and a generated key where a value is missing; the fields filled."""
        filled = []
        for field, make in table.defaults.items():
            if values.get(field) is None:
                values[field] = make()
                filled.append(field)
        key = table.autoincrement
        if key is not None and values.get(key) is None:
            values[key] = self.store.next_id(table, (row.values.get(key) for _, row in self.rows(table.base)))
            filled.append(key)
        self._check_required(table, values)
        return filled

    @staticmethod
    def _check_required(table: Table, values: Values) -> None:
        for field in table.required:
            if values.get(field) is None:
                violation(
                    table,
                    "INSERT INTO",
                    values,
                    f"null value in field {field!r} of {table.name} violates a NOT NULL constraint",
                    "23502",
                )

    @staticmethod
    def _duplicate(table: Table, values: Values) -> NoReturn:
        violation(
            table,
            "INSERT INTO",
            values,
            f"duplicate key {table.describe(values)} violates the primary key of {table.name}",
            "23505",
        )

    # -- the identity map -------------------------------------------------------------------------

    def _register(self, obj: Any, table: Table, key: Key, values: Values) -> None:
        snapshot = {field: copy_value(value) for field, value in values.items()}
        self.identity[key] = _Entry(obj, table, snapshot)
        self.keys[id(obj)] = key
        inspect(obj).info[ORIGIN] = (self.store, key, snapshot)

    def _attach(self, obj: Any, key: Key, snapshot: Values) -> None:
        """Make an object that a unit of the same store loaded or saved before persistent here."""
        if key in self.identity:
            raise InvalidArgumentError(
                f"another {type(obj).__name__} with the same primary key is already in this unit"
            )
        self.identity[key] = _Entry(obj, table_of(type(obj)), snapshot)
        self.keys[id(obj)] = key

    def load(self, key: Key, row: Row) -> Any:
        """The object for `row`: the one in the identity map, or a new one registered there."""
        entry = self.identity.get(key)
        if entry is not None:
            return entry.obj
        obj = instance(row)
        self._register(obj, table_of(row.cls), key, row.values)
        return obj

    # -- reads ------------------------------------------------------------------------------------

    def select(
        self,
        table: Table,
        match: Predicate,
        keys: list[SortKey],
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Any]:
        self.flush()
        found = [
            (ident, row)
            for ident, row in self.rows(table.base)
            if issubclass(row.cls, table.cls) and match(row.values) is True
        ]
        if keys:
            sort_rows(found, keys, lambda entry: entry[1].values)
        start = offset or 0
        found = found[start : None if limit is None else start + limit]
        return [self.load((table.base, ident), row) for ident, row in found]

    def get(self, table: Table, ident: tuple[Any, ...]) -> Any:
        key = (table.base, ident)
        entry = self.identity.get(key)
        if entry is not None:
            return entry.obj if isinstance(entry.obj, table.cls) else None
        self.flush()
        row = self.row(key)
        if row is None or not issubclass(row.cls, table.cls):
            return None
        return self.load(key, row)

    # -- ending -----------------------------------------------------------------------------------

    def uncommitted(self) -> str | None:
        """Describe the work that was neither committed nor rolled back, as the real unit does."""
        parts = [
            f"{count} {what} object(s)"
            for what, count in (
                ("new", len(self.new)),
                ("changed", len(self.dirty())),
                ("deleted", len(self.deleted)),
            )
            if count
        ]
        if self.flushed:
            parts.append("changes already flushed to the database")
        return ", ".join(parts) if parts else None

    def close(self) -> None:
        """End the transaction as closing a session does: roll back, and let every object go as it is.

        The objects keep the values they have; a later unit of the same store that is given one of
        them again (`add` or `remove`) takes it as persistent, with the committed values as the
        base for what changed.
        """
        for key, entry in self.identity.items():
            row = self.store.committed(key[0]).get(key[1])
            info = inspect(entry.obj).info
            if row is None:
                info.pop(ORIGIN, None)
            else:
                info[ORIGIN] = (
                    self.store,
                    key,
                    {field: copy_value(value) for field, value in row.values.items()},
                )
        self.changes = {}
        self.identity = {}
        self.keys = {}
        self.new = {}
        self.deleted = {}

    # -- savepoints -------------------------------------------------------------------------------

    def savepoint(self) -> Savepoint:
        """Flush, then remember this transaction's state to roll back to."""
        self.flush()
        saved = Savepoint(
            {base: dict(rows) for base, rows in self.changes.items()},
            dict(self.identity),
            dict(self.keys),
            self.flushed,
        )
        self.savepoints.append(saved)
        return saved

    def release(self, saved: Savepoint) -> None:
        """Keep the savepoint's work in the transaction: flush it, and forget the savepoint."""
        self.flush()
        self._pop(saved)

    def rollback_to(self, saved: Savepoint) -> None:
        """Undo the work done since `saved`: objects added since are let go, changed ones restored."""
        self._pop(saved)
        for key, entry in self.identity.items():
            if saved.identity.get(key) is not entry and id(entry.obj) not in saved.keys:
                inspect(entry.obj).info.pop(ORIGIN, None)
        for entry in saved.identity.values():
            for field, value in entry.snapshot.items():
                set_committed_value(entry.obj, field, copy_value(value))
            inspect(entry.obj).info[ORIGIN] = (self.store, saved.keys[id(entry.obj)], entry.snapshot)
        self.changes = saved.changes
        self.identity = dict(saved.identity)
        self.keys = dict(saved.keys)
        self.flushed = saved.flushed
        self.new.clear()
        self.deleted.clear()
        self.broken = None

    def _pop(self, saved: Savepoint) -> None:
        if not self.savepoints or self.savepoints[-1] is not saved:
            raise StateError("savepoints must end in the reverse order they began")
        self.savepoints.pop()

    def entities(self) -> list[Any]:
        """Every object this transaction holds: in its identity map, or pending."""
        return [*(entry.obj for entry in self.identity.values()), *self.new.values()]

    # -- the end ----------------------------------------------------------------------------------

    def commit(self) -> None:
        """Flush, then apply every change to the store at once; on any failure, roll back and raise."""
        try:
            self.flush()
            self.store.apply(self.changes)
        except BaseException:
            self.rollback()
            raise
        self.changes = {}
        self.flushed = False

    def rollback(self) -> None:
        """Forget every uncommitted change; objects read before show the committed values again."""
        self.changes = {}
        self.flushed = False
        self.broken = None
        self.savepoints = []
        self.new.clear()
        self.deleted.clear()
        for key, entry in list(self.identity.items()):
            row = self.store.committed(key[0]).get(key[1])
            if row is None:
                del self.identity[key]
                del self.keys[id(entry.obj)]
                inspect(entry.obj).info.pop(ORIGIN, None)
                continue
            for field, value in row.values.items():
                set_committed_value(entry.obj, field, copy_value(value))
            self._register(entry.obj, entry.table, key, row.values)
