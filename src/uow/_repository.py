"""Typed repositories: the everyday reads and writes of one mapped class, with safe filtering."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, NoReturn, TypeAlias, TypeVar, cast

from sqlalchemy import ColumnElement, Insert, Select, Table, func, insert, inspect, literal, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine.default import StrCompileDialect
from sqlalchemy.orm import Mapper, QueryableAttribute, Session
from sqlalchemy.orm.instrumentation import ClassManager

from uow._classify import translate
from uow._errors import (
    InvalidArgumentError,
    InvalidFieldError,
    MultipleResultsError,
    NotFoundError,
    StateError,
)
from uow._listeners import mark_written

__all__ = ["OrderBy", "Repository"]

T = TypeVar("T")

MAX_INT64 = 2**63 - 1
"""The largest `limit` and `offset`: what a 64-bit signed integer holds, as every backend takes."""
MAX_INT32 = 2**31 - 1
"""The largest `batch_size`: SQLite's driver and PostgreSQL's `FETCH` take a 32-bit signed count."""

OrderItem: TypeAlias = "str | ColumnElement[Any] | QueryableAttribute[Any]"
OrderBy: TypeAlias = "OrderItem | Sequence[OrderItem] | None"
"""What `order_by` accepts: a field name (`"name"`, `"-name"` for descending), a column
expression (`User.name`, `User.name.desc()`), or a sequence of these."""


@dataclass(frozen=True, slots=True)
class _Model:
    """What a repository needs to know about its mapped class, worked out once per mapping of it."""

    cls: type[Any]
    mapper: Mapper[Any]
    manager: ClassManager[Any]
    columns: dict[str, QueryableAttribute[Any]]
    select: Select[Any]
    count: Select[Any]
    exists: Select[Any]
    insert: Insert
    insert_renames: dict[str, str] | None
    """Field name to column key where a field's column has another key than the field's name."""

    @property
    def name(self) -> str:
        return self.cls.__name__


_MODELS: dict[type[Any], _Model] = {}


def _model_of(cls: Any) -> _Model:
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
    model = _Model(
        cls=cls,
        mapper=mapper,
        manager=mapper.class_manager,
        columns=columns,
        select=select(cls),
        count=select(func.count()).select_from(cls),
        exists=select(literal(1)).select_from(cls),
        insert=insert(cast("Table", table)) if insert_keys is not None else insert(cls),
        insert_renames=renames or None,
    )
    _MODELS[cls] = model
    return model


def raise_translated(error: sa_exc.DBAPIError) -> NoReturn:
    """Raise the uow error that stands for `error` (chained to it), or `error` itself."""
    translated = translate(error)
    if translated is None:
        raise error
    raise translated from error


_PLACEHOLDERS = StrCompileDialect(paramstyle="qmark")
_EXPANDING = re.compile(r"__\[POSTCOMPILE_\w+\]")


def _shape(clause: ColumnElement[Any]) -> str:
    """A filter as SQL with every value as `?`, for error messages that must not echo what was searched.

    `IN` lists show as `IN (?)`, values rendered at execution (`literal_execute`) as `?`.
    """
    try:
        text = str(clause.compile(dialect=_PLACEHOLDERS))
    except Exception:  # an expression that even the string compiler cannot render
        return "an expression"
    return " ".join(_EXPANDING.sub("?", text).split())


def _render(clause: ColumnElement[Any]) -> str:
    """A readable form of a filter for error messages, with its values inline where possible."""
    try:
        return str(clause.compile(compile_kwargs={"literal_binds": True}))
    except Exception:  # a value with no literal form: show the placeholders instead
        return str(clause)


def _is_expression(value: object) -> bool:
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


class _RepositoryCore(Generic[T]):
    """The rules shared by the sync and async repositories: model, validation, statement building."""

    _default_model: ClassVar[type[Any] | None] = None

    model: type[T]
    """The mapped class this repository reads and writes."""

    _info: _Model

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            origin = typing.get_origin(base)
            if isinstance(origin, type) and issubclass(origin, _RepositoryCore):
                args = typing.get_args(base)
                if args and isinstance(args[0], type):
                    cls._default_model = args[0]
                    return

    def _bind_model(self, model: type[T] | None) -> _Model:
        cls = model if model is not None else self._default_model
        if cls is None:
            raise InvalidArgumentError(
                f"{type(self).__name__} does not know its model: subclass it as "
                f"{type(self).__name__}[MyModel] or pass the mapped class as model="
            )
        self._info = _model_of(cls)
        self.model = cls
        return self._info

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.model.__name__}>"

    # -- validation ---------------------------------------------------------------------------

    def _check_instance(self, obj: object, action: str) -> None:
        if not isinstance(obj, self.model):
            raise InvalidArgumentError(
                f"{type(self).__name__}.{action}() takes {self.model.__name__} instances, "
                f"got {type(obj).__name__}"
            )

    def _pending_removal(self, obj: object) -> bool:
        """Check `obj` can be removed; whether it is pending (added, never flushed)."""
        self._check_instance(obj, "remove")
        state = inspect(obj)
        if state.transient:
            raise InvalidArgumentError(
                f"cannot remove a {self.model.__name__} that was never added or loaded"
            )
        return bool(state.pending)

    def _rows(self, rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """Check every field name of `rows`; the rows as the INSERT statement takes them."""
        info = self._info
        columns = info.columns
        renames = info.insert_renames
        checked: list[Mapping[str, Any]] = []
        first: frozenset[str] | None = None
        for number, row in enumerate(rows, 1):
            names = row.keys()
            if first is None or names != first:
                for name in names:
                    if name not in columns:
                        raise InvalidFieldError(info.cls, name, usage="field to insert")
                if first is not None:
                    raise InvalidArgumentError(
                        f"insert_many() rows of {info.name} must all name the same fields: row "
                        f"{number} names {sorted(names)}, row 1 names {sorted(first)}"
                    )
                first = frozenset(names)
            if renames is not None:
                row = {renames.get(name, name): value for name, value in row.items()}
            checked.append(row)
        return checked

    def _criteria(self, where: tuple[object, ...], equals: dict[str, Any]) -> list[Any]:
        info = self._info
        clauses: list[Any] = []
        for clause in where:
            if not _is_expression(clause):
                raise InvalidArgumentError(
                    f"filters of {info.name} must be SQLAlchemy column expressions such as "
                    f"{info.name}.name == 'x', or keyword arguments; got {clause!r}"
                    " (raw SQL, as a string or text(), is never accepted)"
                )
            clauses.append(clause)
        columns = info.columns
        for name, value in equals.items():
            column = columns.get(name)
            if column is None:
                raise InvalidFieldError(info.cls, name, usage="filter")
            clauses.append(column == value)
        return clauses

    def _ordering(self, order_by: OrderBy) -> list[Any]:
        if order_by is None:
            return []
        items: Sequence[OrderItem]
        if isinstance(order_by, str) or _is_expression(order_by):
            items = (order_by,)  # type: ignore[assignment]  # narrowed by the checks above
        elif isinstance(order_by, list | tuple):
            items = order_by
        else:
            raise InvalidArgumentError(
                f"order_by takes field names, column expressions or a list of them; got {order_by!r}"
            )
        info = self._info
        ordering: list[Any] = []
        for item in items:
            if isinstance(item, str):
                descending = item.startswith("-")
                name = item[1:] if descending else item
                column = info.columns.get(name)
                if column is None:
                    raise InvalidFieldError(info.cls, item, usage="sort key")
                ordering.append(column.desc() if descending else column)
            elif _is_expression(item):
                ordering.append(item)
            else:
                raise InvalidArgumentError(
                    f"order_by items must be field names or column expressions; got {item!r}"
                )
        return ordering

    def _check_count(self, name: str, value: int | None) -> None:
        """Refuse a `limit` or `offset` that is not None or an int that every backend takes."""
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_INT64
        ):
            raise InvalidArgumentError(
                f"{name} for {self._info.name} must be None or an int from 0 to 2**63 - 1 "
                f"(a 64-bit signed integer), got {value!r}"
            )

    def _check_batch(self, batch_size: int) -> None:
        """Refuse a `batch_size` that is not a positive int that every backend takes."""
        if (
            not isinstance(batch_size, int)
            or isinstance(batch_size, bool)
            or not 1 <= batch_size <= MAX_INT32
        ):
            raise InvalidArgumentError(
                f"batch_size for {self._info.name} must be an int from 1 to 2**31 - 1 "
                f"(a 32-bit signed integer), got {batch_size!r}"
            )

    # -- statements -----------------------------------------------------------------------------

    def _select(
        self,
        where: tuple[ColumnElement[bool], ...],
        equals: dict[str, Any],
        order_by: OrderBy = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> Select[Any]:
        statement = self._info.select
        if where or equals:
            statement = statement.where(*self._criteria(where, equals))
        if order_by is not None:
            statement = statement.order_by(*self._ordering(order_by))
        if limit is not None:
            self._check_count("limit", limit)
            statement = statement.limit(limit)
        if offset is not None:
            self._check_count("offset", offset)
            statement = statement.offset(offset)
        return statement

    def _count(self, where: tuple[ColumnElement[bool], ...], equals: dict[str, Any]) -> Select[Any]:
        statement = self._info.count
        if where or equals:
            statement = statement.where(*self._criteria(where, equals))
        return statement

    def _exists(self, where: tuple[ColumnElement[bool], ...], equals: dict[str, Any]) -> Select[Any]:
        statement = self._info.exists
        if where or equals:
            statement = statement.where(*self._criteria(where, equals))
        return select(statement.exists())

    def _describe(self, where: tuple[ColumnElement[bool], ...], equals: dict[str, Any]) -> str:
        """What a lookup searched for, by field and expression, never by value (`owner=?`)."""
        parts = [_shape(clause) for clause in where]
        parts.extend(f"{name}=?" for name in equals)
        return ", ".join(parts)

    def _not_found(self, ident: Any) -> NotFoundError:
        """The error of `get_one(ident)`: it names the primary key's fields, not `ident`."""
        mapper = self._info.mapper
        names = (mapper.get_property_by_column(column).key for column in mapper.primary_key)
        return NotFoundError(self.model, ", ".join(f"{name}=?" for name in names))


