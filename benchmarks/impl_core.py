"""SQLAlchemy Core: ``engine.begin()`` for writes, ``engine.connect()`` for reads; W2's baselines."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select

from benchmarks.base import Implementation
from benchmarks.models import TABLES, bulk_rows, category, name, page_checksum, score, w3_ident, w5_page
from benchmarks.settings import PAGE_SIZE

W1, W2, W3, W4, W5, USERS = (TABLES[key] for key in ("W1", "W2", "W3", "W4", "W5", "W6"))


class Core(Implementation):
    name = "core"

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.engine = env.engine

    def w1(self, n: int, seeded: int) -> int:
        engine = self.engine
        for i in range(n):
            with engine.begin() as connection:
                connection.execute(insert(W1), {"name": name(i), "category": category(i), "score": score(i)})
        return n

    def w2(self, n: int, seeded: int) -> int:
        with self.engine.begin() as connection:
            connection.execute(insert(W2), bulk_rows(n))
        return n

    def w3(self, n: int, seeded: int) -> int:
        engine = self.engine
        total = 0
        for i in range(n):
            with engine.connect() as connection:
                row = connection.execute(select(W3).where(W3.c.id == w3_ident(i, seeded))).one()
            total += row.score
        return total

    def w4(self, n: int, seeded: int) -> int:
        engine = self.engine
        inserted = 0
        for i in range(n):
            with engine.connect() as connection:
                result = connection.execute(
                    insert(W4), {"name": name(i), "category": category(i), "score": score(i)}
                )
                inserted += result.inserted_primary_key is not None
                connection.rollback()
        return inserted

    def w5(self, n: int, seeded: int) -> int:
        engine = self.engine
        total = 0
        for q in range(n):
            cat, offset = w5_page(q, seeded)
            statement = (
                select(W5)
                .where(W5.c.category == cat)
                .order_by(W5.c.score.desc(), W5.c.id)
                .limit(PAGE_SIZE)
                .offset(offset)
            )
            with engine.connect() as connection:
                ids = [row.id for row in connection.execute(statement)]
            total += page_checksum(ids)
        return total

    def w6(self, n: int, seeded: int) -> int:
        engine = self.engine
        found = 0
        for i in range(n):
            ident = f"u{i}"
            with engine.connect() as connection:
                connection.rollback()  # Bob and LILY never reached the database: nothing to send
                connection.execute(insert(USERS), {"id": ident, "name": "hanmeimei"})
                connection.commit()
                row = connection.execute(select(USERS).where(USERS.c.id == ident)).one()
            found += row.name == "hanmeimei"
        return found


class CoreAsync(Implementation):
    name = "core-async"
    flavour = "async"
    workloads = ("W2",)

    async def w2(self, n: int, seeded: int) -> int:
        async with self.env.engine.begin() as connection:
            await connection.execute(insert(W2), bulk_rows(n))
        return n
