"""The ``world`` fixture: every contract specification runs on the in-memory unit and on every backend.

The ids read ``memory-sync``, ``memory-async``, ``postgresql-async``, ... Real backends are set up once
per session (as in ``tests/conftest.py``, including its skip and failure rules for unset servers);
their tables are emptied before and after every test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import BACKENDS, Backend, _make_backend, release_backend
from tests.drivers import Flavour
from tests.models import Base
from tests.testing.world import World
from uow import configure_sqlite
from uow.examples.users import Base as ExampleBase
from uow.testing import InMemoryStore

WORLDS = [f"{name}-{flavour}" for name in ["memory", *BACKENDS] for flavour in ("sync", "async")]


@pytest.fixture(scope="session")
def _contract_backends(runner: asyncio.Runner) -> Iterator[dict[str, tuple[Backend, list[Any]]]]:
    """The contract's own backends; torn down as tests/conftest.py tears down its own."""
    backends: dict[str, tuple[Backend, list[Any]]] = {}
    yield backends
    for backend, keep in backends.values():
        release_backend(backend, keep, runner)


def _backend(
    name: str, backends: dict[str, tuple[Backend, list[Any]]], tmp_path_factory: pytest.TempPathFactory
) -> Backend:
    if name not in backends:
        backends[name] = _make_backend(name, tmp_path_factory.mktemp(f"contract-{name}"))
    return backends[name][0]


@pytest.fixture(params=WORLDS)
def world(
    request: pytest.FixtureRequest,
    runner: asyncio.Runner,
    _contract_backends: dict[str, tuple[Backend, list[Any]]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    """One implementation, in one flavour, with no data; no connection may stay checked out after."""
    name, _, flavour_name = request.param.rpartition("-")
    loop = runner if flavour_name == "async" else None
    if name == "memory":
        yield World(request.param, loop, store=InMemoryStore(Base, ExampleBase))
        return
    backend = _backend(name, _contract_backends, tmp_path_factory)
    engine = backend.engines.get(flavour_name)
    if engine is None:
        engine = backend.async_engine() if loop is not None else backend.sync_engine()
        if backend.kind == "sqlite":
            configure_sqlite(engine)  # as tests/conftest.py does: atomic savepoints
        backend.engines[flavour_name] = engine
    flavour = Flavour(flavour_name, engine, loop)
    backend.clear()
    yield World(request.param, loop, backend=backend, flavour=flavour)
    backend.clear()
    assert flavour.checked_out() == 0, "a connection was left checked out"
