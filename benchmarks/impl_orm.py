"""Plain SQLAlchemy ORM, sync and async: the baselines, in the cheapest form a careful user writes.

Each form was chosen by counting instructions against the alternatives (docs/benchmarks.md has the
numbers). Sync: a ``sessionmaker`` of its own and ``with factory() as session:``; a unit that
commits calls ``session.commit()``; W4 leaves its rollback to ``close()``, which rolls back what was
not committed, as an explicit ``session.rollback()`` first costs about 9% more; reads use
``session.get`` and a ``select()`` built where it is used.

Async: ``async_sessionmaker(engine, expire_on_commit=False)`` as SQLAlchemy's asyncio documentation
shows, but every session is closed by ``await session.close()`` in a ``finally`` clause rather than
by ``async with``: ``AsyncSession.__aexit__`` runs the close in a new task shielded from cancellation,
about 90,000 instructions a unit more; ``await session.commit()`` rather than ``async with
session.begin()``, which costs about 50,000 more.

W7 and W8 are what uow's ``upsert_many`` and ``page`` do, written by hand: the dialect's ``INSERT ...
ON CONFLICT (id) DO UPDATE ... RETURNING`` loaded with ``populate_existing``, and a keyset ``select()``
whose boundary is the previous page's last ``(score, id)``, kept as a tuple (uow signs and encodes it
as a cursor string, and decodes and verifies it on the next page).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import sessionmaker

from benchmarks.base import Implementation
from benchmarks.models import (
    User,
    W1Item,
    W2Item,
    W3Item,
    W4Item,
    W5Item,
    W7Item,
    W8Item,
    bulk_rows,
    category,
    name,
    page_checksum,
    score,
    w3_ident,
    w5_page,
    w7_checksum,
    w7_rows,
)
from benchmarks.settings import PAGE_SIZE


def page(cat: str, offset: int) -> Any:
    return (
        select(W5Item)
        .where(W5Item.category == cat)
        .order_by(W5Item.score.desc(), W5Item.id)
        .limit(PAGE_SIZE)
        .offset(offset)
    )


POPULATE = {"populate_existing": True}
DIALECT_INSERT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def upsert(native_insert: Any, rows: list[dict[str, Any]]) -> Any:
    statement = native_insert(W7Item).values(rows)
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[W7Item.id],
        set_={"name": excluded.name, "category": excluded.category, "score": excluded.score},
    ).returning(W7Item)


def keyset_page(after: tuple[int, int] | None) -> Any:
    statement = select(W8Item)
    if after is not None:
        statement = statement.where(tuple_(W8Item.score, W8Item.id) > tuple_(*after))
    return statement.order_by(W8Item.score, W8Item.id).limit(PAGE_SIZE + 1)


def following(rows: Any) -> tuple[list[Any], tuple[int, int] | None]:
    """A page's items, and the boundary of the next page (``None`` after the last)."""
    items = rows[:PAGE_SIZE]
    return items, (items[-1].score, items[-1].id) if len(rows) > PAGE_SIZE else None


class Orm(Implementation):
    name = "orm"
    workloads = (*Implementation.workloads, "W7", "W8")

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.factory = sessionmaker(env.engine)
        self.native_insert = DIALECT_INSERT[env.dialect]

    def w1(self, n: int, seeded: int) -> int:
        factory = self.factory
        for i in range(n):
            with factory() as session:
                session.add(W1Item(name=name(i), category=category(i), score=score(i)))
                session.commit()
        return n

    def w2(self, n: int, seeded: int) -> int:
        with self.factory() as session:
            session.add_all([W2Item(**row) for row in bulk_rows(n)])
            session.commit()
        return n

    def w3(self, n: int, seeded: int) -> int:
        factory = self.factory
        total = 0
        for i in range(n):
            with factory() as session:
                item = session.get(W3Item, w3_ident(i, seeded))
                assert item is not None
                total += item.score
        return total

    def w4(self, n: int, seeded: int) -> int:
        factory = self.factory
        inserted = 0
        for i in range(n):
            with factory() as session:
                item = W4Item(name=name(i), category=category(i), score=score(i))
                session.add(item)
                session.flush()
                inserted += item.id is not None
        return inserted

    def w5(self, n: int, seeded: int) -> int:
        factory = self.factory
        total = 0
        for q in range(n):
            with factory() as session:
                items = session.scalars(page(*w5_page(q, seeded))).all()
                total += page_checksum([item.id for item in items])
        return total

    def w6(self, n: int, seeded: int) -> int:
        factory = self.factory
        found = 0
        for i in range(n):
            with factory() as session:
                session.add(User(id=f"r{i}", name="Bob"))
                session.add(User(id=f"r{i}", name="LILY"))
                session.rollback()

                session.add(User(id=f"u{i}", name="hanmeimei"))
                session.commit()

                user = session.scalars(select(User).where(User.id == f"u{i}")).one()
                found += user.name == "hanmeimei"
        return found

    def w7(self, n: int, seeded: int) -> int:
        factory, native_insert = self.factory, self.native_insert
        total = 0
        for i in range(n):
            with factory() as session:
                items = session.scalars(upsert(native_insert, w7_rows(i)), execution_options=POPULATE).all()
                total += w7_checksum(items)
                session.commit()
        return total

    def w8(self, n: int, seeded: int) -> int:
        factory = self.factory
        total = 0
        after = None
        for _ in range(n):
            with factory() as session:
                items, after = following(session.scalars(keyset_page(after)).all())
                total += page_checksum([item.id for item in items])
        return total


