"""uow's :class:`~uow.UnitOfWork` and :class:`~uow.Repository`, as its documentation shows them.

A new ``UnitOfWork`` per unit on a ``sessionmaker`` of its own (so that uow's session listeners
never touch the baseline's sessions); W2 uses :meth:`~uow.Repository.insert_many`.
"""

from __future__ import annotations

from typing import Any

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
from uow import UnitOfWork

ORDER = ("-score", "id")


class Uow(Implementation):
    name = "uow"
    description = "uow UnitOfWork + Repository; W2: Repository.insert_many"

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
