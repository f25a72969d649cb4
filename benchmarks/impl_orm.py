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
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
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
    bulk_rows,
    category,
    name,
    page_checksum,
    score,
    w3_ident,
    w5_page,
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


class Orm(Implementation):
    name = "orm"

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.factory = sessionmaker(env.engine)

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

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.factory = async_sessionmaker(env.engine, expire_on_commit=False)

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
