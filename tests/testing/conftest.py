"""The ``world`` fixture: every contract specification runs on the in-memory unit and on every backend.

The ids read ``memory-sync``, ``memory-async``, ``postgresql-async``, ... A world is one backend of
the suite's harness (``tests/conftest.py``; ``memory`` is an ``InMemoryStore``) driven in one flavour
(``tests/drivers.py``); its tables are emptied before and after every test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.conftest import BACKENDS, Backends, make_engine
from tests.drivers import Flavour
from tests.testing.world import World

WORLDS = [f"{name}-{flavour}" for name in ["memory", *BACKENDS] for flavour in ("sync", "async")]


@pytest.fixture(params=WORLDS)
def world(request: pytest.FixtureRequest, runner: asyncio.Runner, backends: Backends) -> Iterator[World]:
    """One backend, in one flavour, with no data; no connection may stay checked out after."""
    name, _, flavour_name = request.param.rpartition("-")
    backend = backends(name)
    loop = runner if flavour_name == "async" else None
    flavour = Flavour(flavour_name, make_engine(backend, flavour_name), loop)
    backend.clear()
    yield World(backend, flavour)
    backend.clear()
    assert flavour.checked_out() == 0, "a connection was left checked out"
