"""Pages: keyset pagination with signed cursors, and a page with its total in one round trip.

A keyset page continues after (or before) the sort-key values of a boundary row instead of skipping
a number of rows, so rows inserted or deleted meanwhile never make it repeat or skip a row. Its
cursors carry the boundary row's key values, signed with HMAC-SHA256 under a key of the process
(`set_cursor_key()`), so a cursor that was altered, or made for another model or ordering, is refused.

A cursor is `payload.signature`, both in URL-safe base64 without padding. The payload is a flag
byte, 0 or 1 (1 when the boundary row itself belongs to the page beyond it), then each key value as
a type tag and its bytes: `i` and a signed 64-bit integer, `f` and a double, `t` or `F` for a bool,
`s` and a 32-bit length and UTF-8 text (strings, and enums by name, dates, times, decimals and UUIDs
in their text form), `n` and a 32-bit length and the digits of an integer beyond 64 bits. A keyset
whose columns all hold integers writes the flag as 2 or 3 and then only the values, as signed 64-bit
integers (one `struct` call each way). Numbers are big-endian. The signature is the first 128 bits
of HMAC-SHA256 over the keyset's context (model, table, order), a zero byte and the payload's
base64 text, so that no other spelling of a payload passes.
"""

from __future__ import annotations

import binascii
import enum
import hashlib
import hmac
import math
import os
import struct
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Enum, Select, and_, func, literal, or_, tuple_
from sqlalchemy.orm import Session

from uow._errors import InvalidArgumentError, InvalidFieldError
from uow._filters import python_type
from uow._model import MAX_INT32, ModelInfo, is_expression

__all__ = [
    "Keyset",
    "Page",
    "PagePlan",
    "keyset",
    "list_and_count",
    "plan_page",
    "read_page",
    "set_cursor_key",
]

T = TypeVar("T")

MAX_CURSOR = 4096
"""The longest cursor accepted, in characters: anything longer is refused before it is decoded."""

_TRANS_36 = bytes(x ^ 0x36 for x in range(256))
_TRANS_5C = bytes(x ^ 0x5C for x in range(256))


class _Signer:
    """HMAC-SHA256 under one key, its padded key blocks hashed once, and once per keyset's context."""

    __slots__ = ("_contexts", "_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
        self._inner = hashlib.sha256(block.translate(_TRANS_36))
        self._outer = hashlib.sha256(block.translate(_TRANS_5C))
        self._contexts: dict[bytes, Any] = {}

    def sign(self, context: bytes, payload: bytes) -> bytes:
        """HMAC-SHA256(key, context + b"\\0" + payload), cut to 128 bits."""
        inner = self._contexts.get(context)
        if inner is None:
            inner = self._inner.copy()
            inner.update(context + b"\0")
            if len(self._contexts) < 1000:
                self._contexts[context] = inner
        inner = inner.copy()
        inner.update(payload)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:16]


_signer = _Signer(os.urandom(32))


def set_cursor_key(key: bytes | str | None) -> None:
    """Set the key that signs and verifies page cursors in this process; `None` draws a new random one.

    By default each process draws a random key when uow is imported, so a cursor is only valid in
    the process that made it, until it exits. Deployments with several processes or hosts behind one
    API, or that want cursors to survive a restart, give every process the same secret, for example
    from the environment: `uow.set_cursor_key(os.environ["PAGE_CURSOR_KEY"])`. Changing the key
    invalidates every cursor made before.

    Args:
        key: At least 32 bytes (a `str` is encoded as UTF-8), kept secret like a session key;
            `secrets.token_urlsafe(32)` makes one.

    Raises:
        InvalidArgumentError: The key is shorter than 32 bytes, or neither bytes nor str.
    """
    global _signer
    if key is None:
        _signer = _Signer(os.urandom(32))
        return
    raw = key.encode() if isinstance(key, str) else key
    if not isinstance(raw, bytes) or len(raw) < 32:
        raise InvalidArgumentError("set_cursor_key() needs a secret of at least 32 bytes (or None)")
    _signer = _Signer(bytes(raw))


Boundary = tuple[list[Any], bool]
"""The sort-key values of a page's boundary row, and whether the row itself is included beyond it."""


