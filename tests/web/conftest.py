"""The web integrations' fixtures: each framework's example application on each backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.conftest import Backend
from tests.web.harness import FRAMEWORKS, Served
from uow.web import CommitMode, ErrorMap


@pytest.fixture(params=FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> str:
    """An integration and flavour: `fastapi-async`, `fastapi-sync`, ..., `flask`."""
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def running(backend_setup: Backend) -> Iterator[dict[tuple[str, str], Served]]:
    """The applications started on a backend so far, kept for the session: starting one is the slow part.

    Each test still gets empty tables (the `backend` fixture) and an application that has forgotten
    what earlier tests saw; all of them are stopped before the backend is dropped.
    """
    apps: dict[tuple[str, str], Served] = {}
    yield apps
    for served in apps.values():
        served.close()


@pytest.fixture
def serve(
    framework: str, backend: Backend, running: dict[tuple[str, str], Served]
) -> Iterator[Callable[..., Served]]:
    """Start the framework's example application on the backend; every connection must be back after.

    Applications with the default problems are shared by the tests of the session; one with `errors`
    is started for the test alone.
    """
    used: list[Served] = []
    own: list[Served] = []

    def start(commit: CommitMode = "explicit", *, errors: ErrorMap | None = None) -> Served:
        if errors is not None:
            served = Served(framework, backend, commit, errors=errors)
            own.append(served)
        else:
            served = running.get((framework, commit)) or Served(framework, backend, commit)
            running[framework, commit] = served
            served.reset()
        used.append(served)
        return served

    yield start
    try:
        for served in used:
            assert served.checked_out() == 0, "a connection was left checked out"
    finally:
        for served in own:
            served.close()
