"""Import cost: ``import uow`` against ``import sqlalchemy.orm``, with bytecode cached for both.

Instructions: callgrind counts the import statement alone, ``sys.call_tracing(__import__, (name,))``
in a fresh interpreter, for each layout. Wall-clock: this module is also a pyperf script timing
``python -c "import NAME"`` and ``python -c pass``, so that the interpreter's start can be subtracted.
With ``PYTHONDONTWRITEBYTECODE=1`` (set on this machine) every process would compile uow's source
anew while SQLAlchemy's bytecode comes compiled from its wheel; so both packages are compiled first,
and the measured processes run without that variable.
"""

from __future__ import annotations

import compileall
import importlib.util
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pyperf  # type: ignore[import-untyped]

from benchmarks.count import CALLGRIND, ROOT, environment, total

MODULES = ("sqlalchemy.orm", "uow")
COMMANDS = {"python -c pass": "pass", **{f"import {m}": f"import {m}" for m in MODULES}}


def compile_bytecode() -> None:
    for package in ("sqlalchemy", "uow"):
        spec = importlib.util.find_spec(package)
        assert spec is not None
        assert spec.origin is not None
        compileall.compile_dir(Path(spec.origin).parent, quiet=1)


def _count(module: str, layout: int) -> tuple[str, int]:
    compile_bytecode()
    code = f"padding = [str(k) * (k % 40) for k in range({layout} * 1003)]\n"
    code += f"import sys; sys.call_tracing(__import__, ({module!r},))"
    options = [option for option in CALLGRIND if option != "--instr-atstart=no"]
    with tempfile.TemporaryDirectory(prefix="uow-bench-cg-") as out:
        command = [*options, f"--callgrind-out-file={out}/cg.%p", sys.executable, "-c", code]
        subprocess.run(command, capture_output=True, env=environment(layout), cwd=ROOT, check=True)
        return module, total(next(Path(out).glob("cg.*.1")))


def counts(layouts: int) -> list[Callable[[], tuple[str, int]]]:
    """One task per import and layout for :func:`benchmarks.count.run_all`, each giving (module, count)."""
    return [partial(_count, module, layout) for module in MODULES for layout in range(layouts)]


def wall(options: list[str]) -> dict[str, float]:
    """Median seconds of each command of :data:`COMMANDS`, timed by pyperf."""
    compile_bytecode()
    with tempfile.TemporaryDirectory(prefix="uow-bench-wall-") as out:
        output = Path(out) / "imports.json"
        command = [sys.executable, "-m", "benchmarks.importtime", "--quiet", "-o", str(output), *options]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
        if done.returncode != 0:
            raise RuntimeError("\n".join(done.stderr.strip().splitlines()[-15:]))
        return {bench.get_name(): bench.median() for bench in pyperf.BenchmarkSuite.load(str(output))}


def main() -> None:
    runner = pyperf.Runner(program_args=("-m", "benchmarks.importtime"))
    for name, code in COMMANDS.items():
        runner.bench_command(name, [sys.executable, "-c", code])


if __name__ == "__main__":
    main()
