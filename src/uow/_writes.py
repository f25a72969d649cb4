"""Writes by statement: native upserts, a race-safe get-or-create, and bulk UPDATE and DELETE.

Each operation is a function of a sync `Session`: the sync repository calls it directly and the
async one through `AsyncSession.run_sync`, so both send the same statements.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from operator import attrgetter, itemgetter
from typing import Any

from sqlalchemy import ColumnElement, Delete, Dialect, Update, delete, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from uow._classify import conflict, is_duplicate_key
from uow._errors import InvalidArgumentError, InvalidFieldError
from uow._listeners import mark_written
from uow._locks import backend_name
from uow._model import ModelInfo

__all__ = [
    "bulk_delete",
    "bulk_update",
    "check_key",
    "get_or_create",
    "run_bulk",
    "upsert_rows",
]

ROWS_PER_STATEMENT = 1000
"""The most rows one upsert statement carries."""
PARAMETERS_PER_STATEMENT = 30_000
"""The most bound values one upsert statement carries: SQLite takes 32,766."""

_INSERTS = {
    "postgresql": "sqlalchemy.dialects.postgresql",
    "sqlite": "sqlalchemy.dialects.sqlite",
    "mysql": "sqlalchemy.dialects.mysql",
    "mariadb": "sqlalchemy.dialects.mysql",
}
"""Where each backend's `insert()` with its upsert clause lives; imported on first use."""


def _dialect(session: Session, info: ModelInfo) -> Dialect:
    return session.get_bind(mapper=info.mapper).dialect


def _native_insert(dialect: Dialect, info: ModelInfo, action: str) -> Any:
    module = _INSERTS.get(dialect.name)
    if module is None:
        raise InvalidArgumentError(f"{action} of {info.name} needs PostgreSQL, MariaDB, MySQL or SQLite")
    if info.table is None:
        raise InvalidArgumentError(
            f"{action} of {info.name} needs a model mapped to one table, without inheritance"
        )
    return importlib.import_module(module).insert(info.cls)


def check_key(info: ModelInfo, on: object, action: str) -> tuple[str, ...]:
    """The fields of `on`, checked to be the primary key or a unique constraint of the model.

    Raises:
        InvalidFieldError: A name is not a mapped column.
        InvalidArgumentError: The fields do not identify a row (no unique constraint has exactly them).
    """
    if on is None:
        return info.keys
    names = (on,) if isinstance(on, str) else tuple(on) if isinstance(on, list | tuple) else None
    if not names:
        raise InvalidArgumentError(f"on= of {action} takes a field name or a tuple of them, got {on!r}")
    for name in names:
        if not isinstance(name, str) or name not in info.columns:
            raise InvalidFieldError(info.cls, str(name), usage="conflict key")
    if frozenset(names) not in info.unique:
        keys = "; ".join(", ".join(sorted(fields)) for fields in info.unique)
        raise InvalidArgumentError(
            f"{action} of {info.name} on ({', '.join(names)}): these fields are neither the primary key "
            f"nor a unique constraint of its table, so they do not identify one row; the unique field "
            f"sets are: {keys}"
        )
    return names


def _check_fields(info: ModelInfo, names: object, usage: str) -> None:
    for name in names:  # type: ignore[attr-defined]  # an iterable of keys, checked one by one
        if not isinstance(name, str) or name not in info.columns:
            raise InvalidFieldError(info.cls, str(name), usage=usage)


# -- upsert --------------------------------------------------------------------------------------


