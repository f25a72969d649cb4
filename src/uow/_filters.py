"""Filters and sort keys from untrusted input: declared fields only, typed values, bound parameters.

A repository declares what may be filtered and sorted from outside (`filterable`, `sortable`); the
parser turns query-string-like input into SQLAlchemy expressions on those fields. Field names are
looked up in a table built from the declaration, values are converted to the column's Python type
and always sent as bound parameters, and every refusal names the field, never the value.
"""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Integer, SmallInteger, TypeDecorator

from uow._errors import InvalidArgumentError, InvalidFieldError, shown
from uow._model import ModelInfo

__all__ = [
    "OPERATORS",
    "ParsedQuery",
    "QuerySpec",
    "Refused",
    "query_spec",
    "reader",
    "sort_keys",
    "whole_number",
]

EQUALITY = ("eq", "ne", "in", "is_null")
ORDERED = ("lt", "le", "gt", "ge")
TEXT = ("startswith", "contains")
OPERATORS = (*EQUALITY, *ORDERED, *TEXT)
"""Every operator the parser knows, in the order the docs list them."""

RESERVED = frozenset({"sort", "limit", "after", "before"})
"""Query-string keys that are not filters: `sort`, `limit` and the two page cursors."""


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    """What [`parse_query()`][uow.Repository.parse_query] made of a query string, ready for a read.

    ```python
    query = users.parse_query(request.query_params.multi_items())
    found = users.list(*query.where, order_by=query.order_by, limit=query.limit)
    page = users.page(*query.where, order_by=query.order_by, limit=query.limit or 20, after=query.after)
    ```

    Attributes:
        where: The filters, as SQLAlchemy expressions whose values are bound parameters.
        order_by: The sort keys (`("-name", "id")`), each a declared sortable field; `None` when
            the input named none.
        limit: The page size asked for, from 1 to the repository's `max_limit`; `None` when not given.
        after: The `after` page cursor, unchecked until `page()` verifies it; `None` when not given.
        before: The `before` page cursor, likewise.
    """

    where: tuple[ColumnElement[bool], ...] = ()
    order_by: tuple[str, ...] | None = None
    limit: int | None = None
    after: str | None = None
    before: str | None = None


# -- values ------------------------------------------------------------------------------------

_INT = r"[+-]?[0-9]{1,19}"
_FLOAT = r"[+-]?([0-9]{1,30}(\.[0-9]{0,30})?|\.[0-9]{1,30})([eE][+-]?[0-9]{1,3})?"
_DECIMAL = r"[+-]?[0-9]{1,30}(\.[0-9]{1,30})?"
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_MAX_TEMPORAL = 40


class Refused(ValueError):
    """A value that cannot become a value of the field's type; the message says what the type takes
    (`"an integer from -2**31 to 2**31 - 1"`), never the value, so it may be shown to a client."""


def _declared(column: Any) -> Any:
    """The column's type, or the type a `TypeDecorator` stores."""
    kind = column.type
    return kind.impl_instance if isinstance(kind, TypeDecorator) else kind


def _int(raw: object, column: Any) -> int:
    kind = _declared(column)
    bits = 64 if isinstance(kind, BigInteger) else 16 if isinstance(kind, SmallInteger) else 32
    if not isinstance(kind, Integer):
        bits = 64
    if isinstance(raw, str) and re.fullmatch(_INT, raw.strip(), re.ASCII):
        raw = int(raw.strip())
    if not isinstance(raw, int) or isinstance(raw, bool) or not -(2 ** (bits - 1)) <= raw < 2 ** (bits - 1):
        raise Refused(f"an integer from -2**{bits - 1} to 2**{bits - 1} - 1")
    return raw


def _float(raw: object, column: Any) -> float:
    if isinstance(raw, str) and re.fullmatch(_FLOAT, raw.strip(), re.ASCII):
        raw = float(raw.strip())
    elif isinstance(raw, int) and not isinstance(raw, bool) and abs(raw) <= 2**53:
        raw = float(raw)
    if not isinstance(raw, float) or raw != raw or raw in (float("inf"), float("-inf")):
        raise Refused("a finite number")
    if raw != 0.0 and not 1e-300 < abs(raw) < 1e300:
        raise Refused("a number between 1e-300 and 1e300 in size")
    return raw


def _decimal(raw: object, column: Any) -> Decimal:
    kind = _declared(column)
    precision, scale = getattr(kind, "precision", None), getattr(kind, "scale", None) or 0
    digits = 30 if precision is None else max(1, precision - scale)
    value: Decimal | None = None
    if isinstance(raw, str) and re.fullmatch(_DECIMAL, raw.strip(), re.ASCII):
        value = Decimal(raw.strip())
    elif isinstance(raw, int) and not isinstance(raw, bool):
        value = Decimal(raw)
    elif isinstance(raw, Decimal) and raw.is_finite() and raw.adjusted() > -30:
        value = raw
    if value is None or abs(value) >= Decimal(10) ** digits:
        raise Refused(f"a decimal number with at most {digits} digits before the point")
    return value