class Page(Generic[T]):
    """One page of a keyset pagination: its objects and the cursors of the pages beside it.

    Attributes:
        items: The objects of the page, in the page's order.
    """

    __slots__ = ("_keyset", "_next", "_previous", "items")

    def __init__(
        self, items: list[T], keyset: Keyset, following: Boundary | None, preceding: Boundary | None
    ) -> None:
        self.items: list[T] = items
        self._keyset = keyset
        self._next: Boundary | str | None = following
        self._previous: Boundary | str | None = preceding

    @property
    def next(self) -> str | None:
        """The cursor to pass as `after=` for the next page; `None` on the last page."""
        cursor = self._next
        if isinstance(cursor, tuple):  # signed when first asked for
            cursor = self._next = self._keyset.encode(*cursor)
        return cursor

    @property
    def previous(self) -> str | None:
        """The cursor to pass as `before=` for the previous page; `None` on the first page."""
        cursor = self._previous
        if isinstance(cursor, tuple):
            cursor = self._previous = self._keyset.encode(*cursor)
        return cursor

    def __repr__(self) -> str:
        return (
            f"<Page of {len(self.items)} item(s), next={'yes' if self._next is not None else 'no'}, "
            f"previous={'yes' if self._previous is not None else 'no'}>"
        )


@dataclass(frozen=True, slots=True)
class Keyset:
    """A total order of a model's rows by some of its columns, the primary key last."""

    fields: tuple[str, ...]
    columns: tuple[Any, ...]
    """The sort keys' columns as SQL expressions (each attribute's `__clause_element__()`), made once:
    comparing them costs less than comparing the attributes."""
    descending: tuple[bool, ...]
    kinds: tuple[type[Any] | None, ...]
    context: bytes
    """What a cursor is signed for: the model, its table and the order."""
    description: str
    """The order as `name,-id`, for error messages."""
    forward: tuple[Any, ...]
    """The ORDER BY of pages read forward; `backward` is its reverse, for pages read backward."""
    backward: tuple[Any, ...]
    row: Any
    """`columns` as one tuple expression (the single column for one key), compared with a boundary."""
    uniform: bool
    """Whether every key sorts in the same direction, so that one tuple comparison finds the rows beyond."""
    native_enums: tuple[str, ...]
    """The sort keys whose column is a native `ENUM` (MariaDB and MySQL cannot page by them)."""
    model: str
    """The model's name, for error messages."""
    integers: struct.Struct | None
    """A cursor payload's layout when every key column holds integers: a flag byte (2, or 3 when
    the boundary row is included) and each value as a signed 64-bit integer, big-endian."""

    def ordering(self, forward: bool) -> tuple[Any, ...]:
        return self.forward if forward else self.backward

    def beyond(self, values: list[Any], forward: bool, inclusive: bool) -> ColumnElement[bool]:
        """The rows that come after `values` in this order (before them when not `forward`).

        The values are bound with their columns' types, so that enums, booleans and the like compare
        as the columns store them.
        """
        columns = self.columns
        if self.uniform:
            row = self.row
            right = tuple(values) if len(values) > 1 else literal(values[0], columns[0].type)
            if self.descending[0] != forward:  # a row beyond has greater values
                return row >= right if inclusive else row > right  # type: ignore[no-any-return]
            return row <= right if inclusive else row < right  # type: ignore[no-any-return]
        alternatives: list[ColumnElement[bool]] = []
        for index, column in enumerate(columns):
            equal = [columns[j] == literal(values[j], columns[j].type) for j in range(index)]
            value = literal(values[index], column.type)
            step = column > value if self.descending[index] != forward else column < value
            alternatives.append(and_(*equal, step))
        if inclusive:
            same = (c == literal(v, c.type) for c, v in zip(columns, values, strict=True))
            alternatives.append(and_(*same))
        return or_(*alternatives)

    # -- cursors -----------------------------------------------------------------------------------

    def boundary(self, obj: Any, *, inclusive: bool = False) -> Boundary:
        """The boundary a cursor made from `obj` stands for (read where the object's columns are loaded)."""
        return [getattr(obj, field) for field in self.fields], inclusive

    def encode(self, values: list[Any], inclusive: bool) -> str:
        if self.integers is None:
            payload = _pack(values, inclusive, self.kinds)
        else:
            try:
                payload = self.integers.pack(3 if inclusive else 2, *values)
            except struct.error:  # a value beyond 64 bits
                payload = _pack(values, inclusive, self.kinds)
        encoded = _b64(payload)
        return (encoded + b"." + _b64(_signer.sign(self.context, encoded))).decode()

    def decode(self, cursor: object, argument: str, info: ModelInfo) -> tuple[list[Any], bool]:
        """The boundary values and inclusiveness a cursor carries, once its signature is verified.

        The signature covers the payload's base64 text, so no other spelling of it is accepted.

        Raises:
            InvalidArgumentError: The cursor is not one this process signed for this model and
                order; the message never repeats it.
        """
        if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR:
            raise self._refused(argument, info)
        encoded, _, signature = cursor.partition(".")
        try:
            text, tag = encoded.encode(), signature.encode()
        except ValueError:  # not encodable: lone surrogates
            raise self._refused(argument, info) from None
        if not hmac.compare_digest(tag, _b64(_signer.sign(self.context, text))):
            raise self._refused(argument, info)
        try:
            payload = _unb64(text)
            if payload[0] > 1:
                if self.integers is None:
                    raise ValueError("not a keyset of integers")
                flag, *values = self.integers.unpack(payload)
                if flag > 3:
                    raise ValueError("flag")
                return values, flag == 3
            return _unpack(payload, self.kinds)
        except (ValueError, TypeError, KeyError, IndexError, struct.error, binascii.Error):
            raise self._refused(argument, info) from None

    def _refused(self, argument: str, info: ModelInfo) -> InvalidArgumentError:
        return InvalidArgumentError(
            f"{argument}= is not a valid page cursor for {info.name} ordered by {self.description}: it was "
            "altered, made for another model or ordering, or signed with another key (see set_cursor_key())"
        )


