"""What a repository knows about its mapped class, worked out once per mapping, and small shared helpers."""

from __future__ import annotations

import re
from typing import Any, Literal, NoReturn, cast

from sqlalchemy import (
    ColumnElement,
    Index,
    Insert,
    Select,
    Table,
    UniqueConstraint,
    func,
    insert,
    inspect,
    literal,
    select,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine.default import StrCompileDialect
from sqlalchemy.orm import ColumnProperty, Mapper, QueryableAttribute
from sqlalchemy.orm import exc as orm_exc
from sqlalchemy.orm.instrumentation import ClassManager
from sqlalchemy.sql.schema import Column

from uow._classify import translate
from uow._errors import InvalidArgumentError, StateError

__all__ = [
    "ENDED_SESSION",
    "MAX_INT32",
    "MAX_INT64",
    "TRANSLATED",
    "ModelInfo",
    "is_expression",
    "model_info",
    "raise_translated",
    "shape",
]

MAX_INT64 = 2**63 - 1
"""The largest `limit` and `offset`: what a 64-bit signed integer holds, as every backend takes."""
MAX_INT32 = 2**31 - 1
"""The largest `batch_size`: SQLite's driver and PostgreSQL's `FETCH` take a 32-bit signed count."""

TRANSLATED = (sa_exc.DBAPIError, orm_exc.StaleDataError)
"""The SQLAlchemy errors a repository method translates (see `raise_translated`)."""

VersionKind = Literal["counter", "generated", "server"]


class ModelInfo:
    """What a repository needs to know about its mapped class, worked out once per mapping of it.

    Made by `model_info()` only, and never changed after.
    """

    # A plain class: a frozen dataclass costs `import uow` about 4 million instructions.
    __slots__ = (
        "cls", "columns", "count", "exists", "insert", "insert_renames", "keys", "manager", "mapper",
        "nullable", "select", "table", "unique", "version",
    )  # fmt: skip

    def __init__(
        self,
        *,
        cls: type[Any],
        mapper: Mapper[Any],
        columns: dict[str, QueryableAttribute[Any]],
        select: Select[Any],
        count: Select[Any],
        exists: Select[Any],
        insert: Insert,
        insert_renames: dict[str, str] | None,
        table: Table | None,
        keys: tuple[str, ...],
        unique: tuple[frozenset[str], ...],
        nullable: frozenset[str],
        version: tuple[str, VersionKind] | None,
    ) -> None:
        self.cls: type[Any] = cls
        self.mapper: Mapper[Any] = mapper
        self.manager: ClassManager[Any] = mapper.class_manager
        self.columns: dict[str, QueryableAttribute[Any]] = columns
        """Field name to class attribute, for every column attribute: the only names strings may take."""
        self.select: Select[Any] = select
        self.count: Select[Any] = count
        self.exists: Select[Any] = exists
        self.insert: Insert = insert
        self.insert_renames: dict[str, str] | None = insert_renames
        """Field name to column key where a field's column has another key than the field's name."""
        self.table: Table | None = table
        """The one table of a model without inheritance; `None` otherwise."""
        self.keys: tuple[str, ...] = keys
        """The fields of the primary key, in the key's order."""
        self.unique: tuple[frozenset[str], ...] = unique
        """The field sets that identify at most one row: the primary key, unique constraints and indexes."""
        self.nullable: frozenset[str] = nullable
        """The fields whose column may hold NULL."""
        self.version: tuple[str, VersionKind] | None = version
        """The version field (`version_id_col`) and how new versions are made, if the model has one."""

    @property
    def name(self) -> str:
        return self.cls.__name__

    def column(self, field: str) -> Column[Any]:
        """The table column behind a field of a single-table model."""
        prop = self.mapper.get_property(field)
        assert isinstance(prop, ColumnProperty)
        return cast("Column[Any]", prop.columns[0])


_MODELS: dict[type[Any], ModelInfo] = {}


def model_info(cls: Any) -> ModelInfo:
    """What a repository needs to know about mapped class `cls`, from the cache while still valid.

    A cached entry is valid while the mapper it was built from still maps the class:
    `clear_mappers()` or `registry.dispose()` detach the class's manager from that mapper, and a
    class mapped again after that gets a new manager and a new mapper, so the entry is built anew.
    """
    model = _MODELS.get(cls)
    if model is not None and model.manager.mapper is model.mapper:
        return model
    mapper: object = inspect(cls, raiseerr=False) if isinstance(cls, type) else None
    if not isinstance(mapper, Mapper) or mapper.class_ is not cls:
        raise InvalidArgumentError(
            f"a repository needs a mapped class, got {cls!r}; "
            "map it with DeclarativeBase or registry.mapped first"
        )
    # Keys come from the mapper, never from user input: this is the only getattr on the model.
    columns = {prop.key: getattr(cls, prop.key) for prop in mapper.column_attrs}
    table = mapper.local_table
    plain = mapper.inherits is None and mapper.polymorphic_on is None and isinstance(table, Table)
    insert_keys = (
        {
            prop.key: prop.columns[0].key
            for prop in mapper.column_attrs
            if len(prop.columns) == 1 and prop.columns[0].table is table
        }
        if plain
        else None
    )
    renames = {field: key for field, key in (insert_keys or {}).items() if field != key}
    fields: dict[Any, str] = {column: prop.key for prop in mapper.column_attrs for column in prop.columns}
    model = ModelInfo(
        cls=cls,
        mapper=mapper,
        columns=columns,
        select=select(cls),
        count=select(func.count()).select_from(cls),
        exists=select(literal(1)).select_from(cls),
        insert=insert(cast("Table", table)) if insert_keys is not None else insert(cls),
        insert_renames=renames or None,
        table=cast("Table", table) if plain else None,
        keys=tuple(fields[column] for column in mapper.primary_key),
        unique=_unique_fields(mapper, fields),
        nullable=frozenset(
            prop.key for prop in mapper.column_attrs if any(column.nullable for column in prop.columns)
        ),
        version=_version(mapper, fields),
    )
    _MODELS[cls] = model
    return model


def _unique_fields(mapper: Mapper[Any], fields: dict[Any, str]) -> tuple[frozenset[str], ...]:
    found = [frozenset(fields[column] for column in mapper.primary_key)]
    table = mapper.local_table
    if isinstance(table, Table):
        sets: list[Any] = [c.columns for c in table.constraints if isinstance(c, UniqueConstraint)]
        sets += [index.columns for index in table.indexes if isinstance(index, Index) and index.unique]
        sets += [[column] for column in table.columns if column.unique]
        for columns in sets:
            if all(column in fields for column in columns):
                names = frozenset(fields[column] for column in columns)
                if names not in found:
                    found.append(names)
    return tuple(found)


def _version(mapper: Mapper[Any], fields: dict[Any, str]) -> tuple[str, VersionKind] | None:
    column = mapper.version_id_col
    if column is None:
        return None
    generator = mapper.version_id_generator
    if not callable(generator):
        return fields[column], "server"
    try:
        counts = generator(None) == 1 and generator(1) == 2 and generator(41) == 42
    except Exception:  # a generator of other values (a uuid, a timestamp)
        counts = False
    return fields[column], "counter" if counts else "generated"


def raise_translated(error: Exception) -> NoReturn:
    """Raise the uow error that stands for `error` (chained to it), or `error` itself."""
    translated = translate(error) if isinstance(error, sa_exc.SQLAlchemyError) else None
    if translated is None:
        raise error
    raise translated from error


_PLACEHOLDERS = StrCompileDialect(paramstyle="qmark")
_EXPANDING = r"__\[POSTCOMPILE_\w+\]"


def shape(clause: ColumnElement[Any]) -> str:
    """A filter as SQL with every value as `?`, for error messages that must not echo what was searched.

    `IN` lists show as `IN (?)`, values rendered at execution (`literal_execute`) as `?`.
    """
    try:
        text = str(clause.compile(dialect=_PLACEHOLDERS))
    except Exception:  # an expression that even the string compiler cannot render
        return "an expression"
    return " ".join(re.sub(_EXPANDING, "?", text).split())


def is_expression(value: object) -> bool:
    return isinstance(value, ColumnElement) or hasattr(value, "__clause_element__")


class _EndedSession:
    """Stands in for the session of a repository whose unit's block has ended."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        raise StateError(
            "this repository belonged to a unit of work whose block has ended; "
            "get a repository with unit.repository(...) inside an active block instead"
        )

    def __repr__(self) -> str:
        return "<session of an ended unit of work>"


ENDED_SESSION: Any = _EndedSession()
