"""Streaming: how far peak memory grows while ``Repository.stream`` reads a large table.

``python -m benchmarks stream`` fills ``bench_stream_item`` with one ``INSERT ... SELECT`` generated
by the database, then starts a fresh process that, after a warm-up read of two batches, resets its
peak resident set size to the current one, reads every row as ORM objects through
``unit.repository(StreamItem).stream(batch_size=1000)``, and reports how far the peak rose. Resident
memory counts the driver's and SQLite's allocations too, which tracemalloc would miss; the peak is
the kernel's ``VmHWM``, reset through ``/proc/self/clear_refs`` (Linux). As a control that the method
sees growth when there is some, the child then keeps up to 100,000 rows loaded with ``list()``.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.orm import DeclarativeBase, sessionmaker

from benchmarks.models import Item, score

BATCH = 1_000
CONTROL_ROWS = 100_000
LIMIT_MB = 50.0
_FILL = {
    "postgresql": "INSERT INTO bench_stream_item (id, name, category, score) "
    "SELECT g, 'item-' || lpad(g::text, 7, '0'), 'c' || (g % 10), (g * 37) % 1000 "
    "FROM generate_series(1, :rows) AS g",
    "sqlite": "WITH RECURSIVE g(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM g WHERE k < :rows) "
    "INSERT INTO bench_stream_item (id, name, category, score) "
    "SELECT k, 'item-' || printf('%07d', k), 'c' || (k % 10), (k * 37) % 1000 FROM g",
}


class StreamBase(DeclarativeBase):
    metadata = MetaData()


class StreamItem(Item, StreamBase):
    __tablename__ = "bench_stream_item"


def _peak_mb(reset: bool = False) -> float:
    """Peak resident set size in MB (``VmHWM``); with ``reset``, first make it the current size."""
    if reset:
        Path("/proc/self/clear_refs").write_text("5")
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmHWM")


def child(url: str, connect_args: dict[str, Any]) -> dict[str, Any]:
    """Stream every row; the count, a checksum, seconds, and the growth of the peak (and the control's)."""
    from uow import UnitOfWork

    engine = create_engine(url, connect_args=connect_args)
    factory = sessionmaker(engine)
    with UnitOfWork(factory) as unit:  # warm-up: imports, statement cache, driver buffers
        iterator = unit.repository(StreamItem).stream(batch_size=BATCH)
        for _ in zip(range(2 * BATCH), iterator, strict=False):
            pass
        iterator.close()  # type: ignore[attr-defined]  # a generator
    gc.collect()
    baseline, started, rows, checksum = _peak_mb(reset=True), time.perf_counter(), 0, 0
    with UnitOfWork(factory) as unit:
        for item in unit.repository(StreamItem).stream(batch_size=BATCH):
            rows, checksum = rows + 1, checksum + item.score
    seconds, growth = time.perf_counter() - started, _peak_mb() - baseline
    gc.collect()
    kept, control_baseline = min(CONTROL_ROWS, rows // 2), _peak_mb(reset=True)
    with UnitOfWork(factory) as unit:
        loaded = unit.repository(StreamItem).list(StreamItem.id <= kept)
        control = _peak_mb() - control_baseline
        assert len(loaded) == kept, f"the control read {len(loaded)} rows, expected {kept}"
    engine.dispose()
    return {
        "rows": rows,
        "checksum": checksum,
        "seconds": seconds,
        "growth": growth,
        "kept": kept,
        "control": control,
    }


def main(backends: list[str], rows: int) -> int:
    """Measure on each backend and print a Markdown table; 1 if a run failed or read a wrong result."""
    from benchmarks.envs import private_backend

    print("| backend | rows | seconds | peak growth MB | limit MB | control: rows kept | control growth MB |")
    print("|---|---|---|---|---|---|---|")
    failed = 0
    for name in backends:
        with private_backend(name) as backend:
            engine = create_engine(backend.sync_url, connect_args=backend.sync_args)
            StreamBase.metadata.create_all(engine)
            with engine.begin() as connection:
                connection.execute(text(_FILL[engine.dialect.name]), {"rows": rows})
            engine.dispose()
            arguments = [backend.sync_url, json.dumps(backend.sync_args)]
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.stream", *arguments],
                capture_output=True,
                text=True,
                check=False,
            )
            result = json.loads(done.stdout) if done.returncode == 0 else None
            if (
                result is None
                or result["rows"] != rows
                or result["checksum"] != sum(score(k) for k in range(1, rows + 1))
            ):
                failed = 1
                print(f"| {name} | FAILED: {(done.stderr.strip().splitlines() or ['wrong result'])[-1]} |")
                continue
            cells = [f"{rows:,}", f"{result['seconds']:.1f}", f"{result['growth']:.1f}", f"{LIMIT_MB:g}"]
            print("| " + " | ".join([name, *cells, f"{result['kept']:,}", f"{result['control']:.1f}"]) + " |")
    return failed


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], json.loads(sys.argv[2]))))
