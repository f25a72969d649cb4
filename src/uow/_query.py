"""The query building that the sync and async repositories share: names checked, statements built, no I/O."""

from __future__ import annotations

import typing
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeAlias, TypeVar

from sqlalchemy import ColumnElement, Select, inspect, select
from sqlalchemy.orm import QueryableAttribute, Session

from uow._errors import InvalidArgumentError, InvalidFieldError, NotFoundError
from uow._filters import ParsedQuery, query_spec
from uow._locks import check_options, lock_arguments
from uow._model import MAX_INT32, MAX_INT64, ModelInfo, is_expression, model_info, shape
from uow._pages import PagePlan, plan_page

__all__ = ["OrderBy", "RepositoryCore"]

T = TypeVar("T")

OrderItem: TypeAlias = "str | ColumnElement[Any] | QueryableAttribute[Any]"
OrderBy: TypeAlias = "OrderItem | Sequence[OrderItem] | None"
"""What `order_by` accepts: a field name (`"name"`, `"-name"` for descending), a column
expression (`User.name`, `User.name.desc()`), or a sequence of these."""


class RepositoryCore(Generic[T]):
    """The rules shared by the sync and async repositories: model, validation, statement building."""

    filterable: ClassVar[Collection[str] | Mapping[str, Collection[str]]] = ()
    """The fields that `parse_query()` and `parse_filters()` accept from untrusted input: a tuple of
    field names (every operator their type takes), or a dict of field names to the operators allowed."""
    sortable: ClassVar[Collection[str]] = ()
    """The fields that `parse_query()` accepts as sort keys (`sort=-name`)."""
    max_limit: ClassVar[int] = 100
    """The largest `limit` that `parse_query()` accepts."""
    max_in: ClassVar[int] = 100
    """The most values an `in` filter from input may list."""
    max_filters: ClassVar[int] = 20
    """The most filters one input may hold."""
    max_value_length: ClassVar[int] = 1000
    """The longest string value a filter from input may carry, in characters."""

    _default_model: ClassVar[type[Any] | None] = None

    model: type[T]
    """The mapped class this repository reads and writes."""

    _info: ModelInfo

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            origin = typing.get_origin(base)
            if isinstance(origin, type) and issubclass(origin, RepositoryCore):
                args = typing.get_args(base)
                if args and isinstance(args[0], type):
                    cls._default_model = args[0]
                    return

    def _bind_model(self, model: type[T] | None) -> ModelInfo:
        cls: type[T] | None = model if model is not None else self._default_model
        if cls is None:
            raise InvalidArgumentError(
                f"{type(self).__name__} does not know its model: subclass it as "
                f"{type(self).__name__}[MyModel] or pass the mapped class as model="
            )
        self._info = model_info(cls)
        self.model = cls
        return self._info

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.model.__name__}>"

    def _sync_session(self) -> Session:
        raise NotImplementedError

    # -- input from outside -----------------------------------------------------------------------

    def parse_query(self, params: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> ParsedQuery:
        """Turn query-string parameters from untrusted input into filters, sort keys and a page size.

        ```python
        class UserRepository(Repository[User]):
            filterable = ("name", "email", "age")
            sortable = ("name", "age")

        query = users.parse_query({"name__startswith": "an", "age__ge": "18", "sort": "-age", "limit": "20"})
        found = users.list(*query.where, order_by=query.order_by, limit=query.limit)
        ```

        `params` is a mapping (values may be lists, as `urllib.parse.parse_qs` gives them) or
        `(key, value)` pairs (`parse_qsl`, Starlette's `multi_items()`). A key is `field` (equality) or
        `field__operator`, with the operators `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `in` (values
        separated by commas), `startswith`, `contains` and `is_null` (`true` or `false`); `sort`
        (`-name,age`), `limit`, `after` and `before` (page cursors) are not filters. Fields must be
        declared in the class attribute `filterable` (sort keys in `sortable`); values are
        converted to the column's Python type and bound as parameters, `%` and `_` are escaped for
        `startswith` and `contains`, `in` lists hold at most `max_in` values, and `limit` is at
        most `max_limit`. Nothing is sent to the database.

        Raises:
            InvalidFieldError: A key names a field that is not declared filterable, or a sort key one
                not declared sortable; the message names it (shortened when long).
            InvalidArgumentError: An operator the field does not allow, a value that is not of the
                field's type, too many values or filters, or a `limit` out of range; the message
                names the field, never the value.
        """
        return query_spec(type(self), self._info).parse(params)

    def parse_filters(self, filters: Iterable[tuple[str, str, object]]) -> list[ColumnElement[bool]]:
        """Turn `(field, operator, value)` filters from untrusted input into expressions.

        The structured form of `parse_query()` (from a JSON body, say), with its rules; values may
        already be of the field's type, and `in` takes a list. Nothing is sent to the database.

        Raises:
            InvalidFieldError: A field is not declared filterable.
            InvalidArgumentError: As for `parse_query()`.
        """
        return query_spec(type(self), self._info).conditions(filters)

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

    def _upsert_rows(self, rows: Iterable[object], action: str) -> list[Mapping[str, Any]]:
        """`rows` (mappings, or new objects of the model) as mappings of field names to values."""
        converted: list[Mapping[str, Any]] = []
        for row in rows:
            if isinstance(row, Mapping):
                converted.append(row)
            elif isinstance(row, self.model):
                state = inspect(row)
                if not state.transient:
                    raise InvalidArgumentError(
                        f"{action} takes new {self._info.name} objects or mappings; this one is already "
                        "in a session: change its attributes instead"
                    )
                values = state.dict
                converted.append({name: values[name] for name in self._info.columns if name in values})
            else:
                raise InvalidArgumentError(
                    f"{action} takes mappings of field names to values or new {self._info.name} objects, "
                    f"got {type(row).__name__}"
                )
        return converted

    def _criteria(self, where: tuple[object, ...], equals: dict[str, Any]) -> list[Any]:
        info = self._info
        clauses: list[Any] = []
        for clause in where:
            if not is_expression(clause):
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
        if isinstance(order_by, str) or is_expression(order_by):
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
            elif is_expression(item):
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

    def _reading(self, statement: Select[Any], for_update: object, options: object) -> Select[Any]:
        """`statement` with its row locks (checked against the backend) and loader options.

        A locking read refreshes the objects it returns that the session holds already
        (`populate_existing`): the locked row's values are the ones to change.
        """
        if options:
            statement = statement.options(*check_options(options, self._info))
        elif options is not None and not isinstance(options, list | tuple):
            check_options(options, self._info)
        if for_update is not False:
            arguments = lock_arguments(for_update, self._dialect(), self._info)
            if arguments is not None:
                statement = statement.with_for_update(**arguments)
            statement = statement.execution_options(populate_existing=True)
        return statement

    def _dialect(self) -> Any:
        return self._sync_session().get_bind(mapper=self._info.mapper).dialect

    def _by_key(self, ident: Any) -> list[ColumnElement[bool]]:
        """The criteria that select primary key `ident`: a value, a tuple, or a dict of field names."""
        info = self._info
        names = info.keys
        if isinstance(ident, Mapping):
            unknown = [name for name in ident if name not in names]
            if unknown or len(ident) != len(names):
                raise InvalidArgumentError(
                    f"a primary key of {info.name} as a dict names exactly the fields {', '.join(names)}"
                )
            values = [ident[name] for name in names]
        elif isinstance(ident, tuple):
            values = list(ident)
        else:
            values = [ident]
        if len(values) != len(names):
            raise InvalidArgumentError(
                f"the primary key of {info.name} has {len(names)} field(s) ({', '.join(names)}); "
                f"got {len(values)} value(s)"
            )
        return [info.columns[name] == value for name, value in zip(names, values, strict=True)]

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

    def _page(
        self,
        where: tuple[ColumnElement[bool], ...],
        equals: dict[str, Any],
        order_by: object,
        limit: object,
        after: object,
        before: object,
        options: object,
    ) -> PagePlan:
        statement = self._reading(self._select(where, equals), False, options)
        return plan_page(self._info, statement, order_by, limit, after, before, bool(options))

    def _describe(self, where: tuple[ColumnElement[bool], ...], equals: dict[str, Any]) -> str:
        """What a lookup searched for, by field and expression, never by value (`owner=?`)."""
        parts = [shape(clause) for clause in where]
        parts.extend(f"{name}=?" for name in equals)
        return ", ".join(parts)

    def _not_found(self, ident: Any) -> NotFoundError:
        """The error of `get_one(ident)`: it names the primary key's fields, not `ident`."""
        return NotFoundError(self.model, ", ".join(f"{name}=?" for name in self._info.keys))
