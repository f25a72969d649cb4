"""The command line: choose what to run, run it, report it; exit 1 only on a crash or a wrong result."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from benchmarks import importtime, report, stream, tax
from benchmarks.base import Implementation
from benchmarks.impl_aa import AdvancedAlchemy
from benchmarks.impl_async import CoreAsync, OrmAsync, OrmAsyncBulk, UowAsync
from benchmarks.impl_core import Core
from benchmarks.impl_orm import Orm, OrmBulk
from benchmarks.impl_raw import Raw
from benchmarks.impl_uow import Uow
from benchmarks.runner import BackendRun, Measurement, stderr_log
from benchmarks.settings import (
    BACKEND_NAMES,
    IMPORT_RUNS,
    REPETITIONS,
    SEED_ROWS,
    STREAM_BACKENDS,
    STREAM_BATCH,
    STREAM_ROWS,
    TAX_PROCESSES,
    TAX_REPS,
    TAX_SCALE,
    WORKLOADS,
    make_backend,
    postgresql_url,
    sizes_for,
)

IMPLEMENTATIONS: tuple[type[Implementation], ...] = (
    Raw,
    Core,
    Orm,
    OrmBulk,
    AdvancedAlchemy,
    Uow,
    CoreAsync,
    OrmAsync,
    OrmAsyncBulk,
    UowAsync,
)


def _names(value: str, known: Sequence[str], what: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(unknown)}; choose from {', '.join(known)}"
        )
    return names


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark uow against the raw driver, SQLAlchemy Core, plain SQLAlchemy ORM and "
        "advanced-alchemy. Exits 1 when a workload crashes or returns a wrong result; never on timing.",
    )
    p.add_argument("--quick", action="store_true", help="small sizes: checks that everything still works")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    p.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    p.add_argument("--json-file", type=Path, help="also write the JSON results to this file")
    p.add_argument(
        "--only",
        type=lambda v: _names(v.upper(), list(WORKLOADS), "workload"),
        default=list(WORKLOADS),
        help="workloads to run, e.g. W1,W3 (default: all)",
    )
    p.add_argument(
        "--backends",
        type=lambda v: _names(v, BACKEND_NAMES, "backend"),
        default=list(BACKEND_NAMES),
        help=f"backends to run on (default: {','.join(BACKEND_NAMES)})",
    )
    p.add_argument(
        "--implementations",
        type=lambda v: _names(v, [cls.name for cls in IMPLEMENTATIONS], "implementation"),
        default=[cls.name for cls in IMPLEMENTATIONS],
        help="implementations to run (default: all); ratios need orm / orm-async (W2: core / core-async)",
    )
    p.add_argument("--reps", type=int, help="repetitions per measurement (default 5; at least 1)")
    p.add_argument(
        "--issue-sizes", action="store_true", help="run the issue's sizes everywhere (about 2 hours)"
    )
    p.add_argument(
        "--postgresql-url", help="default: $UOW_BENCH_POSTGRESQL_URL or the local uow_bench database"
    )
    p.add_argument("--no-stream", action="store_true", help="skip the streaming memory measurement")
    p.add_argument("--no-import", action="store_true", help="skip the import-time measurement")
    p.add_argument("--no-tax", action="store_true", help="skip the clean-process baseline and call counts")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    options = parser().parse_args(argv)
    mode = "quick" if options.quick else "full"
    reps = options.reps if options.reps is not None else REPETITIONS[mode]
    if reps < 1:
        parser().error("--reps must be at least 1")
    log = stderr_log
    started = time.perf_counter()
    pg_url = postgresql_url(options.postgresql_url)
    classes = [cls for cls in IMPLEMENTATIONS if cls.name in options.implementations]
    seeded = SEED_ROWS[mode]
    measurements: list[Measurement] = []
    problems: list[str] = []
    notes: list[str] = []
    sizes: dict[str, dict[str, int]] = {}
    extra: dict[str, str] = {"mode": mode, "repetitions": str(reps)}
    streams: list[stream.StreamResult] = []
    with tempfile.TemporaryDirectory(prefix="uow-bench-") as workdir:
        for name in options.backends:
            backend = make_backend(name, Path(workdir), pg_url)
            sizes[name] = {
                k: v for k, v in sizes_for(name, mode, options.issue_sizes).items() if k in options.only
            }
            log(f"{name}: {', '.join(f'{k} {v:,}' for k, v in sizes[name].items())}")
            try:
                run = BackendRun(backend, classes, log)
            except Exception as exc:
                problems.append(f"{name}: cannot set up the backend: {type(exc).__name__}: {exc}")
                log(problems[-1])
                continue
            try:
                if name == "postgresql":
                    extra["postgresql server"] = _server_version(backend.sync_url)
                notes += [f"{name} {impl}: {why}" for impl, why in run.unavailable.items()]
                for key, n in sizes[name].items():
                    measurements += run.workload(key, n, seeded, WORKLOADS[key].writes, reps)
            finally:
                run.close()
            if not options.no_stream and name in STREAM_BACKENDS[mode]:
                log(f"{name}: streaming {STREAM_ROWS[mode]:,} rows")
                streams.append(stream.measure(name, backend.sync_url, STREAM_ROWS[mode], STREAM_BATCH))
    taxes = None
    if not options.no_tax and "orm" in options.implementations:
        log("plain sessions in fresh processes, with and without uow (in-memory SQLite)")
        base = sizes_for("sqlite-memory", mode, options.issue_sizes)
        tax_sizes = {k: max(1, round(v * TAX_SCALE[mode])) for k, v in base.items() if k in options.only}
        taxes = tax.measure(tax_sizes, TAX_REPS[mode], TAX_PROCESSES[mode], seeded)
    imports = None
    if not options.no_import:
        log("import time")
        imports = importtime.measure(IMPORT_RUNS[mode])
    extra["wall time"] = f"{time.perf_counter() - started:.0f} s"

    problems += [f"{m.backend} {m.workload} {m.implementation}: {m.error}" for m in measurements if m.error]
    problems += [f"{s.backend} stream: {s.error}" for s in streams if s.error]
    if imports is not None and imports.error:
        problems.append(f"import time: {imports.error}")
    if taxes is not None and taxes.error:
        problems.append(f"clean-process baseline: {taxes.error}")
    found = report.targets(measurements, imports, streams)
    info = report.machine(extra)
    document = _as_json(info, sizes, measurements, found, imports, streams, taxes, problems, notes)
    if options.json_file is not None:
        options.json_file.write_text(json.dumps(document, indent=2) + "\n")
    if options.json:
        print(json.dumps(document, indent=2))
    else:
        _print_text(
            info, sizes, measurements, found, imports, streams, taxes, problems, notes, options.markdown
        )
    return 1 if problems else 0


def _server_version(url: str) -> str:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return str(connection.scalar(text("SHOW server_version")))
    finally:
        engine.dispose()


def _as_json(
    info: dict[str, str],
    sizes: dict[str, dict[str, int]],
    measurements: Sequence[Measurement],
    found: Sequence[report.Target],
    imports: importtime.ImportResult | None,
    streams: Sequence[stream.StreamResult],
    taxes: tax.TaxResult | None,
    problems: Sequence[str],
    notes: Sequence[str],
) -> dict[str, Any]:
    return {
        "machine": info,
        "sizes": sizes,
        "results": report.rows(measurements),
        "targets": [{"what": t.what, "value": t.value, "limit": t.limit, "status": t.status} for t in found],
        "imports": imports.as_dict() if imports is not None else None,
        "streams": [stream.as_dict(s) for s in streams],
        "clean_baseline": taxes.as_dict() if taxes is not None else None,
        "problems": list(problems),
        "left_out": list(notes),
    }


def _print_text(
    info: dict[str, str],
    sizes: dict[str, dict[str, int]],
    measurements: Sequence[Measurement],
    found: Sequence[report.Target],
    imports: importtime.ImportResult | None,
    streams: Sequence[stream.StreamResult],
    taxes: tax.TaxResult | None,
    problems: Sequence[str],
    notes: Sequence[str],
    markdown: bool,
) -> None:
    print("\n".join(f"{key}: {value}" for key, value in info.items()))
    print()
    print(report.workloads_legend(sizes))
    print()
    print(report.results_table(measurements, markdown))
    print()
    print(report.targets_table(found, markdown))
    if taxes is not None and not taxes.error:
        print()
        print(report.tax_table(taxes, markdown))
    extras = report.extras_text(imports, streams, markdown)
    if extras:
        print()
        print(extras)
    if notes:
        print()
        print("left out:")
        print("\n".join(f"  {note}" for note in notes))
    if problems:
        print()
        print("problems (crashes and wrong results):")
        print("\n".join(f"  {problem}" for problem in problems))
