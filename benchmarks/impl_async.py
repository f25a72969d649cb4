"""The async flavour: plain ``AsyncSession`` (the baseline), uow's ``AsyncUnitOfWork``, and Core for W2.

Plain SQLAlchemy follows its asyncio documentation: ``async_sessionmaker(engine,
expire_on_commit=False)`` and ``async with factory() as session, session.begin():``. uow's async unit
keeps loaded objects after commit by default, which is the same setting.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from benchmarks.base import OBJECTS_PER_ROW, Implementation
from benchmarks.models import (
    TABLES,
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
from uow import AsyncUnitOfWork

ORDER = ("-score", "id")


class CoreAsync(Implementation):
    name = "core-async"
    flavour = "async"
    description = "SQLAlchemy Core on AsyncConnection (W2's async reference)"
    workloads = ("W2",)

    async def w2(self, n: int, seeded: int) -> int:
        async with self.env.engine.begin() as connection:
            await connection.execute(insert(TABLES["W2"]), bulk_rows(n))
        return n


class OrmAsync(Implementation):
    name = "orm-async"
    flavour = "async"
    description = "plain SQLAlchemy AsyncSession (the async baseline); W2: add_all"
    scale = OBJECTS_PER_ROW

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
            cat, offset = w5_page(q, seeded)
            statement = (
                select(W5Item)
                .where(W5Item.category == cat)
                .order_by(W5Item.score.desc(), W5Item.id)
                .limit(PAGE_SIZE)
                .offset(offset)
            )
            async with factory() as session:
                items = (await session.scalars(statement)).all()
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
    description = "plain AsyncSession bulk INSERT: session.execute(insert(Model), rows)"
    workloads = ("W2",)

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.factory = async_sessionmaker(env.engine, expire_on_commit=False)

    async def w2(self, n: int, seeded: int) -> int:
        async with self.factory() as session, session.begin():
            await session.execute(insert(W2Item), bulk_rows(n))
        return n


class UowAsync(Implementation):
    name = "uow-async"
    flavour = "async"
    description = "uow AsyncUnitOfWork + AsyncRepository; W2: insert_many"

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.factory = async_sessionmaker(env.engine)

    async def w1(self, n: int, seeded: int) -> int:
        factory = self.factory
        for i in range(n):
            async with AsyncUnitOfWork(factory) as unit:
                await unit.repository(W1Item).add(W1Item(name=name(i), category=category(i), score=score(i)))
                await unit.commit()
        return n

    async def w2(self, n: int, seeded: int) -> int:
        async with AsyncUnitOfWork(self.factory) as unit:
            inserted = await unit.repository(W2Item).insert_many(bulk_rows(n))
            await unit.commit()
        return inserted

    async def w3(self, n: int, seeded: int) -> int:
        factory = self.factory
        total = 0
        for i in range(n):
            async with AsyncUnitOfWork(factory) as unit:
                item = await unit.repository(W3Item).get(w3_ident(i, seeded))
                assert item is not None
                total += item.score
        return total

    async def w4(self, n: int, seeded: int) -> int:
        factory = self.factory
        inserted = 0
        for i in range(n):
            async with AsyncUnitOfWork(factory) as unit:
                item = await unit.repository(W4Item).add(
                    W4Item(name=name(i), category=category(i), score=score(i))
                )
                await unit.session.flush()
                inserted += item.id is not None
                await unit.rollback()
        return inserted

    async def w5(self, n: int, seeded: int) -> int:
        factory = self.factory
        total = 0
        for q in range(n):
            cat, offset = w5_page(q, seeded)
            async with AsyncUnitOfWork(factory) as unit:
                items = await unit.repository(W5Item).list(
                    category=cat, order_by=ORDER, limit=PAGE_SIZE, offset=offset
                )
                total += page_checksum([item.id for item in items])
        return total

    async def w6(self, n: int, seeded: int) -> int:
        factory = self.factory
        found = 0
        for i in range(n):
            async with AsyncUnitOfWork(factory) as unit:
                users = unit.repository(User)

                await users.add(User(id=f"r{i}", name="Bob"))
                await users.add(User(id=f"r{i}", name="LILY"))
                await unit.rollback()

                await users.add(User(id=f"u{i}", name="hanmeimei"))
                await unit.commit()

                user = await users.one(id=f"u{i}")
                found += user.name == "hanmeimei"
        return found