_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _b64(data: bytes) -> bytes:
    """URL-safe base64 without padding."""
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=")


def _unb64(text: bytes) -> bytes:
    """The bytes of `_b64()` output (other spellings of them too: a cursor's signature rules those out)."""
    return binascii.a2b_base64(text.translate(_FROM_URLSAFE) + b"=" * (-len(text) % 4), strict_mode=True)


_INT64 = struct.Struct(">q")
_DOUBLE = struct.Struct(">d")
_LENGTH = struct.Struct(">I")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _pack(values: list[Any], inclusive: bool, kinds: tuple[type[Any] | None, ...]) -> bytes:
    """A cursor's payload: the inclusiveness, then each value with its type tag (see the module)."""
    parts = [b"\1" if inclusive else b"\0"]
    for value, kind in zip(values, kinds, strict=True):
        if type(value) is int and _INT64_MIN <= value <= _INT64_MAX:
            parts.append(b"i" + _INT64.pack(value))
        elif type(value) is str:
            text = value.encode()
            parts.append(b"s" + _LENGTH.pack(len(text)) + text)
        else:
            parts.append(_pack_other(value, kind))
    return b"".join(parts)


def _pack_other(value: Any, kind: type[Any] | None) -> bytes:
    """A value of any other type: an enum of an enum column by name, else by what it also is (an
    `IntEnum` member in an integer column is its number), as `_typed()` reads it back."""
    if isinstance(value, enum.Enum) and kind is not None and issubclass(kind, enum.Enum):
        text = value.name
    elif isinstance(value, bool):
        return b"t" if value else b"F"
    elif isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return b"i" + _INT64.pack(value)
        digits = str(int(value)).encode()
        return b"n" + _LENGTH.pack(len(digits)) + digits
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgumentError(f"page() cannot make a cursor of a sort key that is {value}")
        return b"f" + _DOUBLE.pack(float(value))
    elif isinstance(value, str):
        text = str.__str__(value)
    elif isinstance(value, enum.Enum):
        text = value.name
    elif isinstance(value, datetime | date | time):
        text = value.isoformat()
    elif isinstance(value, Decimal | uuid.UUID):
        text = str(value)
    else:
        raise InvalidArgumentError(f"page() cannot make a cursor of a {type(value).__name__} sort key")
    encoded = text.encode()
    return b"s" + _LENGTH.pack(len(encoded)) + encoded


def _unpack(payload: bytes, kinds: tuple[type[Any] | None, ...]) -> tuple[list[Any], bool]:
    """The values and inclusiveness of `_pack()`'s payload, as the columns' types; raises on anything else."""
    flag = payload[0]
    if flag > 1:
        raise ValueError("flag")
    at = 1
    values: list[Any] = []
    for kind in kinds:
        tag = payload[at]
        if tag == 0x69:  # i
            value: Any = _INT64.unpack_from(payload, at + 1)[0]
            at += 9
        elif tag == 0x73 or tag == 0x6E:  # s, n
            (length,) = _LENGTH.unpack_from(payload, at + 1)
            start = at + 5
            at = start + length
            if at > len(payload):
                raise ValueError("short")
            text = payload[start:at].decode()
            value = text if tag == 0x73 else int(text)
        elif tag == 0x66:  # f
            value = _DOUBLE.unpack_from(payload, at + 1)[0]
            at += 9
        elif tag == 0x74 or tag == 0x46:  # t, F
            value = tag == 0x74
            at += 1
        else:
            raise ValueError("tag")
        values.append(value if type(value) is kind else _typed(kind, value))
    if at != len(payload):
        raise ValueError("long")
    return values, flag == 1


