"""The names of ``uow.testing`` and the plugin's registration, pinned."""

from __future__ import annotations

from importlib.metadata import entry_points

import uow
import uow.testing


def test_the_testing_names_are_pinned() -> None:
    assert uow.testing.__all__ == [
        "AsyncInMemoryRepository",
        "AsyncInMemoryUnitOfWork",
        "Fault",
        "FaultKind",
        "InMemoryRepository",
        "InMemoryStore",
        "InMemoryUnitOfWork",
        "UnsupportedSchemaError",
        "fail_commit",
        "fail_statement",
        "rolled_back_async_sessions",
        "rolled_back_sessions",
    ]
    for name in uow.testing.__all__:
        assert getattr(uow.testing, name) is not None


def test_an_unsupported_schema_is_an_invalid_argument() -> None:
    assert issubclass(uow.testing.UnsupportedSchemaError, uow.InvalidArgumentError)


def test_the_plugin_is_registered_with_pytest_under_the_name_uow() -> None:
    (plugin,) = [point for point in entry_points(group="pytest11") if point.name == "uow"]
    assert plugin.value == "uow._plugin"