def _bool(raw: object, column: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise Refused("true or false")


def _text(raw: object, limit: int) -> str:
    if not isinstance(raw, str):
        raise Refused("a string")
    if len(raw) > limit:
        raise Refused(f"a string of at most {limit} characters")
    if "\x00" in raw:
        raise Refused("a string without NUL characters")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise Refused("a string of valid Unicode characters") from None
    return raw


def _temporal(kind: type[Any], parse: Callable[[str], Any], what: str) -> Callable[[object, Any], Any]:
    def convert(raw: object, column: Any) -> Any:
        if isinstance(raw, str) and len(raw) <= _MAX_TEMPORAL:
            try:
                raw = parse(raw.strip())
            except ValueError:
                raise Refused(what) from None
        if type(raw) is not kind:  # a datetime is a date too, but not a date column's value
            raise Refused(what)
        if (
            isinstance(raw, datetime | time)
            and raw.tzinfo is not None
            and not getattr(column.type, "timezone", False)
        ):
            raise Refused(f"{what} without a time zone (the column has none)")
        return raw

    return convert


def _uuid(raw: object, column: Any) -> uuid.UUID:
    if isinstance(raw, uuid.UUID):
        return raw
    if isinstance(raw, str) and len(raw) <= 45:
        try:
            return uuid.UUID(raw.strip())
        except ValueError:
            pass
    raise Refused("a UUID")


def _enum(kind: type[enum.Enum]) -> Callable[[object, Any], Any]:
    def convert(raw: object, column: Any) -> Any:
        if isinstance(raw, kind):
            return raw
        if isinstance(raw, str):
            member = kind.__members__.get(raw.strip())
            if member is not None:
                return member
        raise Refused(f"one of {', '.join(kind.__members__)}")

    return convert


_CONVERTERS: dict[type[Any], Callable[[object, Any], Any]] = {
    bool: _bool,
    int: _int,
    float: _float,
    Decimal: _decimal,
    datetime: _temporal(datetime, datetime.fromisoformat, "an ISO 8601 date and time"),
    date: _temporal(date, date.fromisoformat, "an ISO 8601 date"),
    time: _temporal(time, time.fromisoformat, "an ISO 8601 time"),
    uuid.UUID: _uuid,
}
_UNORDERED = frozenset({bool, uuid.UUID})


def python_type(column: Any) -> type[Any] | None:
    """The Python type of a column's values, or `None` when SQLAlchemy does not say."""
    try:
        kind = column.type.python_type
    except NotImplementedError:
        return None
    return kind if isinstance(kind, type) else None


def reader(column: Any, max_length: int) -> Callable[[object], Any] | None:
    """How input values become values of `column`'s type, or `None` when its type has none.

    The function returned takes text (or a value already of the column's type) and returns the
    column's value, or raises `Refused`. Its rules are the table under
    "Filters from untrusted input" in docs/repositories.md: integers within the column type's range,
    finite floats, plain decimals that fit the column's precision, `true`/`false`/`1`/`0`/`yes`/
    `no`/`on`/`off`, ISO 8601 dates and times (a time zone only where the column has one), UUIDs,
    an enum's member names, and strings of at most `max_length` characters without NUL. The type is
    the column's `python_type` exactly: a subclass of `str` or `int` is not read as its base.
    """
    kind = python_type(column)
    if kind is None:
        return None
    if kind is str:
        return lambda raw: _text(raw, max_length)
    convert = _enum(kind) if issubclass(kind, enum.Enum) else _CONVERTERS.get(kind)
    if convert is None:
        return None
    return lambda raw: convert(raw, column)


def whole_number(text: str, low: int, high: int) -> int | None:
    """`text` as an int from `low` to `high`, or `None`: ASCII digits (at most 19) with an optional
    sign, spaces around them ignored. The rule for `limit` and `offset` in a query string."""
    text = text.strip()
    if not re.fullmatch(_INT, text, re.ASCII) or not low <= int(text) <= high:
        return None
    return int(text)


def sort_keys(
    value: str,
    sortable: Collection[str],
    *,
    unknown: Callable[[str], Exception],
    repeated: Callable[[str], Exception],
) -> tuple[str, ...]:
    """The sort keys of a comma-separated `sort` value (`"-name,id"`), each a field in `sortable`
    with `-` before it for descending order, spaces around a key ignored.

    Raises:
        Exception: `unknown(key)` for a key whose field is not in `sortable` (an empty key
            included), `repeated(key)` for a field named twice; the caller words the refusal.
    """
    keys: list[str] = []
    seen: set[str] = set()
    for item in value.split(","):
        key = item.strip()
        name = key.removeprefix("-")
        if name not in sortable:
            raise unknown(key)
        if name in seen:
            raise repeated(key)
        seen.add(name)
        keys.append(key)
    return tuple(keys)


# -- the declaration ---------------------------------------------------------------------------


class _Field:
    """A declared filterable field: its attribute, how values become its type, its operators."""

    __slots__ = ("attribute", "convert", "name", "operators")

    def __init__(
        self, name: str, attribute: Any, convert: Callable[[object], Any], operators: frozenset[str]
    ) -> None:
        self.name: str = name
        self.attribute: Any = attribute
        self.convert: Callable[[object], Any] = convert
        self.operators: frozenset[str] = operators


class QuerySpec:
    """A repository class's declared filterable and sortable fields, checked against its model once."""

    __slots__ = ("fields", "info", "max_filters", "max_in", "max_length", "max_limit", "owner", "sortable")

    def __init__(self, owner: type[Any], info: ModelInfo) -> None:
        self.owner = owner
        self.info = info
        self.max_limit = _positive(owner, "max_limit")
        self.max_in = _positive(owner, "max_in")
        self.max_filters = _positive(owner, "max_filters")
        self.max_length = _positive(owner, "max_value_length")
        declared: Any = getattr(owner, "filterable", ())
        if isinstance(declared, str) or not isinstance(declared, Collection):
            raise InvalidArgumentError(
                f"{owner.__name__}.filterable must be a tuple of field names or a dict of field names to "
                f"operators, got {declared!r}"
            )
        wanted: Mapping[str, Any] = declared if isinstance(declared, Mapping) else dict.fromkeys(declared)
        self.fields = {name: self._field(name, operators) for name, operators in wanted.items()}
        sortable: Any = getattr(owner, "sortable", ())
        if isinstance(sortable, str) or not isinstance(sortable, Collection):
            raise InvalidArgumentError(f"{owner.__name__}.sortable must be a tuple of field names")
        for name in sortable:
            if not isinstance(name, str) or name not in info.columns:
                raise InvalidFieldError(info.cls, str(name), usage=f"sort key in {owner.__name__}.sortable")
        self.sortable = frozenset(sortable)

    def _field(self, name: object, operators: Any) -> _Field:
        info = self.info
        owner = self.owner.__name__
        if not isinstance(name, str) or name not in info.columns:
            raise InvalidFieldError(info.cls, str(name), usage=f"filter in {owner}.filterable")
        prop = info.mapper.get_property(name)
        column = prop.columns[0]
        kind = python_type(column)
        convert = reader(column, self.max_length)
        if convert is None:
            raise InvalidFieldError(
                info.cls,
                name,
                reason=f"cannot be filtered from input: its type {column.type} has no conversion from "
                "text (filter it with an expression of your own)",
            )
        possible: set[str] = set(EQUALITY)
        if kind not in _UNORDERED and not (kind is not None and issubclass(kind, enum.Enum)):
            possible.update(ORDERED)
        if kind is str:
            possible.update(TEXT)
        if operators is None:
            allowed = frozenset(possible)
        else:
            listed = (operators,) if isinstance(operators, str) else tuple(operators)
            for operator in listed:
                if operator not in possible:
                    raise InvalidArgumentError(
                        f"{owner}.filterable allows {operator!r} on {info.name}.{name}, which "
                        f"its type does not take; it takes {', '.join(o for o in OPERATORS if o in possible)}"
                    )
            allowed = frozenset(listed)
        return _Field(name, info.columns[name], convert, allowed)

    # -- parsing ----------------------------------------------------------------------------------

    def _refuse(self, field: str, what: str) -> InvalidArgumentError:
        return InvalidArgumentError(f"{self.info.name} field {shown(field)}: {what}")

    def condition(self, name: object, operator: object, value: object) -> ColumnElement[bool]:
        """One filter as an expression, or a refusal naming the field."""
        info = self.info
        if not isinstance(name, str):
            raise InvalidArgumentError(
                f"filters of {info.name} name fields with strings, got a {type(name).__name__}"
            )
        field = self.fields.get(name)
        if field is None:
            raise InvalidFieldError(
                info.cls,
                name,
                reason=f"is not filterable from input (not in {self.owner.__name__}.filterable)",
            )
        if not isinstance(operator, str) or operator not in field.operators:
            allowed = ", ".join(o for o in OPERATORS if o in field.operators)
            raise self._refuse(name, f"this operator is not allowed; use one of {allowed}")
        attribute = field.attribute
        try:
            if operator == "is_null":
                return attribute.is_(None) if _bool(value, None) else attribute.is_not(None)  # type: ignore[no-any-return]
            if operator == "in":
                values = value.split(",") if isinstance(value, str) else value
                if not isinstance(values, list | tuple):
                    raise self._refuse(name, "'in' takes a list of values")
                if not values or len(values) > self.max_in:
                    raise self._refuse(name, f"'in' takes from 1 to {self.max_in} values")
                return attribute.in_([field.convert(item) for item in values])  # type: ignore[no-any-return]
            converted = field.convert(value)
        except Refused as refused:
            raise self._refuse(name, f"the value given for {operator!r} is not {refused}") from None
        if operator == "eq":
            return attribute == converted  # type: ignore[no-any-return]
        if operator == "ne":
            return attribute != converted  # type: ignore[no-any-return]
        if operator == "lt":
            return attribute < converted  # type: ignore[no-any-return]
        if operator == "le":
            return attribute <= converted  # type: ignore[no-any-return]
        if operator == "gt":
            return attribute > converted  # type: ignore[no-any-return]
        if operator == "ge":
            return attribute >= converted  # type: ignore[no-any-return]
        if operator == "startswith":
            return attribute.startswith(converted, autoescape=True)  # type: ignore[no-any-return]
        return attribute.contains(converted, autoescape=True)  # type: ignore[no-any-return]

    def conditions(self, filters: Iterable[tuple[str, str, object]]) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        for item in filters:
            if not isinstance(item, tuple) or len(item) != 3:
                raise InvalidArgumentError(
                    f"filters of {self.info.name} are (field, operator, value) tuples, "
                    f"got a {type(item).__name__}"
                )
            if len(found) >= self.max_filters:
                raise InvalidArgumentError(
                    f"at most {self.max_filters} filters of {self.info.name} are allowed"
                )
            found.append(self.condition(*item))
        return found

    def parse(self, params: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> ParsedQuery:
        """Parse query-string items (`name__startswith=an`, `sort=-name`, `limit=20`)."""
        pairs: list[tuple[object, object]] = []
        items = params.items() if isinstance(params, Mapping) else params
        for item in items:
            if not isinstance(item, tuple) or len(item) != 2:
                raise InvalidArgumentError(
                    f"query parameters for {self.info.name} are a mapping or (key, value) pairs"
                )
            key, value = item
            if isinstance(value, list | tuple):
                pairs.extend((key, one) for one in value)
            else:
                pairs.append((key, value))
        filters: list[tuple[str, str, object]] = []
        special: dict[str, str] = {}
        for key, value in pairs:
            if not isinstance(key, str):
                raise InvalidArgumentError(f"query parameter names for {self.info.name} must be strings")
            if not isinstance(value, str):
                raise self._refuse(key, "query parameter values must be strings")
            if key in RESERVED:
                if key in special:
                    raise self._refuse(key, "given more than once")
                special[key] = value
                continue
            name, _, operator = key.rpartition("__")
            if not name or operator not in OPERATORS:
                name, operator = key, "eq"
            filters.append((name, operator, value))
        return ParsedQuery(
            where=tuple(self.conditions(filters)),
            order_by=self._sort(special["sort"]) if "sort" in special else None,
            limit=self._limit(special["limit"]) if "limit" in special else None,
            after=special.get("after"),
            before=special.get("before"),
        )

    def _sort(self, value: str) -> tuple[str, ...]:
        return sort_keys(
            value,
            self.sortable,
            unknown=lambda key: InvalidFieldError(
                self.info.cls,
                key,
                reason=f"is not sortable from input (not in {self.owner.__name__}.sortable)",
            ),
            repeated=lambda key: self._refuse(key, "sorted by more than once"),
        )

    def _limit(self, value: str) -> int:
        limit = whole_number(value, 1, self.max_limit)
        if limit is None:
            raise InvalidArgumentError(
                f"limit for {self.info.name} must be a whole number from 1 to {self.max_limit}"
            )
        return limit


def _positive(owner: type[Any], name: str) -> int:
    value = getattr(owner, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidArgumentError(f"{owner.__name__}.{name} must be a positive int, got {value!r}")
    return value


_SPECS: dict[tuple[type[Any], type[Any]], QuerySpec] = {}


def query_spec(owner: type[Any], info: ModelInfo) -> QuerySpec:
    """The checked declaration of repository class `owner` for `info`'s model, built once per mapping."""
    key = (owner, info.cls)
    spec = _SPECS.get(key)
    if spec is None or spec.info is not info:
        spec = _SPECS[key] = QuerySpec(owner, info)
    return spec
