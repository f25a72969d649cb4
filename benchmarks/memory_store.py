"""What a fresh in-memory store costs a test: `python -m benchmarks.memory_store`.

A test makes an `InMemoryStore` for a 10-table schema and runs one committing unit on it; this
prints the median wall-clock time of that, and of the store alone, over several rounds, and the
Python calls each makes (deterministic, unlike the times).
"""

from __future__ import annotations

import cProfile
import pstats
import statistics
import time
from collections.abc import Callable

from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table

from uow.testing import InMemoryStore, InMemoryUnitOfWork


def schema(tables: int = 10) -> MetaData:
    """`tables` tables, each but the first with a foreign key to the one before."""
    metadata = MetaData()
    for n in range(tables):
        parent = [Column("parent_id", ForeignKey(f"t{n - 1}.id"))] if n else []
        Table(f"t{n}", metadata, Column("id", Integer, primary_key=True), Column("name", String(20)), *parent)
    return metadata


def per_call(fn: Callable[[], object], n: int = 200, rounds: int = 5) -> float:
    """The median, over `rounds`, of the mean time of one call in milliseconds."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - started) / n)
    return statistics.median(times) * 1e3


def calls(fn: Callable[[], object], n: int = 50) -> float:
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(n):
        fn()
    profile.disable()
    return pstats.Stats(profile).total_calls / n  # type: ignore[attr-defined, no-any-return]


def main() -> None:
    metadata = schema()
    first = metadata.tables["t0"]

    def store() -> None:
        InMemoryStore(metadata)

    def store_and_unit() -> None:
        with InMemoryUnitOfWork(InMemoryStore(metadata)) as unit:
            unit.session.execute(first.insert().values(id=1, name="x"))
            unit.commit()

    store_and_unit()  # builds the schema's template once per process
    print("in-memory store, 10-table schema     ms per test  Python calls")
    for name, fn in (("store", store), ("store + one committing unit", store_and_unit)):
        print(f"{name:<36} {per_call(fn):>11.3f}  {calls(fn):>12.0f}")


if __name__ == "__main__":
    main()
