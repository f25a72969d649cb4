"""Query parameters to a repository's `list()`: equality filters, sorting, limit and offset.

A small, strict parser over the model's mapped columns, with no web framework: every parameter is
checked against the fields the application allows, every value converted to its column's Python
type by the rules of a repository's `parse_query()` (one set of rules, in `uow._filters`), and
anything else refused as an [`InvalidQueryError`][uow.web.InvalidQueryError] (a 400) that
names the parameter, never its value. The result is keyword arguments for `Repository.list()`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm import Mapper

from uow import InvalidArgumentError, Repository
from uow._filters import Refused, reader, sort_keys, whole_number
from uow.web._http import InvalidQueryError

__all__ = ["RESERVED", "ListQuery", "parse_list_query"]

MAX_INT64 = 2**63 - 1
"""The largest offset and limit: what a 64-bit signed integer holds, as every backend takes."""

RESERVED = frozenset({"sort", "limit", "offset"})
"""The parameters that are never filters: `sort`, `limit` and `offset`."""


@dataclass(frozen=True, slots=True)
class ListQuery:
    """What a request's query parameters ask of `Repository.list()`.

    Attributes:
        equals: Field name to value, each converted to its column's type.
        order_by: Field names, `-` before a descending one, ending with the primary key's fields
            so that pages never overlap or skip a row.
        limit: How many objects at most.
        offset: How many to skip, or `None`.
    """

    equals: Mapping[str, Any]
    order_by: tuple[str, ...]
    limit: int
    offset: int | None

    @property
    def arguments(self) -> dict[str, Any]:
        """Keyword arguments for `Repository.list()` and `AsyncRepository.list()`."""
        return {**self.equals, "order_by": list(self.order_by), "limit": self.limit, "offset": self.offset}


def _count(name: str, text: str, low: int, high: int) -> int:
    value = whole_number(text, low, high)
    if value is None:
        raise InvalidQueryError(f"the query parameter {name!r} must be an integer from {low} to {high}")
    return value


def _shown(name: str) -> str:
    """A parameter name as an error message shows it: quoted, and cut short if long."""
    return repr(name if len(name) <= 40 else name[:40] + "...")


def parse_list_query(
    model: type[Any],
    params: Iterable[tuple[str, str]],
    *,
    filterable: Iterable[str] | None = None,
    sortable: Iterable[str] | None = None,
    default_limit: int = 50,
    max_limit: int = 100,
    ignore: Iterable[str] = (),
) -> ListQuery:
    """Read a list request's query parameters as arguments for `Repository.list()` on `model`.

    `?name=Bob&sort=-name,id&limit=20&offset=40` asks for the objects whose `name` equals `Bob`,
    ordered by `name` descending then `id`, 20 of them after skipping 40. The rules:

    - A filter is a field in `filterable` (by default every mapped column whose type can be read
      from a query string: text, numbers, booleans, dates and times, UUIDs, enums); its value is
      converted to the column's type by the rules of `Repository.parse_query()`: integers within
      the column type's range, finite numbers, plain decimals that fit the column's precision,
      `true`/`false`/`1`/`0`/`yes`/`no`/`on`/`off`, ISO 8601 (a time zone only where the column has
      one), an enum member's name, text of at most `Repository.max_value_length` characters without
      NUL. Each parameter may be given once.
    - `sort` is a comma-separated list of fields in `sortable` (by default every mapped column),
      `-` before a field for descending order. The primary key's fields are appended, so the order
      is total and pages are stable.
    - `limit` is from 1 to `max_limit`, `default_limit` when absent; `offset` from 0 to 2**63 - 1.
    - Any other parameter is refused, unless named in `ignore` (parameters the handler reads itself).

    Args:
        model: The mapped class the repository reads.
        params: The query parameters as (name, value) pairs, repeated names included, such as
            Starlette's `request.query_params.multi_items()` or Flask's `request.args.items(multi=True)`.
        filterable: The fields a client may filter by.
        sortable: The fields a client may sort by.
        default_limit: The limit when the request gives none.
        max_limit: The largest limit a client may ask for.
        ignore: Parameters to leave alone.

    Raises:
        InvalidQueryError: A parameter is unknown, repeated, or has a value its field cannot take
            (the message names the parameter, never the value). A 400.
        InvalidArgumentError: `model` is not mapped, or the options name fields that are not mapped
            columns or give impossible limits: the application's mistake, not the client's.
    """
    mapper: object = inspect(model, raiseerr=False) if isinstance(model, type) else None
    if not isinstance(mapper, Mapper) or mapper.class_ is not model:
        raise InvalidArgumentError(f"a list query needs a mapped class, got {model!r}")
    name_of_model = model.__name__
    columns = {prop.key: prop for prop in mapper.column_attrs}
    readers = {name: reader(prop.columns[0], Repository.max_value_length) for name, prop in columns.items()}
    if filterable is None:
        filters: dict[str, Callable[[object], Any]] = {
            name: read for name, read in readers.items() if read is not None
        }
    else:
        filters = {}
        for name in filterable:
            if name not in columns:
                raise InvalidArgumentError(f"{name_of_model} has no mapped column {name!r} to filter by")
            read = readers[name]
            if read is None:
                raise InvalidArgumentError(
                    f"{name_of_model}.{name} cannot be filtered from a query string: its type has no "
                    "conversion from text"
                )
            filters[name] = read
    sorts = set(columns) if sortable is None else set(sortable)
    unknown = sorted(sorts - set(columns))
    if unknown:
        raise InvalidArgumentError(f"{name_of_model} has no mapped column {unknown[0]!r} to sort by")
    for option, value in (("default_limit", default_limit), ("max_limit", max_limit)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_INT64:
            raise InvalidArgumentError(f"{option} must be an int from 1 to 2**63 - 1, got {value!r}")
    if default_limit > max_limit:
        raise InvalidArgumentError(f"default_limit ({default_limit}) exceeds max_limit ({max_limit})")
    skipped = frozenset(ignore)

    equals: dict[str, Any] = {}
    order: list[str] = []
    limit = default_limit
    offset: int | None = None
    seen: set[str] = set()
    for name, text in params:
        if name in skipped:
            continue
        if name in seen:
            raise InvalidQueryError(f"the query parameter {_shown(name)} is given more than once")
        seen.add(name)
        if name == "sort":
            order = _sort_keys(text, sorts)
        elif name == "limit":
            limit = _count(name, text, 1, max_limit)
        elif name == "offset":
            offset = _count(name, text, 0, MAX_INT64)
        elif name in filters:
            try:
                equals[name] = filters[name](text)
            except Refused as refused:
                raise InvalidQueryError(f"the query parameter {name!r} must be {refused}") from None
        else:
            allowed = ", ".join(sorted(filters)) or "none"
            raise InvalidQueryError(
                f"unknown query parameter {_shown(name)}; the filters are: {allowed}; and sort, limit, offset"
            )
    named = {key.removeprefix("-") for key in order}
    for column in mapper.primary_key:
        key = mapper.get_property_by_column(column).key
        if key not in named:
            order.append(key)
    return ListQuery(equals, tuple(order), limit, offset)


def _sort_keys(text: str, sortable: set[str]) -> list[str]:
    def unknown(key: str) -> InvalidQueryError:
        allowed = ", ".join(sorted(sortable)) or "none"
        return InvalidQueryError(
            f"the query parameter 'sort' names a field that cannot be sorted by; the fields are {allowed}"
        )

    def repeated(key: str) -> InvalidQueryError:
        return InvalidQueryError("the query parameter 'sort' names a field more than once")

    return list(sort_keys(text, sortable, unknown=unknown, repeated=repeated))
