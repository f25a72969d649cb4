"""Plain SQLAlchemy ORM, sync and async: the baselines.

Sync: a ``sessionmaker`` of its own; ``with factory() as session, session.begin():`` frames a unit that
commits; reads use ``session.get`` and ``select()``; the reference scenario commits and rolls back as
it goes inside ``with factory() as session:``. Async: ``async_sessionmaker(engine,
expire_on_commit=False)`` and ``async with factory() as session, session.begin():``, as SQLAlchemy's
asyncio documentation shows.
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
            with factory() as session, session.begin():
                session.add(W1Item(name=name(i), category=category(i), score=score(i)))
        return n

    def w2(self, n: int, seeded: int) -> int:
        with self.factory() as session, session.begin():
            session.add_all([W2Item(**row) for row in bulk_rows(n)])
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
                session.rollback()
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
        with self.factory() as session, session.begin():
            session.execute(insert(W2Item), bulk_rows(n))
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
            async with factory() as session, session.begin():
                session.add(W1Item(name=name(i), category=category(i), score=score(i)))
        return n

    async def w2(self, n: int, seeded: int) -> int:
        async with self.factory() as session, session.begin():
            session.add_all([W2Item(**row) for row in bulk_rows(n)])
        return n

    async def w3(self, n: int, seeded: int) -> int:
        factory = self.factory
        total = 0
        for i in range(n):
            async with factory() as session:
                item = await session.get(W3Item, w3_ident(i, seeded))
                assert item is not None
                total += item.score
        return total

    async def w4(self, n: int, seeded: int) -> int:
        factory = self.factory
        inserted = 0
        for i in range(n):
            async with factory() as session:
                item = W4Item(name=name(i), category=category(i), score=score(i))
                session.add(item)
                await session.flush()
                inserted += item.id is not None
                await session.rollback()
        return inserted

    async def w5(self, n: int, seeded: int) -> int:
        factory = self.factory
        total = 0
        for q in range(n):
            async with factory() as session:
                items = (await session.scalars(page(*w5_page(q, seeded)))).all()
                total += page_checksum([item.id for item in items])
        return total

    async def w6(self, n: int, seeded: int) -> int:
        factory = self.factory
        found = 0
        for i in range(n):
            async with factory() as session:
                session.add(User(id=f"r{i}", name="Bob"))
                session.add(User(id=f"r{i}", name="LILY"))
                await session.rollback()

                session.add(User(id=f"u{i}", name="hanmeimei"))
                await session.commit()

                user = (await session.scalars(select(User).where(User.id == f"u{i}"))).one()
                found += user.name == "hanmeimei"
        return found


class OrmAsyncBulk(Implementation):
    name = "orm-async-bulk"
    flavour = "async"
    workloads = ("W2",)

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.factory = async_sessionmaker(env.engine, expire_on_commit=False)

    async def w2(self, n: int, seeded: int) -> int:
        async with self.factory() as session, session.begin():
            await session.execute(insert(W2Item), bulk_rows(n))
        return n
