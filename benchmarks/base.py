"""What an implementation is, and the registry of them by name.

An implementation is a class with a name, a flavour and one method per workload it runs
(``w1`` ... ``w6``; coroutine functions in the async flavour). A method takes the workload's size
``n`` and the number of rows its table was seeded with (W3 and W5 read those) and returns a number
that is checked against :func:`benchmarks.models.expected`: the count of units or rows it wrote, or a
checksum of what it read.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

IMPLEMENTATIONS = {
    "raw": "benchmarks.impl_raw:Raw",
    "core": "benchmarks.impl_core:Core",
    "orm": "benchmarks.impl_orm:Orm",
    "orm-bulk": "benchmarks.impl_orm:OrmBulk",
    "advanced-alchemy": "benchmarks.impl_aa:AdvancedAlchemy",
    "uow": "benchmarks.impl_uow:Uow",
    "core-async": "benchmarks.impl_core:CoreAsync",
    "orm-async": "benchmarks.impl_orm:OrmAsync",
    "orm-async-bulk": "benchmarks.impl_orm:OrmAsyncBulk",
    "uow-async": "benchmarks.impl_uow:UowAsync",
}
"""Each implementation's class as ``module:Class``, imported only by the processes that run it."""


class Implementation:
    """Base of the implementations; ``env`` is a :class:`~benchmarks.envs.SyncEnv` or an
    :class:`~benchmarks.envs.AsyncEnv`, as the flavour asks."""

    name: ClassVar[str]
    flavour: ClassVar[str] = "sync"
    workloads: ClassVar[tuple[str, ...]] = ("W1", "W2", "W3", "W4", "W5", "W6")

    def __init__(self, env: Any) -> None:
        self.env = env

    def method(self, workload: str) -> Any:
        return getattr(self, workload.lower())

    def close(self) -> None:
        """Release what the implementation holds beyond the engine."""


def load(name: str) -> type[Implementation]:
    """The class of the implementation ``name``, or of ``module:Class`` for one outside the registry."""
    module, _, attribute = IMPLEMENTATIONS.get(name, name).partition(":")
    cls: type[Implementation] = getattr(importlib.import_module(module), attribute)
    return cls
