"""What every implementation is: a name, a flavour, and one method per workload it runs.

A workload method takes the workload's size ``n`` and the number of rows its table was seeded with
(W3 and W5 read those) and returns a number that the runner checks against the expected one: the
count of units or rows it wrote, or a checksum of what it read.
"""

from __future__ import annotations

from typing import Any, ClassVar

ALL_WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6")
OBJECTS_PER_ROW = {"W2": 0.2}
"""The scale of implementations that insert W2's rows as ORM objects, one per row."""
BASELINES = {"sync": "orm", "async": "orm-async"}
"""The plain-SQLAlchemy implementation every other one of the same flavour is compared with."""
CORE = {"sync": "core", "async": "core-async"}
"""The Core implementation that W2's bulk methods are compared with."""


class Implementation:
    """Base of the implementations; ``env`` is the flavour's :class:`~benchmarks.envs.SyncEnv` or
    :class:`~benchmarks.envs.AsyncEnv`."""

    name: ClassVar[str]
    flavour: ClassVar[str] = "sync"
    description: ClassVar[str]
    workloads: ClassVar[tuple[str, ...]] = ALL_WORKLOADS
    scale: ClassVar[dict[str, float]] = {}
    """Fraction of a workload's size this implementation runs: W2 one object per row is 5 to 30 times
    slower than the bulk paths, so those runs use a fifth of the rows (ratios use the time per row)."""

    def size(self, workload: str, n: int) -> int:
        return max(1, round(n * self.scale.get(workload, 1.0)))

    def __init__(self, env: Any) -> None:
        self.env = env

    def method(self, workload: str) -> Any:
        """The method that runs ``workload`` (a coroutine function for async implementations)."""
        return getattr(self, workload.lower())

    def recover(self) -> None:
        """Make the implementation usable again after a workload failed in the middle."""

    def close(self) -> None:
        """Release what the implementation holds beyond the shared engine."""


class Unavailable(Exception):
    """An implementation cannot run here (its library is missing or refuses this SQLAlchemy)."""
