"""A world: one backend of the suite's harness, driven in one flavour, for the contract suite."""

from __future__ import annotations

from typing import Any

from tests.conftest import Backend
from tests.drivers import Flavour, UnitDriver


class World:
    """Units of one backend and flavour, and a way around them to seed and check the data."""

    def __init__(self, backend: Backend, flavour: Flavour) -> None:
        self.backend = backend
        self.flavour = flavour

    @property
    def is_async(self) -> bool:
        return self.flavour.is_async

    def unit(self, **options: Any) -> UnitDriver:
        """A unit of this world; ``options`` (``dispatch``, ``read_only``, ``durable``) go to it."""
        return self.flavour.unit(**options)

    def insert(self, *objects: object) -> None:
        """Commit ``objects`` outside any unit under test."""
        self.backend.insert(*objects)

    def users(self) -> list[tuple[str, str | None]]:
        """The committed users, read around the units under test."""
        return self.backend.users()

    def accounts(self) -> list[tuple[int, str, int]]:
        return self.backend.accounts()