def _version_values(info: ModelInfo, rows: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """`rows`, new ones given the first version as a flush of a new object would (copied, not changed)."""
    if info.version is None or info.version[1] == "server" or info.version[0] in rows[0]:
        return rows
    field = info.version[0]
    generator = info.mapper.version_id_generator
    assert callable(generator)
    return [{**row, field: generator(None)} for row in rows]


def upsert_rows(
    session: Session, info: ModelInfo, rows: list[Mapping[str, Any]], on: tuple[str, ...], update: object
) -> list[Any]:
    """Insert `rows`, or update the rows whose `on` fields they match, and return the objects written.

    One `INSERT ... ON CONFLICT (on) DO UPDATE` (PostgreSQL, SQLite) or `INSERT ... ON DUPLICATE KEY
    UPDATE` (MariaDB, MySQL) per batch of rows, with `RETURNING` the rows as written; the objects are
    loaded with `populate_existing`, so objects of those rows already in the session show the new
    values.
    """
    dialect = _dialect(session, info)
    native = _native_insert(dialect, info, "upsert")
    names = rows[0].keys()
    fields = list(names)
    _check_fields(info, fields, "field to upsert")
    pick = itemgetter(*on)
    single = len(on) == 1
    seen: dict[Any, int] = {}
    for number, row in enumerate(rows, 1):
        if row.keys() != names:
            raise InvalidArgumentError(
                f"upsert_many() rows of {info.name} must all name the same fields: row {number} names "
                f"{sorted(row)}, row 1 names {sorted(names)}"
            )
        try:
            key = pick(row)
        except KeyError:
            key = None
        if key is None or (not single and None in key):
            missing = next(name for name in on if row.get(name) is None)
            raise InvalidArgumentError(
                f"upsert of {info.name}: row {number} has no value for {missing!r}, one of the fields of "
                "on=; NULL never matches a row, so every field of on= needs a value"
            )
        first = seen.setdefault(key, number)
        if first != number:
            raise InvalidArgumentError(
                f"upsert_many() of {info.name}: rows {first} and {number} have the same values for "
                f"{', '.join(on)}; a statement cannot write one row twice"
            )
    given: dict[str, Any] = {}
    if update is None:
        updated = [name for name in fields if name not in on and name not in info.keys]
    elif isinstance(update, Mapping):
        _check_fields(info, update, "field to update on conflict")
        given = dict(update)
        updated = []
    else:
        updated = list((update,) if isinstance(update, str) else update)  # type: ignore[call-overload]
        _check_fields(info, updated, "field to update on conflict")
        for name in updated:
            if name not in fields:
                raise InvalidArgumentError(
                    f"upsert of {info.name}: update= names {name!r}, which the rows lack"
                )
    version = info.version
    if version is not None and version[0] in updated:
        updated.remove(version[0])
    rows = _version_values(info, rows)
    columns = [info.column(name) for name in rows[0]]
    per = max(1, min(ROWS_PER_STATEMENT, PARAMETERS_PER_STATEMENT // max(1, len(columns) + 1)))
    written: list[Any] = []
    for start in range(0, len(rows), per):
        statement = native.values(rows[start : start + per])
        proposed = statement.inserted if dialect.name in {"mysql", "mariadb"} else statement.excluded
        assignments: dict[Any, Any] = {info.column(name): proposed[info.column(name).key] for name in updated}
        assignments.update((info.column(name), value) for name, value in given.items())
        if version is not None and version[1] != "server" and version[0] not in given:
            column = info.column(version[0])
            assignments[column] = column + 1 if version[1] == "counter" else proposed[column.key]
        if not assignments:  # nothing to change: assign a key to itself, so the row is returned
            column = info.column(on[0])
            assignments[column] = proposed[column.key]
        if dialect.name in {"mysql", "mariadb"}:
            statement = statement.on_duplicate_key_update(assignments)
        else:
            statement = statement.on_conflict_do_update(
                index_elements=[info.column(name) for name in on], set_=assignments
            )
        result = session.scalars(statement.returning(info.cls), execution_options={"populate_existing": True})
        written.extend(result.all())
        mark_written(session)
    return _in_order(written, rows, on)


def _in_order(written: list[Any], rows: list[Mapping[str, Any]], on: tuple[str, ...]) -> list[Any]:
    """`written` in the order of `rows`, matched by their `on` values; unmatched ones at the end.

    A row matches no object only where the database compares keys otherwise than Python (a
    case-insensitive collation, a value converted by the column's type).
    """
    if len(written) == 1:
        return written
    value_of = attrgetter(*on)
    by_key = {value_of(obj): obj for obj in written}
    pick = itemgetter(*on)
    ordered = [by_key.pop(key) for key in map(pick, rows) if key in by_key]
    if by_key:
        left = {id(obj) for obj in by_key.values()}
        ordered.extend(obj for obj in written if id(obj) in left)
    return ordered


# -- get or create -------------------------------------------------------------------------------


def get_or_create(
    session: Session, info: ModelInfo, keys: dict[str, Any], defaults: Mapping[str, Any]
) -> tuple[Any, bool]:
    """The object whose unique `keys` match, created with `keys` and `defaults` if there is none.

    Race-safe: two transactions asking for the same keys at once end with one row, one of them
    creating it. PostgreSQL and SQLite insert with `ON CONFLICT (keys) DO NOTHING`; MariaDB inserts
    in a savepoint that a duplicate key rolls back (which clears the unit's partial-commit guard)
    and then reads the other transaction's row with a locking read, which sees the latest committed
    row whatever the isolation level.
    """
    names = check_key(info, tuple(keys), "get_or_create()")
    _check_fields(info, defaults, "default of get_or_create()")
    for name in names:
        if keys[name] is None:
            raise InvalidArgumentError(
                f"get_or_create() of {info.name}: {name!r} is None, and NULL never matches a row; "
                "give every key a value"
            )
    for name in defaults:
        if name in keys:
            raise InvalidArgumentError(
                f"get_or_create() of {info.name}: {name!r} is both a key and a default; give it once"
            )
    criteria = [info.columns[name] == value for name, value in keys.items()]
    lookup = select(info.cls).where(*criteria)
    found = session.scalars(lookup).one_or_none()
    if found is not None:
        return found, False
    dialect = _dialect(session, info)
    native = _native_insert(dialect, info, "get_or_create()")
    [row] = _version_values(info, [{**defaults, **keys}])
    statement = native.values(row)
    duplicate: sa_exc.DBAPIError | None = None
    if dialect.name in {"mysql", "mariadb"}:
        try:
            with session.begin_nested():
                created = session.scalars(statement.returning(info.cls)).one()
        except sa_exc.IntegrityError as exc:
            if not is_duplicate_key(exc):
                raise
            duplicate = exc
            lookup = lookup.with_for_update(read=True)  # the latest committed row, not the snapshot's
        else:
            mark_written(session)
            return created, True
    else:
        statement = statement.on_conflict_do_nothing(index_elements=[info.column(name) for name in names])
        created = session.scalars(statement.returning(info.cls)).one_or_none()
        if created is not None:
            mark_written(session)
            return created, True
    found = session.scalars(lookup).one_or_none()
    if found is not None:
        return found, False
    if duplicate is not None:  # MariaDB cannot say which unique key the insert collided with
        raise duplicate
    raise conflict_gone(info, dialect)


def conflict_gone(info: ModelInfo, dialect: Dialect) -> Exception:
    """The error when the row that blocked an insert is gone by the time it is read."""
    from sqlalchemy.orm.exc import StaleDataError

    return conflict(
        StaleDataError(
            f"get_or_create() of {info.name} on {backend_name(dialect)}: another transaction created "
            "the row, and it was deleted again before this one could read it."
        )
    )


# -- bulk UPDATE and DELETE ----------------------------------------------------------------------


def bulk_update(info: ModelInfo, values: object, criteria: list[ColumnElement[bool]]) -> Update:
    """The `UPDATE` of `update_where()`: checked names, the version bumped, loaded objects kept in sync."""
    if not isinstance(values, Mapping) or not values:
        raise InvalidArgumentError(
            f"update_where() of {info.name} takes a non-empty mapping of field names to new values, "
            f"got {values!r}"
        )
    _check_fields(info, values, "field to update")
    assignments: dict[Any, Any] = {}
    for name, value in values.items():
        if name in info.keys:
            raise InvalidArgumentError(
                f"update_where() of {info.name} cannot change {name!r}, a primary-key field: objects "
                "loaded in the session could not follow; delete and insert instead"
            )
        assignments[info.columns[name]] = value
    version = info.version
    if version is not None and version[1] == "counter" and version[0] not in values:
        attribute = info.columns[version[0]]
        assignments[attribute] = attribute + 1
    _require_filter(info, criteria, "update_where()")
    return (
        update(info.cls).where(*criteria).values(assignments).execution_options(synchronize_session="fetch")
    )


def bulk_delete(info: ModelInfo, criteria: list[ColumnElement[bool]]) -> Delete:
    """The `DELETE` of `delete_where()`; objects of deleted rows leave the session."""
    _require_filter(info, criteria, "delete_where()")
    return delete(info.cls).where(*criteria).execution_options(synchronize_session="fetch")


def _require_filter(info: ModelInfo, criteria: list[ColumnElement[bool]], action: str) -> None:
    if not criteria:
        raise InvalidArgumentError(
            f"{action} of {info.name} needs at least one filter; to change every row, say so with "
            "sqlalchemy.true() as the filter"
        )


def run_bulk(session: Session, statement: Update | Delete) -> int:
    """Run a bulk statement; the number of rows it matched. A write that matched rows is uncommitted work."""
    result = session.execute(statement)
    count = int(result.rowcount)  # type: ignore[attr-defined]  # a CursorResult for UPDATE and DELETE
    if count:
        mark_written(session)
    return count
