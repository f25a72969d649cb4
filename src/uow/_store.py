"""The in-memory store: committed rows of mapped classes, and a database's rules for them, in Python.

The store keeps committed rows (field values, copied) per mapped class, and knows each class's keys,
NOT NULL fields, unique constraints and defaults (`Table`). A unit's transaction
(`uow._memory_transaction`) keeps its own flushed changes on top of the rows; committing applies
them to the store at once.
"""

from __future__ import annotations

import copy
import datetime
import decimal
import enum
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from sqlalchemy import Column, Index, UniqueConstraint, inspect
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Mapper, configure_mappers
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from uow._classify import translate
from uow._repository import _model_of

__all__ = [
    "ORIGIN",
    "Change",
    "ConstraintViolation",
    "InMemoryStore",
    "Key",
    "Row",
    "Table",
    "Values",
    "check_unique",
    "copy_value",
    "instance",
    "table_of",
    "violation",
]

T = TypeVar("T")

Values = dict[str, Any]
Key = tuple[type[Any], tuple[Any, ...]]
"""An object's identity: the base class of its mapping and its primary-key values."""

ORIGIN = "uow.memory"
_IMMUTABLE = (
    int,
    float,
    str,
    bytes,
    bool,
    type(None),
    decimal.Decimal,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    uuid.UUID,
    enum.Enum,
    frozenset,
)


def copy_value(value: Any) -> Any:
    """A copy of `value` that no later change of the original can reach, as a database row is."""
    return value if isinstance(value, _IMMUTABLE) else copy.deepcopy(value)


class ConstraintViolation(Exception):
    """What the in-memory store raises where a database driver would: the `orig` of its errors.

    Attributes:
        sqlstate: The SQLSTATE a database reports for the same violation (`23505` for a duplicate
            key, `23502` for a missing NOT NULL value), which is how uow classifies it.
    """

    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@dataclass(frozen=True, slots=True)
class Table:
    """What the fake needs to know about a mapped class, worked out once per class."""

    cls: type[Any]
    mapper: Mapper[Any]
    base: type[Any]
    name: str
    fields: tuple[str, ...]
    identity: tuple[str, ...]
    autoincrement: str | None
    required: tuple[str, ...]
    uniques: tuple[tuple[str, ...], ...]
    defaults: dict[str, Any]
    onupdates: dict[str, Any]

    def values_of(self, obj: object) -> Values:
        state_dict = inspect(obj).dict
        return {field: copy_value(state_dict.get(field)) for field in self.fields}

    def ident(self, values: Values) -> tuple[Any, ...]:
        return tuple(values[field] for field in self.identity)

    def describe(self, values: Values, fields: tuple[str, ...] | None = None) -> str:
        fields = fields or self.identity
        shown = ", ".join(repr(values.get(field)) for field in fields)
        return f"({', '.join(fields)})=({shown})"


_TABLES: dict[type[Any], Table] = {}


def _generated(default: Any) -> Any:
    """A Python-side column default or onupdate turned into a callable of no arguments, if it is one."""
    if default is None:
        return None
    if default.is_scalar:
        value = default.arg
        return lambda: copy_value(value)
    if default.is_callable:
        function = default.arg
        return lambda: function(None)
    return None


def table_of(cls: type[Any]) -> Table:
    """The `Table` of mapped class `cls`; refuses a class that is not mapped."""
    table = _TABLES.get(cls)
    if table is not None:
        return table
    _model_of(cls)
    configure_mappers()
    mapper: Mapper[Any] = inspect(cls)
    columns: dict[str, list[Column[Any]]] = {
        prop.key: [column for column in prop.columns if isinstance(column, Column)]
        for prop in mapper.column_attrs
    }

    def field(column: Any) -> str:
        key: str = mapper.get_property_by_column(column).key
        return key

    identity = tuple(field(column) for column in mapper.primary_key)
    base_table = mapper.base_mapper.local_table
    increment = getattr(base_table, "autoincrement_column", None)
    autoincrement = field(increment) if increment is not None else None
    uniques: list[tuple[str, ...]] = []
    for mapped in mapper.tables:
        for constraint in (*getattr(mapped, "constraints", ()), *getattr(mapped, "indexes", ())):
            unique = isinstance(constraint, UniqueConstraint) or (
                isinstance(constraint, Index) and constraint.unique
            )
            if unique and all(isinstance(column, Column) for column in constraint.columns):
                uniques.append(tuple(field(column) for column in constraint.columns))
    evaluable = {key for key, cols in columns.items() if cols and _generated(cols[0].default) is not None}
    table = Table(
        cls=cls,
        mapper=mapper,
        base=mapper.base_mapper.class_,
        name=str(getattr(mapper.local_table, "name", cls.__name__)),
        fields=tuple(columns),
        identity=identity,
        autoincrement=autoincrement,
        # A server default, or a SQL expression as default, cannot be evaluated here: such a column
        # stays None rather than failing its NOT NULL constraint.
        required=tuple(
            key
            for key, cols in columns.items()
            if key != autoincrement
            and any(not column.nullable for column in cols)
            and not any(column.server_default is not None for column in cols)
            and (cols[0].default is None or key in evaluable)
        ),
        uniques=tuple(uniques),
        defaults={key: d for key, cols in columns.items() if cols and (d := _generated(cols[0].default))},
        onupdates={key: d for key, cols in columns.items() if cols and (d := _generated(cols[0].onupdate))},
    )
    _TABLES[cls] = table
    return table


