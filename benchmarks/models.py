"""The tables, one per workload, the data every implementation writes and reads, and what it returns.

Each workload has a table of its own; the writing ones are emptied before every run (W7's then
holds the first half of its first upsert), the reading ones (W3, W5, W8) are filled once with
:func:`seed_rows`. W6's ``User`` has the columns of the reference
scenario's model (:mod:`uow.examples.users`), declared here so that a process measuring plain
SQLAlchemy never imports uow.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Index, MetaData, String, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from benchmarks.settings import CATEGORIES, PAGE_SIZE, UPSERT_ROWS


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


class W7Item(Item, Base):
    __tablename__ = "bench_w7_item"


class W8Item(Item, Base):
    __tablename__ = "bench_w8_item"
    __table_args__ = (Index("ix_bench_w8_item_keyset", "score", "id"),)


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
    "W7": W7Item,
    "W8": W8Item,
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


W7_SEEDED = UPSERT_ROWS // 2
"""Rows in W7's table before each run: ids 1 to 50, the first half of the first upsert."""


def w7_rows(i: int) -> list[dict[str, Any]]:
    """The rows of W7's ``i``-th upsert: ids ``50i + 1`` to ``50i + 100``, the first half already stored
    (by the previous upsert, or seeded), each with a score that no earlier write gave it."""
    first = i * W7_SEEDED + 1
    return [
        {"id": k, "name": name(k), "category": category(k), "score": (k * 37 + i * 11 + 1) % 1000}
        for k in range(first, first + UPSERT_ROWS)
    ]


def w7_checksum(items: Any) -> int:
    """The sum of id times score over what an upsert returned: a row not written, or written with
    a stale score, changes it."""
    return sum(item.id * item.score for item in items)


def w7_expected(upserts: int) -> int:
    return sum(row["id"] * row["score"] for i in range(upserts) for row in w7_rows(i))


@cache
def _keyset_order(seeded: int) -> list[int]:
    """The ids of W8's table in its keyset order: score, then id."""
    return sorted(range(1, seeded + 1), key=lambda k: (score(k), k))


def w8_expected(pages: int, seeded: int) -> int:
    """The weighted sum of the ids on each of W8's pages: one walk through the table from its start,
    started again after the last page."""
    ordered = _keyset_order(seeded)
    count = -(-seeded // PAGE_SIZE)
    total = 0
    for q in range(pages):
        start = q % count * PAGE_SIZE
        total += page_checksum(ordered[start : start + PAGE_SIZE])
    return total


def expected(workload: str, n: int, seeded: int) -> tuple[int, int]:
    """What a run of ``workload`` of size ``n`` returns, and how many rows its table holds afterwards."""
    if workload == "W3":
        return w3_expected(n, seeded), seeded
    if workload == "W5":
        return w5_expected(n, seeded), seeded
    if workload == "W7":
        return w7_expected(n), W7_SEEDED * (n + 1)
    if workload == "W8":
        return w8_expected(n, seeded), seeded
    return n, 0 if workload == "W4" else n
