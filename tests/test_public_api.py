"""The public names and the error tree that users import and catch."""

from __future__ import annotations

import pickle

import pytest
import sqlalchemy
import sqlalchemy.orm

import uow


def test_the_public_names_are_pinned() -> None:
    assert uow.__all__ == [
        "AsyncAttempt",
        "AsyncAttempts",
        "AsyncReplicaRouter",
        "AsyncRepository",
        "AsyncRepositoryProtocol",
        "AsyncUnitOfWork",
        "AsyncUnitOfWorkProtocol",
        "Attempt",
        "Attempts",
        "CommitOutcomeUnknownError",
        "ConflictError",
        "DuplicateKeyError",
        "HasEvents",
        "HookError",
        "IntegrityError",
        "InvalidArgumentError",
        "InvalidFieldError",
        "Lock",
        "MultipleResultsError",
        "NotFoundError",
        "OrderBy",
        "Page",
        "ParsedQuery",
        "RandomReplica",
        "ReadYourWrites",
        "ReplicaRouter",
        "ReplicaWriteError",
        "Repository",
        "RepositoryProtocol",
        "Retry",
        "RoundRobin",
        "StateError",
        "TransientError",
        "UncommittedWorkWarning",
        "UnitOfWork",
        "UnitOfWorkError",
        "UnitOfWorkProtocol",
        "configure_sqlite",
        "is_transient",
        "set_cursor_key",
    ]
    assert uow.__all__ == sorted(uow.__all__)
    for name in uow.__all__:
        assert getattr(uow, name) is not None


@pytest.mark.parametrize(
    ("error", "parents"),
    [
        (uow.StateError, (uow.UnitOfWorkError, RuntimeError)),
        (uow.ReplicaWriteError, (uow.StateError, RuntimeError)),
        (uow.NotFoundError, (uow.UnitOfWorkError, LookupError)),
        (uow.MultipleResultsError, (uow.UnitOfWorkError, LookupError)),
        (uow.InvalidArgumentError, (uow.UnitOfWorkError, ValueError)),
        (uow.InvalidFieldError, (uow.InvalidArgumentError, ValueError)),
        (uow.IntegrityError, (uow.UnitOfWorkError, sqlalchemy.exc.IntegrityError)),
        (uow.DuplicateKeyError, (uow.IntegrityError, sqlalchemy.exc.IntegrityError)),
        (uow.HookError, (uow.UnitOfWorkError, ExceptionGroup)),
        (uow.TransientError, (uow.UnitOfWorkError, sqlalchemy.exc.OperationalError)),
        (uow.CommitOutcomeUnknownError, (uow.UnitOfWorkError, sqlalchemy.exc.OperationalError)),
        (uow.ConflictError, (uow.UnitOfWorkError, sqlalchemy.orm.exc.StaleDataError)),
    ],
)
def test_each_error_is_also_the_exception_code_already_catches(
    error: type[Exception], parents: tuple[type[Exception], ...]
) -> None:
    assert issubclass(error, parents)


def test_the_uncommitted_work_warning_is_a_user_warning() -> None:
    assert issubclass(uow.UncommittedWorkWarning, UserWarning)


def test_a_translated_error_survives_pickling() -> None:
    original = sqlalchemy.exc.IntegrityError("INSERT ...", {"id": 1}, ValueError("duplicate"))
    error = uow.DuplicateKeyError.from_sqlalchemy(original)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is uow.DuplicateKeyError
    assert copy.statement == "INSERT ..."
    assert str(copy) == str(error)


def test_a_replica_write_error_survives_pickling() -> None:
    error = uow.ReplicaWriteError("postgresql://replica/app", "UPDATE account SET balance = 0")
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.replica, copy.statement, str(copy)) == (
        uow.ReplicaWriteError,
        error.replica,
        error.statement,
        str(error),
    )


def test_the_package_ships_its_type_information() -> None:
    from importlib.resources import files

    assert files("uow").joinpath("py.typed").is_file()


def test_importing_uow_loads_neither_sqlalchemys_asyncio_extension_nor_the_protocols() -> None:
    import subprocess
    import sys

    probe = (
        "import sys, uow; "
        "print(sorted(m for m in ('sqlalchemy.ext.asyncio', 'uow._protocols') if m in sys.modules)); "
        "uow.UnitOfWorkProtocol; "
        "print(sorted(m for m in ('sqlalchemy.ext.asyncio', 'uow._protocols') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == ["[]", "['uow._protocols']"]


def test_importing_uow_loads_no_replica_routing_until_it_is_used() -> None:
    import subprocess
    import sys

    probe = (
        "import sys, uow; "
        "print(sorted(m for m in ('uow._async_routing', 'uow._routing') if m in sys.modules)); "
        "uow.ReplicaRouter; "
        "print(sorted(m for m in ('uow._async_routing', 'uow._routing') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == ["[]", "['uow._routing']"]