class Repository(_RepositoryCore[T]):
    """Reads and writes the objects of one mapped class through a `Session`.

    Build one with `unit.repository(User)`, or subclass it to add queries of your own:

    ```python
    class UserRepository(Repository[User]):
        def named(self, name: str) -> list[User]:
            return self.list(name=name, order_by="id")
    ```

    A repository never commits: committing is the unit of work's job. Its methods flush only when the
    session autoflushes, exactly as the same plain-SQLAlchemy calls would.

    Filters are the same for `list()`, `first()`, `one()`, `count()` and
    `exists()`: SQLAlchemy expressions as positional arguments (`User.name.like("b%")`) and
    column equality as keyword arguments (`name="Bob"`; `None` means `IS NULL`). Keyword names and
    string sort keys must be mapped columns of the model; anything else raises
    [`InvalidFieldError`][uow.InvalidFieldError] before any SQL is built. An integrity violation raised while
    one of these methods autoflushes is translated as `UnitOfWork.commit()` translates it; the
    session's transaction is then broken and needs `unit.rollback()` before the next statement.
    """

    session: Session
    """The session this repository works in."""

    def __init__(self, session: Session, model: type[T] | None = None) -> None:
        """Bind the repository to `session`.

        Args:
            session: The session to work in; usually the unit of work's.
            model: The mapped class; required unless the subclass names it as `Repository[Model]`.

        Raises:
            InvalidArgumentError: The model is missing or is not a mapped class.
        """
        self._bind_model(model)
        self.session = session

    # -- writes ---------------------------------------------------------------------------------

    def add(self, obj: T) -> T:
        """Add `obj` to the session, to be inserted at the next flush; returns `obj`.

        Raises:
            InvalidArgumentError: `obj` is not an instance of the model.
        """
        self._check_instance(obj, "add")
        self.session.add(obj)
        return obj

    def add_all(self, objs: Iterable[T]) -> list[T]:
        """Add every object of `objs` to the session; returns them as a list.

        Raises:
            InvalidArgumentError: One of them is not an instance of the model; none is added then.
        """
        added = list(objs)
        for obj in added:
            self._check_instance(obj, "add_all")
        self.session.add_all(added)
        return added

    def remove(self, obj: T) -> None:
        """Mark `obj` for deletion at the next flush.

        An object that was added but never flushed is simply taken out of the session, so it is never
        inserted.

        Raises:
            InvalidArgumentError: `obj` is not an instance of the model, or was never persisted.
        """
        if self._pending_removal(obj):
            self.session.expunge(obj)
        else:
            self.session.delete(obj)

    def insert_many(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert `rows` (mappings of field names to values) in as few statements as possible.

        The fast path for loading data: no objects are created and none enter the session, so no ORM
        events or Python-side attribute defaults apply (column defaults do). Models without
        inheritance are inserted with one Core `INSERT` executed for all rows (batched into
        multi-row statements where the dialect supports it); others through SQLAlchemy's ORM bulk
        INSERT. Returns the number of rows given. Like every write, it is committed by the unit.

        Raises:
            InvalidFieldError: A row names a field that is not a mapped column; nothing is sent then.
            InvalidArgumentError: The rows do not all name the same fields; nothing is sent then.
            DuplicateKeyError: A row's key exists already.
        """
        checked = self._rows(rows)
        if not checked:
            return 0
        try:
            self.session.execute(self._info.insert, checked)
        except sa_exc.DBAPIError as exc:
            raise_translated(exc)
        mark_written(self.session)
        return len(checked)

    # -- reads ----------------------------------------------------------------------------------

    def stream(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        batch_size: int = 1000,
        **equals: Any,
    ) -> Iterator[T]:
        """Iterate over the objects that match, fetching `batch_size` rows at a time.

        Memory stays bounded by the batch however many rows match, as long as the caller does not
        keep the objects (the session holds them only weakly). Arguments are checked at once; the
        query runs when iteration starts. Use it within the block, and finish or close the iterator
        before the next statement on the same unit.
        """
        self._check_batch(batch_size)
        statement = self._select(where, equals, order_by).execution_options(yield_per=batch_size)
        return self._stream(statement)

    def _stream(self, statement: Select[Any]) -> Iterator[T]:
        try:
            yield from self.session.scalars(statement)
        except sa_exc.DBAPIError as exc:
            raise_translated(exc)

    def get(self, ident: Any) -> T | None:
        """The object with primary key `ident`, or `None`.

        Looks in the session's identity map first and only queries the database on a miss, as
        `Session.get <sqlalchemy.orm.Session.get>()` does. A composite key is a tuple, or a dict
        of column names.
        """
        try:
            return self.session.get(self.model, ident)
        except sa_exc.DBAPIError as exc:
            raise_translated(exc)

    def get_one(self, ident: Any) -> T:
        """The object with primary key `ident`.

        Raises:
            NotFoundError: There is none; the message names the model and its primary-key fields,
                never the value of `ident`.
        """
        obj = self.get(ident)
        if obj is None:
            raise self._not_found(ident)
        return obj

    def list(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        limit: int | None = None,
        offset: int | None = None,
        **equals: Any,
    ) -> list[T]:
        """The objects that match every filter, in `order_by` order, paged by `limit`/`offset`.

        Without `order_by` the order is whatever the database returns.
        """
        statement = self._select(where, equals, order_by, limit, offset)
        try:
            found: list[T] = list(self.session.scalars(statement).all())
        except sa_exc.DBAPIError as exc:
            raise_translated(exc)
        return found

    def first(self, *where: ColumnElement[bool], order_by: OrderBy = None, **equals: Any) -> T | None:
        """The first object that matches, in `order_by` order, or `None` when none does."""
        statement = self._select(where, equals, order_by, 1)
        try:
            first: T | None = self.session.scalars(statement).first()
        except sa_exc.DBAPIError as exc:
            raise_translated(exc)
        return first

    def one(self, *where: ColumnElement[bool], **equals: Any) -> T:
        """The only object that matches.

        Raises:
            NotFoundError: None matches.
            MultipleResultsError: More than one matches.
        """
        statement = self._select(where, equals)
        try:
            one: T = self.session.scalars(statement).one()
        except sa_exc.NoResultFound as exc:
            raise NotFoundError(self.model, self._describe(where, equals)) from exc
        except sa_exc.MultipleResultsFound as exc:
            raise MultipleResultsError(self.model, self._describe(where, equals)) from exc
        except sa_exc.DBAPIError as exc:
            raise_translated(exc)
        return one

    def count(self, *where: ColumnElement[bool], **equals: Any) -> int:
        """How many objects match."""
        statement = self._count(where, equals)
        try:
            count: int = self.session.scalar(statement) or 0
        except sa_exc.DBAPIError as exc:
            raise_translated(exc)
        return count

    def exists(self, *where: ColumnElement[bool], **equals: Any) -> bool:
        """Whether at least one object matches."""
        statement = self._exists(where, equals)
        try:
            return bool(self.session.scalar(statement))
        except sa_exc.DBAPIError as exc:
            raise_translated(exc)
