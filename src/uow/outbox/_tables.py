"""The outbox and inbox tables, made by the application's own metadata and migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    BindParameter,
    Column,
    ColumnElement,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeEngine

from uow._errors import InvalidArgumentError

__all__ = [
    "DEAD",
    "PENDING",
    "SENT",
    "Payload",
    "check_inbox_table",
    "check_outbox_table",
    "inbox_table",
    "now",
    "outbox_table",
]

PENDING = "pending"
"""Waiting to be published: new, or failed fewer than `max_attempts` times and due again later."""
SENT = "sent"
"""Published and confirmed by the broker."""
DEAD = "dead"
"""Failed `max_attempts` times; the relay leaves it alone until it is requeued."""

# MySQL and MariaDB keep whole seconds in DATETIME unless told otherwise.
_WHEN = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_MYSQL = frozenset({"mysql", "mariadb"})
# SQLite numbers rows itself only for an INTEGER PRIMARY KEY.
_POSITION = BigInteger().with_variant(Integer(), "sqlite")

_OUTBOX_COLUMNS = frozenset(
    {"position", "id", "topic", "key", "payload", "headers", "created_at", "state", "attempts",
     "next_attempt_at", "sent_at", "last_error"}
)  # fmt: skip
_INBOX_COLUMNS = frozenset({"consumer", "message_id", "received_at"})


class _FromHex(FunctionElement[bytes]):
    """A payload parameter, sent as hexadecimal text and decoded by the server where bytes cannot go."""

    type = LargeBinary()
    inherit_cache = True


@compiles(_FromHex)
def _compile_from_hex(element: _FromHex, compiler: SQLCompiler, **kw: Any) -> str:
    inner = compiler.process(element.clauses, **kw)
    return f"UNHEX({inner})" if compiler.dialect.driver == "aiomysql" else inner


class _HexLongBlob(mysql.LONGBLOB):
    """LONGBLOB whose parameters are hexadecimal text already (for aiomysql)."""

    def bind_processor(self, dialect: Dialect) -> None:
        return None


class Payload(TypeDecorator[bytes]):
    """The type of the outbox's `payload` column: bytes of any length.

    `BYTEA` on PostgreSQL, `BLOB` on SQLite, `LONGBLOB` on MySQL and MariaDB (whose `BLOB` holds
    64 KiB). With aiomysql, whose bytes parameters fail under PyMySQL 1.2, payloads travel as
    hexadecimal text that the server decodes with `UNHEX()`.
    """

    impl: TypeEngine[Any] | type[TypeEngine[Any]] = LargeBinary
    cache_ok: bool | None = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name not in _MYSQL:
            return dialect.type_descriptor(LargeBinary())
        return dialect.type_descriptor(_HexLongBlob() if dialect.driver == "aiomysql" else mysql.LONGBLOB())

    def bind_expression(self, bindparam: BindParameter[bytes]) -> ColumnElement[bytes]:
        return _FromHex(bindparam)

    def process_bind_param(self, value: bytes | None, dialect: Dialect) -> Any:
        if value is not None and dialect.driver == "aiomysql":
            return bytes(value).hex()
        return value


Payload.__module__ = "uow.outbox"  # how migrations that Alembic writes name it


def now() -> datetime:
    """The current time in UTC, without a time zone: how the outbox stores every time."""
    return datetime.now(UTC).replace(tzinfo=None)


def outbox_table(metadata: MetaData, name: str = "uow_outbox", *, schema: str | None = None) -> Table:
    """Define the outbox table in `metadata`, for the application's migrations to create.

    One row per message, in recording order (`position`):

    | column | type | what it holds |
    |---|---|---|
    | `position` | big integer, primary key | the order in which messages were recorded |
    | `id` | UUID, unique | the message's stable id, sent with every delivery for deduplication |
    | `topic` | string(255) | where the message goes: a subject, a routing key or a stream |
    | `key` | string(255), null | an optional key (an aggregate's id, say) sent beside it |
    | `payload` | bytes ([`Payload`][uow.outbox.Payload]) | the message body |
    | `headers` | JSON, null | extra headers, names and values as strings |
    | `created_at` | timestamp | when it was recorded, UTC without a time zone |
    | `state` | string(8) | `pending`, `sent` or `dead` |
    | `attempts` | integer | how many times the relay tried to publish it |
    | `next_attempt_at` | timestamp | when a pending message is due (later after a failure) |
    | `sent_at` | timestamp, null | when the broker confirmed it |
    | `last_error` | text, null | why the last attempt failed |

    The index on `(state, position)` serves the relay's claims. Timestamps keep microseconds on
    every backend (`DATETIME(6)` on MySQL and MariaDB).

    Args:
        metadata: The application's `MetaData`, so that `create_all()` and Alembic's autogenerate
            see the table.
        name: The table's name; the constraints and the index are named after it.
        schema: The schema (PostgreSQL) or database (MySQL, MariaDB) that holds it, if not the default.
    """
    return Table(
        name,
        metadata,
        Column("position", _POSITION, primary_key=True, autoincrement=True),
        Column("id", Uuid(), nullable=False),
        Column("topic", String(255), nullable=False),
        Column("key", String(255), nullable=True),
        Column("payload", Payload(), nullable=False),
        Column("headers", JSON(), nullable=True),
        Column("created_at", _WHEN, nullable=False),
        Column("state", String(8), nullable=False, server_default=PENDING),
        Column("attempts", Integer(), nullable=False, server_default="0"),
        Column("next_attempt_at", _WHEN, nullable=False),
        Column("sent_at", _WHEN, nullable=True),
        Column("last_error", Text(), nullable=True),
        UniqueConstraint("id", name=f"uq_{name}_id"),
        Index(f"ix_{name}_state_position", "state", "position"),
        schema=schema,
    )


def inbox_table(metadata: MetaData, name: str = "uow_inbox", *, schema: str | None = None) -> Table:
    """Define the inbox table in `metadata`, for the application's migrations to create.

    One row per message a consumer has applied; its primary key `(consumer, message_id)` is what
    makes a redelivered message recognisable in the same transaction as its effects.

    | column | type | what it holds |
    |---|---|---|
    | `consumer` | string(200) | the name of the consumer that applied the message |
    | `message_id` | string(255) | the message's id as the broker delivered it |
    | `received_at` | timestamp | when the consumer's unit recorded it, UTC without a time zone |

    Args:
        metadata: The application's `MetaData`.
        name: The table's name.
        schema: The schema or database that holds it, if not the default.
    """
    return Table(
        name,
        metadata,
        Column("consumer", String(200), primary_key=True),
        Column("message_id", String(255), primary_key=True),
        Column("received_at", _WHEN, nullable=False),
        schema=schema,
    )


def check_outbox_table(table: object) -> Table:
    return _check(table, _OUTBOX_COLUMNS, "outbox_table()")


def check_inbox_table(table: object) -> Table:
    return _check(table, _INBOX_COLUMNS, "inbox_table()")


def _check(table: object, columns: frozenset[str], factory: str) -> Table:
    if not isinstance(table, Table):
        raise InvalidArgumentError(f"expected a Table made by {factory}, got {table!r}")
    missing = columns - set(table.c.keys())
    if missing:
        raise InvalidArgumentError(
            f"table {table.fullname!r} lacks the column(s) {', '.join(sorted(missing))}: "
            f"define it with {factory}"
        )
    return table
