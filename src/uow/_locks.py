"""Row locks and loader options on a repository's reads: what each backend can honour, checked before SQL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from sqlalchemy import Dialect
from sqlalchemy.orm.interfaces import ORMOption
from sqlalchemy.sql.base import ExecutableOption

from uow._errors import InvalidArgumentError
from uow._model import ModelInfo, is_expression

__all__ = ["ForUpdate", "LoadOptions", "Lock", "backend_name", "check_options", "lock_arguments"]

LoadOptions: TypeAlias = "Sequence[ORMOption]"
"""What `options=` accepts: SQLAlchemy loader options such as `selectinload(User.tags)`."""


@dataclass(frozen=True, slots=True)
class Lock:
    """How a read locks the rows it returns, until the transaction ends: `SELECT ... FOR UPDATE`.

    `for_update=True` is `Lock()`. Every option is refused with
    [`InvalidArgumentError`][uow.InvalidArgumentError], naming the backend and the option, on a
    backend that cannot honour it, before any SQL is sent:

    | option | PostgreSQL | MariaDB | SQLite |
    |---|---|---|---|
    | `Lock()` | `FOR UPDATE` | `FOR UPDATE` | nothing to send: transactions are serializable |
    | `read=True` | `FOR SHARE` | `LOCK IN SHARE MODE` | nothing to send |
    | `nowait=True` | `NOWAIT` | `NOWAIT` | refused |
    | `skip_locked=True` | `SKIP LOCKED` | `SKIP LOCKED` (10.6 and later) | refused |
    | `of=...` | `FOR UPDATE OF ...` | refused | refused |
    | `key_share=True` | `FOR NO KEY UPDATE` / `FOR KEY SHARE` | refused | refused |

    Attributes:
        read: Take shared locks, which let other transactions read-lock the rows too but not
            write them.
        nowait: Fail at once with an error instead of waiting when a row is locked already.
        skip_locked: Leave rows that another transaction has locked out of the result (work
            queues).
        of: Lock only the rows of these mapped classes or tables' columns (a class, a column
            attribute, or a sequence of them), when a read joins other tables.
        key_share: PostgreSQL's weaker locks: `FOR NO KEY UPDATE`, or `FOR KEY SHARE` with
            `read=True`.
    """

    read: bool = False
    nowait: bool = False
    skip_locked: bool = False
    of: Any = None
    key_share: bool = False

    def __post_init__(self) -> None:
        for name in ("read", "nowait", "skip_locked", "key_share"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidArgumentError(
                    f"Lock({name}=...) takes True or False, got {getattr(self, name)!r}"
                )
        if self.nowait and self.skip_locked:
            raise InvalidArgumentError(
                "Lock(nowait=True, skip_locked=True) asks for two ways of handling a locked row; choose one"
            )
        if self.of is not None:
            targets = self.of if isinstance(self.of, list | tuple) else (self.of,)
            for target in targets:
                if not (isinstance(target, type) or is_expression(target)):
                    raise InvalidArgumentError(
                        f"Lock(of=...) takes mapped classes or column attributes, got {target!r}"
                    )


ForUpdate: TypeAlias = "bool | Lock"
"""What `for_update=` accepts: `False`, `True` (a plain `Lock()`) or a [`Lock`][uow.Lock]."""

_PLAIN = Lock()


def backend_name(dialect: Dialect) -> str:
    """The backend's name as error messages give it: `PostgreSQL`, `MariaDB`, `MySQL`, `SQLite`."""
    if getattr(dialect, "is_mariadb", False):
        return "MariaDB"
    return {"postgresql": "PostgreSQL", "mysql": "MySQL", "sqlite": "SQLite"}.get(dialect.name, dialect.name)


def _refuse(dialect: Dialect, option: str, info: ModelInfo, why: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"{backend_name(dialect)} cannot honour Lock({option}=...): {why}. The locking read of "
        f"{info.name} was refused before any SQL was sent"
    )


def lock_arguments(for_update: object, dialect: Dialect, info: ModelInfo) -> dict[str, Any] | None:
    """The `with_for_update()` arguments that make `dialect` honour `for_update`; `None` for no clause.

    Raises:
        InvalidArgumentError: `for_update` is neither a bool nor a `Lock`, or asks for an option
            the backend does not have.
    """
    if for_update is True:
        lock = _PLAIN
    elif isinstance(for_update, Lock):
        lock = for_update
    else:
        raise InvalidArgumentError(f"for_update takes True, False or a uow.Lock(...), got {for_update!r}")
    name = dialect.name
    if name == "sqlite":
        for option, asked in (
            ("nowait", lock.nowait),
            ("skip_locked", lock.skip_locked),
            ("of", lock.of is not None),
            ("key_share", lock.key_share),
        ):
            if asked:
                raise _refuse(
                    dialect,
                    option,
                    info,
                    "SQLite has no row locks, it locks the whole database when a transaction writes "
                    "(for_update=True and Lock(read=True) are accepted there and send nothing)",
                )
        return None
    if name in {"mysql", "mariadb"}:
        mariadb = getattr(dialect, "is_mariadb", False)
        version = dialect.server_version_info or ()
        if lock.key_share:
            raise _refuse(dialect, "key_share", info, "it has no FOR NO KEY UPDATE or FOR KEY SHARE")
        if lock.of is not None and not getattr(dialect, "supports_for_update_of", False):
            raise _refuse(dialect, "of", info, "it has no FOR UPDATE OF")
        if lock.skip_locked and mariadb and version < (10, 6):
            raise _refuse(dialect, "skip_locked", info, "it has SKIP LOCKED from version 10.6 on")
        if lock.nowait and mariadb and version < (10, 3):
            raise _refuse(dialect, "nowait", info, "it has NOWAIT from version 10.3 on")
    arguments: dict[str, Any] = {}
    if lock.read:
        arguments["read"] = True
    if lock.nowait:
        arguments["nowait"] = True
    if lock.skip_locked:
        arguments["skip_locked"] = True
    if lock.key_share:
        arguments["key_share"] = True
    if lock.of is not None:
        arguments["of"] = list(lock.of) if isinstance(lock.of, list | tuple) else lock.of
    return arguments


def check_options(options: object, info: ModelInfo) -> tuple[ORMOption, ...]:
    """`options` as a tuple of loader options; anything else is refused before any SQL.

    Raises:
        InvalidArgumentError: `options` is not a sequence of SQLAlchemy options (a single option
            included: it must be wrapped in a tuple or list).
    """
    if not isinstance(options, list | tuple):
        raise InvalidArgumentError(
            f"options for {info.name} must be a tuple or list of SQLAlchemy loader options such as "
            f"(selectinload({info.name}.relationship),), got {options!r}"
        )
    for option in options:
        if not isinstance(option, ExecutableOption):
            raise InvalidArgumentError(
                f"options for {info.name} must be SQLAlchemy loader options such as selectinload(...), "
                f"got {option!r}"
            )
    return tuple(options)
