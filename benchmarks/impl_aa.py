"""advanced-alchemy's ``SQLAlchemySyncRepository``, with the session handled as its documentation shows.

The session comes from ``SQLAlchemySyncConfig(engine_instance=engine).get_session()`` (which brings
the listeners advanced-alchemy registers on its sessionmaker) and a repository is made per session as
``PostRepository(session=db_session)``. Two choices keep the SQL the same as the other
implementations': ``auto_refresh=False`` on ``add`` (its default re-SELECTs the row just written), and,
in the reference scenario, ``session.add`` for Bob and LILY, because the repository's ``add`` always
flushes and their clashing keys would then fail before the rollback.
"""

from __future__ import annotations

from typing import Any

from advanced_alchemy.config import SQLAlchemySyncConfig
from advanced_alchemy.filters import LimitOffset
from advanced_alchemy.repository import SQLAlchemySyncRepository

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


class W1Repository(SQLAlchemySyncRepository[W1Item]):
    model_type = W1Item


class W2Repository(SQLAlchemySyncRepository[W2Item]):
    model_type = W2Item


class W3Repository(SQLAlchemySyncRepository[W3Item]):
    model_type = W3Item


class W4Repository(SQLAlchemySyncRepository[W4Item]):
    model_type = W4Item


class W5Repository(SQLAlchemySyncRepository[W5Item]):
    model_type = W5Item


class UserRepository(SQLAlchemySyncRepository[User]):
    model_type = User


class AdvancedAlchemy(Implementation):
    name = "advanced-alchemy"

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.config = SQLAlchemySyncConfig(engine_instance=env.engine)
        self.session = self.config.get_session

    def w1(self, n: int, seeded: int) -> int:
        for i in range(n):
            with self.session() as db_session:
                repository = W1Repository(session=db_session)
                repository.add(
                    W1Item(name=name(i), category=category(i), score=score(i)),
                    auto_commit=True,
                    auto_refresh=False,
                )
        return n

    def w2(self, n: int, seeded: int) -> int:
        with self.session() as db_session:
            repository = W2Repository(session=db_session)
            added = repository.add_many([W2Item(**row) for row in bulk_rows(n)], auto_commit=True)
        return len(added)

    def w3(self, n: int, seeded: int) -> int:
        total = 0
        for i in range(n):
            with self.session() as db_session:
                repository = W3Repository(session=db_session)
                total += repository.get(w3_ident(i, seeded)).score
        return total

    def w4(self, n: int, seeded: int) -> int:
        inserted = 0
        for i in range(n):
            with self.session() as db_session:
                repository = W4Repository(session=db_session)
                item = repository.add(
                    W4Item(name=name(i), category=category(i), score=score(i)), auto_refresh=False
                )
                inserted += item.id is not None
                db_session.rollback()
        return inserted

    def w5(self, n: int, seeded: int) -> int:
        total = 0
        for q in range(n):
            cat, offset = w5_page(q, seeded)
            with self.session() as db_session:
                repository = W5Repository(session=db_session)
                items = repository.get_many(
                    W5Item.category == cat,
                    LimitOffset(limit=PAGE_SIZE, offset=offset),
                    order_by=[(W5Item.score, True), (W5Item.id, False)],
                )
                total += page_checksum([item.id for item in items])
        return total

    def w6(self, n: int, seeded: int) -> int:
        found = 0
        for i in range(n):
            with self.session() as db_session:
                users = UserRepository(session=db_session)

                db_session.add(User(id=f"r{i}", name="Bob"))
                db_session.add(User(id=f"r{i}", name="LILY"))
                db_session.rollback()

                users.add(User(id=f"u{i}", name="hanmeimei"), auto_commit=True, auto_refresh=False)

                user = users.get_one(id=f"u{i}")
                found += user.name == "hanmeimei"
        return found
