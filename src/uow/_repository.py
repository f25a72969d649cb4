"""Typed repositories: the everyday reads and writes of one mapped class, with safe filtering."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from uow._errors import MultipleResultsError, NotFoundError
from uow._listeners import mark_written
from uow._locks import ForUpdate, LoadOptions
from uow._model import ENDED_SESSION, TRANSLATED, raise_translated
from uow._pages import Page, list_and_count, read_page
from uow._query import OrderBy, RepositoryCore
from uow._writes import bulk_delete, bulk_update, check_key, get_or_create, run_bulk, upsert_rows

__all__ = ["ENDED_SESSION", "OrderBy", "Repository"]

T = TypeVar("T")


class Repository(RepositoryCore[T]):
    """Reads and writes the objects of one mapped class through a `Session`.

    Build one with `unit.repository(User)`, or subclass it to add queries of your own:

    ```python
    class UserRepository(Repository[User]):
        def named(self, name: str) -> list[User]:
            return self.list(name=name, order_by="id")
    ```

    A repository never commits: committing is the unit of work's job. Its methods flush only when the
    session autoflushes, exactly as the same plain-SQLAlchemy calls would.

    Filters are the same for every read and for `update_where()` and `delete_where()`: SQLAlchemy
    expressions as positional arguments (`User.name.like("b%")`) and column equality as keyword
    arguments (`name="Bob"`; `None` means `IS NULL`). Keyword names and string sort keys must be
    mapped columns of the model; anything else raises [`InvalidFieldError`][uow.InvalidFieldError]
    before any SQL is built. Filters from untrusted input go through `parse_query()`. An integrity
    violation raised while one of these methods autoflushes is translated as `UnitOfWork.commit()`
    translates it; the session's transaction is then broken and needs `unit.rollback()` before the
    next statement.

    Reads by filter and by key take `for_update=` (`True` or a [`Lock`][uow.Lock]) to lock the
    rows they return until the transaction ends, and `options=` for SQLAlchemy loader options such
    as `(selectinload(User.tags),)`.
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

    def _sync_session(self) -> Session:
        return self.session

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

    def upsert(
        self,
        obj_or_mapping: T | Mapping[str, Any],
        *,
        on: str | Sequence[str] | None = None,
        update: Sequence[str] | Mapping[str, Any] | None = None,
    ) -> T:
        """Insert one row, or update the row it collides with on `on`; returns the object as stored.

        One native statement: `INSERT ... ON CONFLICT (on) DO UPDATE ... RETURNING` on PostgreSQL
        and SQLite, `INSERT ... ON DUPLICATE KEY UPDATE ... RETURNING` on MariaDB. It is atomic, so
        concurrent upserts of one key never fail and never lose a write. See `upsert_many()` for
        the rules.

        Args:
            obj_or_mapping: A mapping of field names to values, or a new (transient) object of
                the model, whose attributes that were set are written; the object itself is not
                added to the session, the returned one is.
            on: The fields that identify the row: the primary key (the default) or the fields of
                one unique constraint.
            update: What to change when the row exists: the names of fields to overwrite with the
                given values, or a mapping of field names to values or SQL expressions on the stored
                row (`{"hits": Page.hits + 1}`); by default every given field except `on` and the
                primary key.

        Raises:
            InvalidFieldError: A name is not a mapped column.
            InvalidArgumentError: `on` is not a unique key, or a field of `on` has no value.
            DuplicateKeyError: The row collides with another row on a different unique key.
        """
        written = self.upsert_many([obj_or_mapping], on=on, update=update)
        return written[0]

    def upsert_many(
        self,
        rows: Iterable[T | Mapping[str, Any]],
        *,
        on: str | Sequence[str] | None = None,
        update: Sequence[str] | Mapping[str, Any] | None = None,
    ) -> list[T]:
        """Insert rows, updating those that collide on `on` instead; returns the objects as stored.

        One native statement per batch of up to 1,000 rows (fewer for rows of more than 30 fields):
        `INSERT ... ON CONFLICT (on) DO UPDATE SET ... RETURNING` on PostgreSQL and SQLite, `INSERT
        ... ON DUPLICATE KEY UPDATE ... RETURNING` on MariaDB (10.5 and later), so concurrent
        upserts of the same keys neither fail nor lose writes. The returned objects are in the
        order of `rows`; objects of those rows that the session held already are refreshed with the
        stored values. A version column (`version_id_col`) is incremented on update. Like every
        write, it is committed by the unit and counts as uncommitted work until then.

        MariaDB updates on a collision with any unique key of the table, not only `on`; on
        PostgreSQL and SQLite a collision on another unique key raises `DuplicateKeyError`.

        Raises:
            InvalidFieldError: A name is not a mapped column; nothing is sent then.
            InvalidArgumentError: `on` is not the primary key or a unique constraint, a row lacks a
                value for a field of `on`, two rows have the same `on` values, or the rows do not all
                name the same fields; nothing is sent then.
            DuplicateKeyError: A row collides with another on a different unique key.
        """
        info = self._info
        keys = check_key(info, on, "upsert")
        converted = self._upsert_rows(rows, "upsert_many()")
        if not converted:
            return []
        try:
            written: list[T] = upsert_rows(self.session, info, converted, keys, update)
        except TRANSLATED as exc:
            raise_translated(exc)
        return written

    def get_or_create(self, defaults: Mapping[str, Any] | None = None, **keys: Any) -> tuple[T, bool]:
        """The object whose `keys` match, created from `keys` and `defaults` if none does.

        `users.get_or_create(email="ann@example.org", defaults={"name": "Ann"})` returns
        `(user, created)`. The keys must be the primary key or the fields of a unique constraint.
        Race-safe on every backend: when two transactions ask at once, one creates the row and the
        other gets it, without an error. PostgreSQL and SQLite insert with `ON CONFLICT DO NOTHING`;
        MariaDB inserts in a savepoint and reads the other transaction's row with a locking read.
        A creation is committed by the unit, like every write.

        Raises:
            InvalidFieldError: A key or default is not a mapped column.
            InvalidArgumentError: The keys are not a unique key, a key is None, or a field is both a
                key and a default.
            ConflictError: The row another transaction created was deleted before it could be read;
                running the unit again (`run(retry=...)`) settles it.
        """
        try:
            found: tuple[T, bool] = get_or_create(self.session, self._info, keys, defaults or {})
        except TRANSLATED as exc:
            raise_translated(exc)
        return found

    def update_where(self, values: Mapping[str, Any], *where: ColumnElement[bool], **equals: Any) -> int:
        """Set `values` in every row that matches the filters, with one `UPDATE`; returns how many matched.

        `values` maps field names to new values or SQL expressions (`{"balance": Account.balance + 1}`).
        Objects of those rows already loaded in the session are updated to match (SQLAlchemy's
        `synchronize_session="fetch"`: `RETURNING` on PostgreSQL and SQLite, a `SELECT` first on
        MariaDB). A version column is incremented. At least one filter is required: to update every
        row, pass `sqlalchemy.true()`. The change counts as uncommitted work.

        Raises:
            InvalidFieldError: A field name is not a mapped column.
            InvalidArgumentError: `values` is empty, changes a primary-key field, or no filter was given.
        """
        statement = bulk_update(self._info, values, self._criteria(where, equals))
        return self._bulk(statement)

    def delete_where(self, *where: ColumnElement[bool], **equals: Any) -> int:
        """Delete every row that matches the filters, with one `DELETE`; returns how many were deleted.

        Objects of those rows loaded in the session are marked deleted and leave it at the commit.
        No ORM cascade runs: related rows are left to the database's foreign keys. At least one
        filter is required (`sqlalchemy.true()` for every row). The change counts as uncommitted work.

        Raises:
            InvalidFieldError: A field name is not a mapped column.
            InvalidArgumentError: No filter was given.
        """
        return self._bulk(bulk_delete(self._info, self._criteria(where, equals)))

    def _bulk(self, statement: Any) -> int:
        try:
            return run_bulk(self.session, statement)
        except TRANSLATED as exc:
            raise_translated(exc)

    # -- reads ----------------------------------------------------------------------------------

    def stream(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        batch_size: int = 1000,
        for_update: ForUpdate = False,
        options: LoadOptions = (),
        **equals: Any,
    ) -> Iterator[T]:
        """Iterate over the objects that match, fetching `batch_size` rows at a time.

        Memory stays bounded by the batch however many rows match, as long as the caller does not
        keep the objects (the session holds them only weakly). Arguments are checked at once; the
        query runs when iteration starts. Use it within the block, and finish or close the iterator
        before the next statement on the same unit. Loader options that load per batch
        (`selectinload`) suit it; `joinedload` of a collection does not.
        """
        self._check_batch(batch_size)
        statement = self._select(where, equals, order_by)
        if for_update is not False or options:
            statement = self._reading(statement, for_update, options)
        return self._stream(statement.execution_options(yield_per=batch_size))

    def _stream(self, statement: Select[Any]) -> Iterator[T]:
        try:
            yield from self.session.scalars(statement)
        except TRANSLATED as exc:
            raise_translated(exc)

    def get(self, ident: Any, *, for_update: ForUpdate = False, options: LoadOptions = ()) -> T | None:
        """The object with primary key `ident`, or `None`.

        Looks in the session's identity map first and only queries the database on a miss, as
        `Session.get <sqlalchemy.orm.Session.get>()` does. A composite key is a tuple, or a dict
        of field names. With `for_update` or `options` it always queries: the row is locked, or
        the options load what they name, and a locking read refreshes an object the session held.
        """
        try:
            if for_update is False and not options:
                return self.session.get(self.model, ident)
            statement = self._reading(self._info.select.where(*self._by_key(ident)), for_update, options)
            result = self.session.scalars(statement)
            found: T | None = (result.unique() if options else result).one_or_none()
        except TRANSLATED as exc:
            raise_translated(exc)
        return found

    def get_one(self, ident: Any, *, for_update: ForUpdate = False, options: LoadOptions = ()) -> T:
        """The object with primary key `ident`; as `get()`, but never `None`.

        Raises:
            NotFoundError: There is none; the message names the model and its primary-key fields,
                never the value of `ident`.
        """
        obj = self.get(ident, for_update=for_update, options=options)
        if obj is None:
            raise self._not_found(ident)
        return obj

    def list(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        limit: int | None = None,
        offset: int | None = None,
        for_update: ForUpdate = False,
        options: LoadOptions = (),
        **equals: Any,
    ) -> list[T]:
        """The objects that match every filter, in `order_by` order, paged by `limit`/`offset`.

        Without `order_by` the order is whatever the database returns.
        """
        statement = self._select(where, equals, order_by, limit, offset)
        if for_update is not False or options:
            statement = self._reading(statement, for_update, options)
        try:
            result = self.session.scalars(statement)
            found: list[T] = list((result.unique() if options else result).all())
        except TRANSLATED as exc:
            raise_translated(exc)
        return found

    def first(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        for_update: ForUpdate = False,
        options: LoadOptions = (),
        **equals: Any,
    ) -> T | None:
        """The first object that matches, in `order_by` order, or `None` when none does."""
        statement = self._select(where, equals, order_by, 1)
        if for_update is not False or options:
            statement = self._reading(statement, for_update, options)
        try:
            result = self.session.scalars(statement)
            first: T | None = (result.unique() if options else result).first()
        except TRANSLATED as exc:
            raise_translated(exc)
        return first

    def one(
        self,
        *where: ColumnElement[bool],
        for_update: ForUpdate = False,
        options: LoadOptions = (),
        **equals: Any,
    ) -> T:
        """The only object that matches.

        Raises:
            NotFoundError: None matches.
            MultipleResultsError: More than one matches.
        """
        found = self.get_one_or_none(*where, for_update=for_update, options=options, **equals)
        if found is None:
            raise NotFoundError(self.model, self._describe(where, equals))
        return found

    def get_one_or_none(
        self,
        *where: ColumnElement[bool],
        for_update: ForUpdate = False,
        options: LoadOptions = (),
        **equals: Any,
    ) -> T | None:
        """The only object that matches, or `None` when none does.

        Raises:
            MultipleResultsError: More than one matches.
        """
        statement = self._select(where, equals)
        if for_update is not False or options:
            statement = self._reading(statement, for_update, options)
        try:
            result = self.session.scalars(statement)
            found: T | None = (result.unique() if options else result).one_or_none()
        except sa_exc.MultipleResultsFound as exc:
            raise MultipleResultsError(self.model, self._describe(where, equals)) from exc
        except TRANSLATED as exc:
            raise_translated(exc)
        return found

    def count(self, *where: ColumnElement[bool], **equals: Any) -> int:
        """How many objects match."""
        statement = self._count(where, equals)
        try:
            count: int = self.session.scalar(statement) or 0
        except TRANSLATED as exc:
            raise_translated(exc)
        return count

    def exists(self, *where: ColumnElement[bool], **equals: Any) -> bool:
        """Whether at least one object matches."""
        statement = self._exists(where, equals)
        try:
            return bool(self.session.scalar(statement))
        except TRANSLATED as exc:
            raise_translated(exc)

    def list_and_count(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        limit: int | None = None,
        offset: int | None = None,
        options: LoadOptions = (),
        **equals: Any,
    ) -> tuple[builtins.list[T], int]:
        """A page of `list()` and how many objects match in all, in one round trip.

        `items, total = users.list_and_count(city="Beijing", order_by="name", limit=20, offset=40)`.
        The total comes with the page as a window function (`count(*) OVER ()`) on every backend;
        only a page past the end (or `limit=0`) costs a second query, a `count(*)`.
        """
        statement = self._select(where, equals, order_by, limit, offset)
        if options:
            statement = self._reading(statement, False, options)
        count = self._count(where, equals)
        try:
            found: tuple[builtins.list[T], int] = list_and_count(
                self.session, statement, count, limit, offset, bool(options)
            )
        except TRANSLATED as exc:
            raise_translated(exc)
        return found

    def page(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        limit: int = 50,
        after: str | None = None,
        before: str | None = None,
        options: LoadOptions = (),
        **equals: Any,
    ) -> Page[T]:
        """A page of the matches in keyset order, with cursors to the pages beside it.

        ```python
        first = users.page(order_by="-created", limit=20)
        second = users.page(order_by="-created", limit=20, after=first.next)
        back = users.page(order_by="-created", limit=20, before=second.previous)
        ```

        The page continues after (or before) the sort-key values of the row a cursor was made
        from, so rows inserted or deleted meanwhile never make a page repeat or skip a row (as
        `offset` does). `order_by` takes field names and the model's column attributes (or their
        `asc()`/`desc()`), of NOT NULL columns; the primary key is added as the last key where it
        is missing. Cursors are opaque strings signed for this model and order (see
        [`set_cursor_key()`][uow.set_cursor_key]); they carry the boundary row's sort-key values
        readably, like a URL would. The filters must be the same from page to page.

        Raises:
            InvalidArgumentError: A cursor was altered, made for another model or order, or signed
                with another key; `after` and `before` were both given; `limit` is not from 1 to
                2**31 - 2; an order key is nullable or not a column of the model.
            InvalidFieldError: An order key names no mapped column.
        """
        plan = self._page(where, equals, order_by, limit, after, before, options)
        try:
            found: Page[T] = read_page(self.session, plan)
        except TRANSLATED as exc:
            raise_translated(exc)
        return found