class OrmBulk(Implementation):
    """W2 with the ORM's bulk INSERT: ``session.execute(insert(Model), rows)``."""

    name = "orm-bulk"
    workloads = ("W2",)

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.factory = sessionmaker(env.engine)

    def w2(self, n: int, seeded: int) -> int:
        with self.factory() as session:
            session.execute(insert(W2Item), bulk_rows(n))
            session.commit()
        return n


class OrmAsync(Implementation):
    name = "orm-async"
    flavour = "async"
    workloads = (*Implementation.workloads, "W7", "W8")

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.factory = async_sessionmaker(env.engine, expire_on_commit=False)
        self.native_insert = DIALECT_INSERT[env.dialect]

    async def w1(self, n: int, seeded: int) -> int:
        factory = self.factory
        for i in range(n):
            session = factory()
            try:
                session.add(W1Item(name=name(i), category=category(i), score=score(i)))
                await session.commit()
            finally:
                await session.close()
        return n

    async def w2(self, n: int, seeded: int) -> int:
        session = self.factory()
        try:
            session.add_all([W2Item(**row) for row in bulk_rows(n)])
            await session.commit()
        finally:
            await session.close()
        return n

    async def w3(self, n: int, seeded: int) -> int:
        factory = self.factory
        total = 0
        for i in range(n):
            session = factory()
            try:
                item = await session.get(W3Item, w3_ident(i, seeded))
                assert item is not None
                total += item.score
            finally:
                await session.close()
        return total

    async def w4(self, n: int, seeded: int) -> int:
        factory = self.factory
        inserted = 0
        for i in range(n):
            session = factory()
            try:
                item = W4Item(name=name(i), category=category(i), score=score(i))
                session.add(item)
                await session.flush()
                inserted += item.id is not None
            finally:
                await session.close()
        return inserted

    async def w5(self, n: int, seeded: int) -> int:
        factory = self.factory
        total = 0
        for q in range(n):
            session = factory()
            try:
                items = (await session.scalars(page(*w5_page(q, seeded)))).all()
                total += page_checksum([item.id for item in items])
            finally:
                await session.close()
        return total

    async def w6(self, n: int, seeded: int) -> int:
        factory = self.factory
        found = 0
        for i in range(n):
            session = factory()
            try:
                session.add(User(id=f"r{i}", name="Bob"))
                session.add(User(id=f"r{i}", name="LILY"))
                await session.rollback()

                session.add(User(id=f"u{i}", name="hanmeimei"))
                await session.commit()

                user = (await session.scalars(select(User).where(User.id == f"u{i}"))).one()
                found += user.name == "hanmeimei"
            finally:
                await session.close()
        return found

    async def w7(self, n: int, seeded: int) -> int:
        factory, native_insert = self.factory, self.native_insert
        total = 0
        for i in range(n):
            session = factory()
            try:
                statement = upsert(native_insert, w7_rows(i))
                items = (await session.scalars(statement, execution_options=POPULATE)).all()
                total += w7_checksum(items)
                await session.commit()
            finally:
                await session.close()
        return total

    async def w8(self, n: int, seeded: int) -> int:
        factory = self.factory
        total = 0
        after = None
        for _ in range(n):
            session = factory()
            try:
                items, after = following((await session.scalars(keyset_page(after))).all())
                total += page_checksum([item.id for item in items])
            finally:
                await session.close()
        return total


class OrmAsyncBulk(Implementation):
    """W2 with the ORM's bulk INSERT on an ``AsyncSession``."""

    name = "orm-async-bulk"
    flavour = "async"
    workloads = ("W2",)

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.factory = async_sessionmaker(env.engine, expire_on_commit=False)

    async def w2(self, n: int, seeded: int) -> int:
        session = self.factory()
        try:
            await session.execute(insert(W2Item), bulk_rows(n))
            await session.commit()
        finally:
            await session.close()
        return n
