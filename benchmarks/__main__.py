"""``python -m benchmarks count``: instructions and wall-clock per operation; ``... stream``: memory.

Exits 1 when a workload crashes or returns a wrong result; a missed target never fails it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import count, importtime, report, stream, wall
from benchmarks.base import IMPLEMENTATIONS, load
from benchmarks.settings import BACKEND_NAMES, COUNT_SIZES, SEED_ROWS, WORKLOADS

QUICK_COUNTED = ("core", "orm", "uow", "orm-async", "uow-async")
"""What quick mode counts, on the first backend only; it runs everything else natively, checked."""


def _names(known: Sequence[str], what: str) -> Callable[[str], list[str]]:
    def parse(value: str) -> list[str]:
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in known and ":" not in name]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(unknown)}; choose from {known}")
        return names

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    commands = p.add_subparsers(dest="command", required=True)
    c = commands.add_parser("count", help="instructions (callgrind) and wall-clock (pyperf) per operation")
    c.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, one layout, no pyperf; every implementation runs natively as a check, and "
        "the uow and plain ones are counted on the first backend only: what CI runs",
    )
    c.add_argument("--backends", type=_names(BACKEND_NAMES, "backend"), default=list(BACKEND_NAMES))
    c.add_argument("--only", type=_names(list(WORKLOADS), "workload"), default=list(WORKLOADS))
    c.add_argument(
        "--implementations",
        type=_names(list(IMPLEMENTATIONS), "implementation"),
        default=list(IMPLEMENTATIONS),
        help="registered names, or module:Class for one of your own",
    )
    c.add_argument("--layouts", type=int, help="processes per count (default 5; quick 1)")
    c.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)), help="processes counted at once")
    c.add_argument("--no-wall", action="store_true", help="no pyperf runs")
    c.add_argument("--no-import", action="store_true", help="no import measurement")
    c.add_argument("--pyperf", default="--processes 3 --values 3", help="pyperf's options (%(default)s)")
    c.add_argument("--json", type=Path, help="also write the raw results to this file")
    s = commands.add_parser("stream", help="peak memory growth while Repository.stream reads a large table")
    s.add_argument("--backends", type=_names(BACKEND_NAMES, "backend"), default=["sqlite-file", "postgresql"])
    s.add_argument("--rows", type=int, default=1_000_000)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    options = parser().parse_args(argv)
    if options.command == "stream":
        return stream.main(options.backends, options.rows)
    started = time.perf_counter()
    mode = "quick" if options.quick else "full"
    layouts = options.layouts or (1 if options.quick else 5)
    sizes = {key: n for key, n in COUNT_SIZES[mode].items() if key in options.only}
    seeded, names, backends = SEED_ROWS[mode], options.implementations, options.backends
    missing = count.valgrind_missing()
    notes, problems = [missing] if missing else [], []

    probes = []
    if options.quick or missing:  # every implementation on every backend, run natively: the checks
        probes += [count.Probe(b, tuple(names), sizes, seeded, counted=False) for b in backends]
    if not missing:
        counted = [n for n in names if n in QUICK_COUNTED] if options.quick else names
        probes += [
            count.Probe(b, (name,), sizes, seeded, layout)
            for b in (backends[:1] if options.quick else backends)
            for name in counted
            for layout in range(layouts)
        ]
    imports = importtime.counts(layouts) if not options.no_import and not missing else []
    entries, import_counts = count.run_all(probes, options.jobs, *imports)
    for e in entries:
        if e.get("error"):
            problems.append(f"{e['backend']} {e['workload']} {e['implementation']}: {e['error']}")
        elif e.get("unavailable"):
            notes.append(f"{e['backend']} {e['implementation']}: {e['unavailable']}")
    counted_imports: dict[str, list[int]] = {}
    for result in import_counts:
        if isinstance(result, Exception):
            problems.append(f"import count: {type(result).__name__}: {result}")
        else:
            counted_imports.setdefault(result[0], []).append(result[1])

    walls: dict[str, float] = {}
    import_walls = None
    if not options.quick and not options.no_wall:  # one at a time, and after the counts: timings need quiet
        pyperf = shlex.split(options.pyperf)
        for b in backends:
            for name in names:
                workloads = [w for w in sizes if w in load(name).workloads]
                walls |= (
                    _guard(problems, f"{b} {name}", wall.measure, b, name, workloads, seeded, pyperf) or {}
                )
        if not options.no_import:
            import_walls = _guard(problems, "import wall-clock", importtime.wall, pyperf)

    found = report.rows(entries, walls)
    rank = {name: i for i, name in enumerate(names)}
    found = dict(sorted(found.items(), key=lambda kv: (backends.index(kv[0][0]), kv[0][1], rank[kv[0][2]])))
    timing = (
        "single native runs" if options.quick or options.no_wall else f"pyperf medians ({options.pyperf})"
    )
    print(f"{report.machine()}; {mode}: sizes {sizes}, {seeded:,} seeded rows, layouts: {layouts}")
    print(f"wall-clock: {timing}")
    parts = [report.results_table(found), report.targets_table(found, counted_imports)]
    parts.append(report.imports_text(counted_imports, import_walls))
    for title, lines in (("notes", notes), ("problems (crashes and wrong results)", problems)):
        parts.append(f"{title}:\n" + "\n".join(f"- {line}" for line in lines) if lines else "")
    print("\n" + "\n\n".join(part for part in parts if part) + "\n")
    print(f"({time.perf_counter() - started:.0f} s)")
    if options.json:
        document = {
            "entries": entries,
            "walls": walls,
            "imports": counted_imports,
            "import_walls": import_walls,
        }
        options.json.write_text(json.dumps(document, indent=1) + "\n")
    return 1 if problems else 0


def _guard(problems: list[str], what: str, function: Callable[..., Any], *args: Any) -> Any:
    try:
        return function(*args)
    except Exception as exc:
        problems.append(f"{what}: {type(exc).__name__}: {exc}")
        return None


if __name__ == "__main__":
    sys.exit(main())