def _typed(kind: type[Any] | None, value: Any) -> Any:
    if kind is None or (isinstance(value, kind) and not (kind is int and isinstance(value, bool))):
        return value
    if kind is float and isinstance(value, int):
        return float(value)
    if not isinstance(value, str):
        raise TypeError(kind)
    if issubclass(kind, enum.Enum):
        return kind[value]
    if kind in (datetime, date, time):
        return kind.fromisoformat(value)
    if kind in (Decimal, uuid.UUID):
        return kind(value)
    raise TypeError(kind)


_KEYSETS: dict[tuple[type[Any], object], tuple[ModelInfo, Keyset]] = {}


def keyset(info: ModelInfo, order_by: object) -> Keyset:
    """The keyset of `order_by` (field names, column attributes, their `asc()`/`desc()`).

    The primary key's fields are added at the end, ascending, where the order lacks them, so that no
    two rows sort alike. Keysets of field names are kept per model mapping.

    Raises:
        InvalidFieldError: A name is not a mapped column of the model.
        InvalidArgumentError: An item is an expression other than a column of the model, a column
            may hold NULL (its rows would have no place in the order), or a field comes twice.
    """
    names: object = None
    if order_by is None or isinstance(order_by, str):
        names = order_by
    elif isinstance(order_by, list | tuple) and all(isinstance(item, str) for item in order_by):
        names = tuple(order_by)
    else:
        return _keyset(info, order_by)
    cached = _KEYSETS.get((info.cls, names))
    if cached is not None and cached[0] is info:
        return cached[1]
    made = _keyset(info, order_by)
    if len(_KEYSETS) < 1000:
        _KEYSETS[(info.cls, names)] = (info, made)
    return made


def _keyset(info: ModelInfo, order_by: object) -> Keyset:
    items: list[Any]
    if order_by is None:
        items = []
    elif isinstance(order_by, str) or is_expression(order_by):
        items = [order_by]
    elif isinstance(order_by, list | tuple):
        items = list(order_by)
    else:
        raise InvalidArgumentError(
            f"order_by of page() takes field names or column attributes, got {order_by!r}"
        )
    keys: list[tuple[str, bool]] = [_key_of(info, item) for item in items]
    named = [name for name, _ in keys]
    if len(set(named)) != len(named):
        raise InvalidArgumentError(
            f"page() of {info.name} orders by a field more than once: {', '.join(named)}"
        )
    keys.extend((name, False) for name in info.keys if name not in named)
    for name, _ in keys:
        if name in info.nullable:
            raise InvalidArgumentError(
                f"page() of {info.name} cannot order by {name!r}: the column may hold NULL, and rows "
                "with NULL would have no place in the order; order by NOT NULL columns"
            )
    description = ",".join(("-" if descending else "") + name for name, descending in keys)
    cls = info.cls
    table = info.mapper.local_table
    columns: tuple[Any, ...] = tuple(info.columns[name].__clause_element__() for name, _ in keys)
    descending = tuple(descending for _, descending in keys)
    kinds = tuple(python_type(info.column(name)) for name, _ in keys)
    return Keyset(
        fields=tuple(name for name, _ in keys),
        columns=columns,
        descending=descending,
        kinds=kinds,
        context=f"{cls.__module__}.{cls.__qualname__}|{getattr(table, 'name', '')}|{description}".encode(),
        description=description,
        forward=tuple(c.desc() if d else c for c, d in zip(columns, descending, strict=True)),
        backward=tuple(c if d else c.desc() for c, d in zip(columns, descending, strict=True)),
        row=columns[0] if len(columns) == 1 else tuple_(*columns),
        uniform=len(set(descending)) == 1,
        native_enums=tuple(name for name, _ in keys if _native_enum(info.column(name).type)),
        model=info.name,
        integers=struct.Struct(">B" + "q" * len(keys)) if all(kind is int for kind in kinds) else None,
    )


def _native_enum(column_type: object) -> bool:
    return isinstance(column_type, Enum) and column_type.native_enum