def violation(table: Table, action: str, values: Values, message: str, sqlstate: str) -> NoReturn:
    """Raise the uow error a database's violation would turn into, chained to SQLAlchemy's."""
    error = sa_exc.IntegrityError(
        f"{action} {table.name}", dict(values), ConstraintViolation(message, sqlstate)
    )
    translated = translate(error)
    raise (translated or error) from error


@dataclass(slots=True)
class Row:
    """A stored row: the mapped class it belongs to and its field values."""

    cls: type[Any]
    values: Values


@dataclass(slots=True)
class Change:
    """One flushed, uncommitted change to one row.

    `kind` is `insert` (the row must not exist at commit), `update` (it must; `changed` names
    the fields to write), `delete` or `replace` (deleted and inserted again in one transaction).
    """

    kind: str
    row: Row | None
    changed: frozenset[str] = frozenset()


class InMemoryStore:
    """The committed rows of an in-memory database, shared by the in-memory units given it.

    A unit's commit makes its changes visible here, and so to every later read of every unit sharing
    the store; a rollback leaves it untouched. The store keeps copies of field values, never the
    objects, so an object changed after its unit ended changes nothing here. It is thread-safe:
    commits are applied one at a time, each as a whole.

    Use it in tests to seed data (`insert()`) and to check what was committed (`all()`),
    beside the units under test.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._tables: dict[type[Any], dict[tuple[Any, ...], Row]] = {}
        self._counters: dict[type[Any], int] = {}

    def __repr__(self) -> str:
        counts = ", ".join(f"{base.__name__}: {len(rows)}" for base, rows in self._tables.items() if rows)
        return f"<InMemoryStore {counts or 'empty'}>"

    def insert(self, *objects: object) -> None:
        """Commit `objects` as rows at once, outside any unit, as a fixture would seed a database.

        Column defaults and generated keys are applied and written back into the objects, as a
        commit does. Nothing is inserted if one of them violates a constraint.

        Raises:
            InvalidArgumentError: One of them is not an instance of a mapped class.
            DuplicateKeyError: A primary key or unique value exists already.
            IntegrityError: A NOT NULL field is `None`.
        """
        from uow._memory_transaction import Transaction  # the transaction module builds on this one

        transaction = Transaction(self)
        for obj in objects:
            transaction.add(obj)
        transaction.commit()

    def all(self, model: type[T]) -> list[T]:
        """New copies of every committed object of `model` (subclasses included), by primary key.

        The copies belong to no unit: changing them changes nothing in the store.
        """
        table = table_of(model)
        rows = [row for row in self._tables.get(table.base, {}).values() if issubclass(row.cls, model)]
        rows.sort(key=lambda row: tuple((value is not None, value) for value in table.ident(row.values)))
        return [instance(row) for row in rows]

    def clear(self) -> None:
        """Delete every committed row; generated keys go on counting where they were."""
        with self._lock:
            self._tables = {}

    # -- used by the transactions --------------------------------------------------------------

    def committed(self, base: type[Any]) -> dict[tuple[Any, ...], Row]:
        """The committed rows of `base`; never changed in place, so safe to read without the lock."""
        return self._tables.get(base, {})

    def next_id(self, table: Table, seen: Iterable[Any]) -> int:
        """The next generated key of `table`: like a sequence, never handed out twice."""
        with self._lock:
            current = max([self._counters.get(table.base, 0), *(v for v in seen if isinstance(v, int))])
            self._counters[table.base] = current + 1
            return current + 1

    def apply(self, changes: dict[type[Any], dict[tuple[Any, ...], Change]]) -> None:
        """Apply one transaction's changes as a whole, or raise and apply none of them."""
        with self._lock:
            tables = {base: dict(self._tables.get(base, {})) for base in changes}
            for base, entries in changes.items():
                rows = tables[base]
                for ident, change in entries.items():
                    table = table_of(change.row.cls if change.row is not None else base)
                    if change.kind == "delete":
                        rows.pop(ident, None)
                        continue
                    assert change.row is not None
                    current = rows.get(ident)
                    if change.kind == "insert" and current is not None:
                        violation(
                            table,
                            "INSERT INTO",
                            change.row.values,
                            f"duplicate key {table.describe(change.row.values)} in {table.name}, "
                            "committed by another unit",
                            "23505",
                        )
                    if change.kind == "update":
                        if current is None:
                            raise StaleDataError(
                                f"UPDATE of {table.name} {table.describe(change.row.values)} matched no "
                                "row: another unit deleted it after this one read it"
                            )
                        values = dict(current.values)
                        values.update({field: change.row.values[field] for field in change.changed})
                        rows[ident] = Row(change.row.cls, values)
                    else:
                        rows[ident] = Row(change.row.cls, change.row.values)
                    check_unique(table, ident, rows[ident].values, rows.items(), "committed by another unit")
            self._tables.update(tables)


def instance(row: Row) -> Any:
    """A new object of the row's class holding copies of its values, as loading from a database."""
    obj = table_of(row.cls).mapper.class_manager.new_instance()
    for field, value in row.values.items():
        set_committed_value(obj, field, copy_value(value))
    return obj


def check_unique(
    table: Table,
    ident: tuple[Any, ...],
    values: Values,
    rows: Iterable[tuple[tuple[Any, ...], Row]],
    where: str = "",
) -> None:
    for fields in table.uniques:
        wanted = tuple(values.get(field) for field in fields)
        if None in wanted:
            continue  # NULLs never collide
        for other, row in rows:
            if other != ident and tuple(row.values.get(field) for field in fields) == wanted:
                violation(
                    table,
                    "INSERT INTO",
                    values,
                    f"duplicate value {table.describe(values, fields)} of a unique constraint of "
                    f"{table.name}{', ' + where if where else ''}",
                    "23505",
                )
