"""uow's units and repositories, sync and async, as its documentation shows them.

A new ``UnitOfWork`` (``AsyncUnitOfWork``) per unit on a session factory of its own; the async one
keeps loaded objects after commit by default, as the async baseline's factory does. W2 uses
``insert_many`` (one Core INSERT executed with all rows); W7 ``upsert_many``; W8 ``page``, each page
continuing from the cursor of the one before.
"""

from __future__ import annotations

from typing import Any

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
from uow import AsyncUnitOfWork, UnitOfWork

ORDER = ("-score", "id")
KEYSET = ("score", "id")
ON = ("id",)


class Uow(Implementation):
    name = "uow"
    workloads = (*Implementation.workloads, "W7", "W8")

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.factory = sessionmaker(env.engine)

    def w1(self, n: int, seeded: int) -> int:
        factory = self.factory
        for i in range(n):
            with UnitOfWork(factory) as unit:
                unit.repository(W1Item).add(W1Item(name=name(i), category=category(i), score=score(i)))
                unit.commit()
        return n

    def w2(self, n: int, seeded: int) -> int:
        with UnitOfWork(self.factory) as unit:
            inserted = unit.repository(W2Item).insert_many(bulk_rows(n))
            unit.commit()
        return inserted

    def w3(self, n: int, seeded: int) -> int:
        factory = self.factory
        total = 0
        for i in range(n):
            with UnitOfWork(factory) as unit:
                item = unit.repository(W3Item).get(w3_ident(i, seeded))
                assert item is not None
                total += item.score
        return total

    def w4(self, n: int, seeded: int) -> int:
        factory = self.factory
        inserted = 0
        for i in range(n):
            with UnitOfWork(factory) as unit:
                item = unit.repository(W4Item).add(W4Item(name=name(i), category=category(i), score=score(i)))
                unit.session.flush()
                inserted += item.id is not None
                unit.rollback()
        return inserted

    def w5(self, n: int, seeded: int) -> int:
        factory = self.factory
        total = 0
        for q in range(n):
            cat, offset = w5_page(q, seeded)
            with UnitOfWork(factory) as unit:
                items = unit.repository(W5Item).list(
                    category=cat, order_by=ORDER, limit=PAGE_SIZE, offset=offset
                )
                total += page_checksum([item.id for item in items])
        return total

    def w6(self, n: int, seeded: int) -> int:
        factory = self.factory
        found = 0
        for i in range(n):
            with UnitOfWork(factory) as unit:
                users = unit.repository(User)

                users.add(User(id=f"r{i}", name="Bob"))
                users.add(User(id=f"r{i}", name="LILY"))
                unit.rollback()

                users.add(User(id=f"u{i}", name="hanmeimei"))
                unit.commit()

                user = users.one(id=f"u{i}")
                found += user.name == "hanmeimei"
        return found

    def w7(self, n: int, seeded: int) -> int:
        factory = self.factory
        total = 0
        for i in range(n):
            with UnitOfWork(factory) as unit:
                items = unit.repository(W7Item).upsert_many(w7_rows(i), on=ON)
                total += w7_checksum(items)
                unit.commit()
        return total

    def w8(self, n: int, seeded: int) -> int:
        factory = self.factory
        total = 0
        cursor = None
        for _ in range(n):
            with UnitOfWork(factory) as unit:
                page = unit.repository(W8Item).page(order_by=KEYSET, limit=PAGE_SIZE, after=cursor)
                total += page_checksum([item.id for item in page.items])
                cursor = page.next
        return total


class UowAsync(Implementation):
    name = "uow-async"
    flavour = "async"
    workloads = (*Implementation.workloads, "W7", "W8")

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

    async def w7(self, n: int, seeded: int) -> int:
        factory = self.factory
        total = 0
        for i in range(n):
            async with AsyncUnitOfWork(factory) as unit:
                items = await unit.repository(W7Item).upsert_many(w7_rows(i), on=ON)
                total += w7_checksum(items)
                await unit.commit()
        return total

    async def w8(self, n: int, seeded: int) -> int:
        factory = self.factory
        total = 0
        cursor = None
        for _ in range(n):
            async with AsyncUnitOfWork(factory) as unit:
                page = await unit.repository(W8Item).page(order_by=KEYSET, limit=PAGE_SIZE, after=cursor)
                total += page_checksum([item.id for item in page.items])
                cursor = page.next
        return total
