"""The tables, one per workload, the data every implementation writes and reads, and what it returns.

Each workload has a table of its own; the writing ones are emptied before every run, the reading ones
(W3, W5) are filled once with :func:`seed_rows`. W6's ``User`` has the columns of the reference
scenario's model (:mod:`uow.examples.users`), declared here so that a process measuring plain
SQLAlchemy never imports uow.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Index, MetaData, String, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from benchmarks.settings import CATEGORIES, PAGE_SIZE


class Base(DeclarativeBase):
    metadata = MetaData()


class Item:
    """The columns of every item table: an autoincrement key, a name, a category and a score."""

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    category: Mapped[str] = mapped_column(String(20))
    score: Mapped[int]


class W1Item(Item, Base):
    __tablename__ = "bench_w1_item"


class W2Item(Item, Base):
    __tablename__ = "bench_w2_item"


class W3Item(Item, Base):
    __tablename__ = "bench_w3_item"


class W4Item(Item, Base):
    __tablename__ = "bench_w4_item"


class W5Item(Item, Base):
    __tablename__ = "bench_w5_item"
    __table_args__ = (Index("ix_bench_w5_item_page", "category", "score", "id"),)


class User(Base):
    __tablename__ = "user"

    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(20))


MODELS: dict[str, type[Any]] = {
    "W1": W1Item,
    "W2": W2Item,
    "W3": W3Item,
    "W4": W4Item,
    "W5": W5Item,
    "W6": User,
}
TABLES: dict[str, Table] = {key: model.__table__ for key, model in MODELS.items()}


def name(k: int) -> str:
    return f"item-{k:07d}"


def category(k: int) -> str:
    return f"c{k % CATEGORIES}"


def score(k: int) -> int:
    return (k * 37) % 1000


@cache
def seed_rows(rows: int) -> list[dict[str, Any]]:
    """The content of the tables that W3 and W5 read: ids 1 to ``rows``."""
    return [
        {"id": k, "name": name(k), "category": category(k), "score": score(k)} for k in range(1, rows + 1)
    ]


@cache
def bulk_rows(rows: int) -> list[dict[str, Any]]:
    """What W2 inserts, as mappings of field names (the keys are left to the database)."""
    return [{"name": name(k), "category": category(k), "score": score(k)} for k in range(rows)]


@cache
def bulk_tuples(rows: int) -> list[tuple[str, str, int]]:
    """What W2 inserts, as the raw driver takes it."""
    return [(name(k), category(k), score(k)) for k in range(rows)]


def w3_ident(i: int, seeded: int) -> int:
    """The key that the ``i``-th read of W3 asks for: spread over the table, never cached twice in a row."""
    return (i * 7919) % seeded + 1


def w3_expected(reads: int, seeded: int) -> int:
    """The sum of the scores that W3's reads find."""
    return sum(score(w3_ident(i, seeded)) for i in range(reads))


def w5_page(q: int, seeded: int) -> tuple[str, int]:
    """The category and offset of the ``q``-th query of W5: every category, every page in turn."""
    pages = max(1, seeded // CATEGORIES // PAGE_SIZE)
    return f"c{q % CATEGORIES}", (q // CATEGORIES % pages) * PAGE_SIZE


@cache
def _pages(seeded: int) -> dict[str, list[int]]:
    """The ids of each category in W5's order: score descending, then id."""
    ordered: dict[str, list[int]] = {}
    for k in sorted(range(1, seeded + 1), key=lambda k: (-score(k), k)):
        ordered.setdefault(category(k), []).append(k)
    return ordered


def w5_expected(queries: int, seeded: int) -> int:
    """The sum, over W5's queries, of the ids on each page weighted by their position on it.

    Weighting by position makes a wrong order as visible as a wrong row.
    """
    ordered = _pages(seeded)
    total = 0
    for q in range(queries):
        cat, offset = w5_page(q, seeded)
        total += page_checksum(ordered[cat][offset : offset + PAGE_SIZE])
    return total


def page_checksum(ids: list[int]) -> int:
    return sum(position * ident for position, ident in enumerate(ids, 1))


def expected(workload: str, n: int, seeded: int) -> tuple[int, int]:
    """What a run of ``workload`` of size ``n`` returns, and how many rows its table holds afterwards."""
    if workload == "W3":
        return w3_expected(n, seeded), seeded
    if workload == "W5":
        return w5_expected(n, seeded), seeded
    return n, 0 if workload == "W4" else n
