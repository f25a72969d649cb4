"""In-memory repositories: the real repositories' methods, checks and errors, on an in-memory transaction."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any, NoReturn, TypeVar

from sqlalchemy import ColumnElement

from uow._async_repository import AsyncRepository
from uow._errors import InvalidArgumentError, MultipleResultsError, NotFoundError
from uow._evaluate import predicate, sort_keys
from uow._memory_transaction import Transaction
from uow._repository import (
    OrderBy,
    Repository,
    _render,
    _RepositoryCore,
)
from uow._store import Table, table_of

__all__ = ["AsyncInMemoryRepository", "InMemoryRepository", "MemoryRepositoryCore", "stand_in"]

T = TypeVar("T")
R = TypeVar("R", bound="Repository[Any] | InMemoryRepository[Any]")
AR = TypeVar("AR", bound="AsyncRepository[Any] | AsyncInMemoryRepository[Any]")

_SURFACE = frozenset(
    {"__init__", "add", "add_all", "remove", "insert_many", "stream", "get", "get_one", "list"}
    | {"first", "one", "count", "exists"}
)


class MemoryRepositoryCore(_RepositoryCore[T]):
    """Validation and queries shared by the sync and async in-memory repositories."""

    _transaction: Any
    """The unit's `Transaction`, or a stand-in that raises StateError once the block ended."""

    def __init__(self, transaction: Transaction, model: type[T] | None = None) -> None:
        """Bind the repository to an in-memory unit's transaction; units do this for you.

        Args:
            transaction: The transaction of the unit's active block.
            model: The mapped class; required unless the subclass names it as
                `InMemoryRepository[Model]`.

        Raises:
            InvalidArgumentError: The model is missing or is not a mapped class.
        """
        self._bind_model(model)
        self._table: Table = table_of(self.model)
        self._transaction = transaction

    @property
    def session(self) -> NoReturn:
        """In-memory repositories have no session: reading it raises `AttributeError`."""
        raise AttributeError(
            f"{type(self).__name__} is in memory and has no session: code that needs a session needs "
            "a database (see the uow_session_factory fixture of the uow pytest plugin)"
        )

    def _add(self, obj: T, action: str = "add") -> T:
        self._check_instance(obj, action)
        self._transaction.add(obj)
        return obj

    def _add_all(self, objs: Iterable[T]) -> builtins.list[T]:
        added = builtins.list(objs)
        for obj in added:
            self._check_instance(obj, "add_all")
        transaction = self._transaction
        for obj in added:
            transaction.add(obj)
        return added

    def _remove(self, obj: T) -> None:
        self._check_instance(obj, "remove")
        self._transaction.remove(obj, self.model)

    def _insert_many(self, rows: Iterable[Mapping[str, Any]]) -> int:
        checked = self._rows(rows)
        if not checked:
            return 0
        renames = {key: field for field, key in (self._info.insert_renames or {}).items()}
        self._transaction.insert_rows(
            self._table, [{renames.get(name, name): value for name, value in row.items()} for row in checked]
        )
        return len(checked)

    def _query(
        self,
        where: tuple[ColumnElement[bool], ...],
        equals: dict[str, Any],
        order_by: OrderBy = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> Callable[[], builtins.list[T]]:
        """Check every argument as the real repository does; the query, to be run when called."""
        clauses = self._criteria(where, equals) if where or equals else []
        ordering = self._ordering(order_by)
        self._check_count("limit", limit)
        self._check_count("offset", offset)
        mapper = self._table.mapper
        match = predicate(mapper, clauses, _render)
        keys = sort_keys(mapper, ordering, _render)
        transaction, table = self._transaction, self._table
        return lambda: transaction.select(table, match, keys, limit, offset)

    def _find(
        self,
        where: tuple[ColumnElement[bool], ...],
        equals: dict[str, Any],
        order_by: OrderBy = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> builtins.list[T]:
        return self._query(where, equals, order_by, limit, offset)()

    def _get(self, ident: Any) -> T | None:
        transaction = self._transaction
        found: T | None = transaction.get(self._table, self._identity(ident))
        return found

    def _one(self, where: tuple[ColumnElement[bool], ...], equals: dict[str, Any]) -> T:
        found = self._find(where, equals, limit=2)
        if not found:
            raise NotFoundError(self.model, self._describe(where, equals))
        if len(found) > 1:
            raise MultipleResultsError(self.model, self._describe(where, equals))
        return found[0]

    def _identity(self, ident: Any) -> tuple[Any, ...]:
        """`ident` as a tuple of primary-key values, as `Session.get` accepts it."""
        fields = self._table.identity
        if isinstance(ident, dict):
            missing = [field for field in fields if field not in ident]
            if missing or len(ident) != len(fields):
                raise InvalidArgumentError(
                    f"the identity of a {self.model.__name__} is given by the fields {', '.join(fields)}; "
                    f"got {ident!r}"
                )
            return tuple(ident[field] for field in fields)
        values = tuple(ident) if isinstance(ident, tuple | builtins.list) else (ident,)
        if len(values) != len(fields):
            raise InvalidArgumentError(
                f"the primary key of {self.model.__name__} has {len(fields)} value(s) "
                f"({', '.join(fields)}); got {ident!r}"
            )
        return values


class InMemoryRepository(MemoryRepositoryCore[T]):
    """A [`Repository`][uow.Repository] on an in-memory store, from `InMemoryUnitOfWork.repository()`.

    It has the real repository's methods, arguments, checks and errors, and its semantics:

    - Reads see what this unit added, changed or removed (they flush first, as autoflush does) and
      what other units committed; within a block one primary key always gives the same object.
    - Filters are keyword equality (`None` matches NULL) and SQLAlchemy expressions that compare a
      column of the model with a value; see
      [`UnsupportedExpressionError`][uow.testing.UnsupportedExpressionError] for
      exactly which. Comparisons follow SQL's three-valued logic. Strings compare as Python compares
      them: case-sensitive, as PostgreSQL does (MariaDB's default collation and SQLite's `LIKE`
      ignore case).
    - `order_by` takes the same names and column expressions; `NULL` sorts first ascending and
      last descending. Without `order_by`, objects come in the order their rows were stored.

    Relationships are neither loaded nor cascaded; set foreign-key fields yourself. Server-side
    defaults and SQL-expression defaults are not evaluated (the field stays `None`); Python-side
    column defaults and integer autoincrement keys are.
    """

    def add(self, obj: T) -> T:
        """Add `obj`, to be inserted at the next flush; returns `obj`. See `uow.Repository.add()`."""
        return self._add(obj)

    def add_all(self, objs: Iterable[T]) -> builtins.list[T]:
        """Add every object of `objs`; none is added if one is of another model."""
        return self._add_all(objs)

    def remove(self, obj: T) -> None:
        """Mark `obj` for deletion at the next flush; an object never flushed is just taken out."""
        self._remove(obj)

    def insert_many(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert `rows` (mappings of field names to values) at once; no objects are created."""
        return self._insert_many(rows)

    def stream(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        batch_size: int = 1000,
        **equals: Any,
    ) -> Iterator[T]:
        """Iterate over the objects that match; arguments are checked at once, the query runs lazily."""
        self._check_batch(batch_size)
        return self._stream(self._query(where, equals, order_by))

    @staticmethod
    def _stream(query: Callable[[], builtins.list[T]]) -> Iterator[T]:
        yield from query()

    def get(self, ident: Any) -> T | None:
        """The object with primary key `ident`, or `None`; the identity map is looked at first."""
        return self._get(ident)

    def get_one(self, ident: Any) -> T:
        """The object with primary key `ident`.

        Raises:
            NotFoundError: There is none.
        """
        obj = self._get(ident)
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
    ) -> builtins.list[T]:
        """The objects that match every filter, in `order_by` order, paged by `limit`/`offset`."""
        return self._find(where, equals, order_by, limit, offset)

    def first(self, *where: ColumnElement[bool], order_by: OrderBy = None, **equals: Any) -> T | None:
        """The first object that matches, in `order_by` order, or `None`."""
        found = self._find(where, equals, order_by, 1)
        return found[0] if found else None

    def one(self, *where: ColumnElement[bool], **equals: Any) -> T:
        """The only object that matches.

        Raises:
            NotFoundError: None matches.
            MultipleResultsError: More than one matches.
        """
        return self._one(where, equals)

    def count(self, *where: ColumnElement[bool], **equals: Any) -> int:
        """How many objects match."""
        return len(self._find(where, equals))

    def exists(self, *where: ColumnElement[bool], **equals: Any) -> bool:
        """Whether at least one object matches."""
        return bool(self._find(where, equals, limit=1))


class AsyncInMemoryRepository(MemoryRepositoryCore[T]):
    """The async twin of `InMemoryRepository`: the same rules, with every method awaited."""

    async def add(self, obj: T) -> T:
        """Add `obj`, to be inserted at the next flush; returns `obj`."""
        return self._add(obj)

    async def add_all(self, objs: Iterable[T]) -> builtins.list[T]:
        """Add every object of `objs`; none is added if one is of another model."""
        return self._add_all(objs)

    async def remove(self, obj: T) -> None:
        """Mark `obj` for deletion at the next flush; an object never flushed is just taken out."""
        self._remove(obj)

    async def insert_many(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert `rows` (mappings of field names to values) at once; no objects are created."""
        return self._insert_many(rows)

    async def stream(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        batch_size: int = 1000,
        **equals: Any,
    ) -> AsyncIterator[T]:
        """An async iterator over the objects that match: `async for x in await repo.stream(): ...`."""
        self._check_batch(batch_size)
        return self._stream(self._find(where, equals, order_by))

    @staticmethod
    async def _stream(found: builtins.list[T]) -> AsyncIterator[T]:
        for obj in found:
            yield obj

    async def get(self, ident: Any) -> T | None:
        """The object with primary key `ident`, or `None`; the identity map is looked at first."""
        return self._get(ident)

    async def get_one(self, ident: Any) -> T:
        """The object with primary key `ident`.

        Raises:
            NotFoundError: There is none.
        """
        obj = self._get(ident)
        if obj is None:
            raise self._not_found(ident)
        return obj

    async def list(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        limit: int | None = None,
        offset: int | None = None,
        **equals: Any,
    ) -> builtins.list[T]:
        """The objects that match every filter, in `order_by` order, paged by `limit`/`offset`."""
        return self._find(where, equals, order_by, limit, offset)

    async def first(self, *where: ColumnElement[bool], order_by: OrderBy = None, **equals: Any) -> T | None:
        """The first object that matches, in `order_by` order, or `None`."""
        found = self._find(where, equals, order_by, 1)
        return found[0] if found else None

    async def one(self, *where: ColumnElement[bool], **equals: Any) -> T:
        """The only object that matches.

        Raises:
            NotFoundError: None matches.
            MultipleResultsError: More than one matches.
        """
        return self._one(where, equals)

    async def count(self, *where: ColumnElement[bool], **equals: Any) -> int:
        """How many objects match."""
        return len(self._find(where, equals))

    async def exists(self, *where: ColumnElement[bool], **equals: Any) -> bool:
        """Whether at least one object matches."""
        return bool(self._find(where, equals, limit=1))


_STAND_INS: dict[tuple[type[Any], type[Any]], type[Any]] = {}


def stand_in(target: type[Any], memory_base: type[Any], real_base: type[Any]) -> type[Any]:
    """An in-memory repository class that also has the methods `target` adds to `real_base`.

    `class UserRepository(Repository[User])` with a method `named()` gives a class whose
    `named()` is the user's and whose `list()` (which `named()` calls) is in memory.
    """
    cls = _STAND_INS.get((target, memory_base))
    if cls is not None:
        return cls
    for klass in target.__mro__:
        if klass is real_base:
            break
        overridden = sorted(_SURFACE.intersection(vars(klass)))
        if overridden:
            name = overridden[0]
            raise InvalidArgumentError(
                f"{target.__name__} overrides {name}() (in {klass.__name__}); an in-memory unit runs a "
                f"repository class of your own by keeping its in-memory {name}() and taking from "
                f"your class only the methods it adds. Give the override another name, or pass the "
                f"in-memory unit a subclass of {memory_base.__name__} instead"
            )
    cls = type(
        f"InMemory{target.__name__}",
        (memory_base, target),
        {"__module__": target.__module__, "__doc__": target.__doc__},
    )
    _STAND_INS[(target, memory_base)] = cls
    return cls