def _key_of(info: ModelInfo, item: object) -> tuple[str, bool]:
    if isinstance(item, str):
        descending = item.startswith("-")
        name = item[1:] if descending else item
        if name not in info.columns:
            raise InvalidFieldError(info.cls, item, usage="sort key")
        return name, descending
    if is_expression(item):
        for name, attribute in info.columns.items():
            if item is attribute or attribute.compare(item):
                return name, False
            if attribute.asc().compare(item):  # type: ignore[arg-type]
                return name, False
            if attribute.desc().compare(item):  # type: ignore[arg-type]
                return name, True
    raise InvalidArgumentError(
        f"page() of {info.name} orders by fields of the model only (names, column attributes or their "
        f"asc()/desc()), got {item!r}"
    )


@dataclass(frozen=True, slots=True)
class PagePlan:
    """A page's statement and what turns its rows into a `Page`."""

    statement: Select[Any]
    keyset: Keyset
    limit: int
    forward: bool
    boundary: list[Any] | None
    unique: bool


def plan_page(
    info: ModelInfo,
    statement: Select[Any],
    order_by: object,
    limit: object,
    after: object,
    before: object,
    unique: bool,
) -> PagePlan:
    """The statement of a keyset page, filtered already by `statement`'s WHERE."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit < MAX_INT32:
        raise InvalidArgumentError(
            f"limit of page() for {info.name} must be an int from 1 to 2**31 - 2, got {limit!r}"
        )
    keys = keyset(info, order_by)
    if after is not None and before is not None:
        raise InvalidArgumentError(f"page() of {info.name} takes after= or before=, not both")
    forward = before is None
    boundary: list[Any] | None = None
    cursor = after if forward else before
    if cursor is not None:
        boundary, inclusive = keys.decode(cursor, "after" if forward else "before", info)
        statement = statement.where(keys.beyond(boundary, forward, inclusive))
    statement = statement.order_by(*keys.ordering(forward)).limit(limit + 1)
    return PagePlan(statement, keys, limit, forward, boundary, unique)


def read_page(session: Session, plan: PagePlan) -> Page[Any]:
    """Run a page's statement and note its cursors' boundaries (in the greenlet, for async units).

    Raises:
        InvalidArgumentError: The order has a native `ENUM` key on MariaDB or MySQL, which sort it by
            the declared order but compare it with text, so that pages would skip or repeat rows.
    """
    keys = plan.keyset
    if keys.native_enums and session.get_bind(clause=plan.statement).dialect.name in ("mysql", "mariadb"):
        raise InvalidArgumentError(
            f"page() of {keys.model} cannot order by {keys.native_enums[0]!r} on MariaDB or MySQL: they "
            "sort an ENUM column by its declared order but compare it with text, so pages would skip "
            "or repeat rows; order by another field, or map the column with Enum(native_enum=False)"
        )
    result = session.scalars(plan.statement)
    rows = list((result.unique() if plan.unique else result).all())
    more = len(rows) > plan.limit
    items = rows[: plan.limit]
    boundary = plan.boundary
    if plan.forward:
        following = keys.boundary(items[-1]) if more else None
        if boundary is None:
            preceding = None
        elif items:
            preceding = keys.boundary(items[0])
        else:  # past the end: the previous page ends at the boundary row itself
            preceding = (boundary, True)
        return Page(items, keys, following, preceding)
    items.reverse()
    preceding = keys.boundary(items[0]) if more else None
    following = keys.boundary(items[-1]) if items else (boundary or [], True)
    return Page(items, keys, following, preceding)


# -- a page and its total ------------------------------------------------------------------------


def list_and_count(
    session: Session,
    statement: Select[Any],
    count: Select[Any],
    limit: int | None,
    offset: int | None,
    unique: bool,
) -> tuple[list[Any], int]:
    """The page of `statement` and the number of rows without paging, in one round trip if possible.

    With a `limit`, the total comes with the rows as a window `count(*) OVER ()`; without one the
    page holds every row from `offset` on, so the total follows from its length. Only a page that
    comes back empty (past the end, or `limit=0`) needs a second query, `count`.
    """
    if limit is None:
        result = session.scalars(statement)
        items = list((result.unique() if unique else result).all())
        if items or not offset:
            return items, (offset or 0) + len(items)
        return items, int(session.scalar(count) or 0)
    rows = session.execute(statement.add_columns(func.count().over()))
    found = list((rows.unique() if unique else rows).all())
    if found:
        return [row[0] for row in found], int(found[0][1])
    if not offset and limit:
        return [], 0
    return [], int(session.scalar(count) or 0)
