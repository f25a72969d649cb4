"""Watching units: the core's one hook point, and the DEBUG lines of the `uow` logger.

A block is watched only while the `uow` logger is enabled for DEBUG or an `observer` is installed
(`uow.otel.instrument()` installs one). The core asks once per block, in `UnitBase._start`, without
a function call while neither is the case: it reads logging's own cache of `isEnabledFor(DEBUG)`
(`LEVELS`, which logging clears whenever a level changes) and this module's `observer`. A watched
block gets a [`BlockWatch`][uow._observe.BlockWatch], kept as `ledger.watch`, and every later step
of its life costs one `if watch is not None:` where the core already is:

| step of the block | where | the watch hears |
|---|---|---|
| the block is entered | `UnitBase._start` | `BlockWatch(...)` |
| its root transaction begins (a connection is held) | `_listeners._on_begin` | `transaction_began` |
| a commit starts | `UnitBase._check_commit`, `_listeners._on_commit_starts` | `commit_started` |
| `unit.commit()` fails | `UnitBase._failed_commit` | `commit_failed` |
| the root transaction ends, after its hooks ran | `_listeners._end_root` | `transaction_ended` |
| a savepoint begins, ends | `_listeners._on_create`, `_on_end` | `savepoint_started`, `savepoint_ended` |
| a statement fails | `_listeners._on_error` | `statement_failed` |
| a hook or event handler fails | `Ledger.run_hooks`, `Ledger.after_commit` | `hook_failed` |
| `unit.rollback()` is called | `UnitBase._check_rollback` | `rolling_back` |
| the block is left and its session closed | `UnitBase._left` | `exited` |

The attempts of `run()` and `attempts()` get a [`RunWatch`][uow._observe.RunWatch] the same way,
told by the attempt classes of `_base.py` when each attempt starts and ends and when the loop pauses
or gives up.

The watches here keep the bookkeeping (timings, outcome, counts) and write the DEBUG lines; `uow.otel`
subclasses them to add spans and metrics. Nothing here imports OpenTelemetry, and nothing here ever
logs a bound value: errors are named by [`reason()`][uow._classify.reason], never by their message.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import TYPE_CHECKING

from uow._classify import reason

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.engine import Dialect
    from sqlalchemy.orm import Session

    from uow._rules import Scope

__all__ = [
    "COMMITTED",
    "DEBUG",
    "FAILED",
    "LEVELS",
    "ROLLED_BACK",
    "UNKNOWN",
    "BlockWatch",
    "Observer",
    "RunWatch",
    "observer",
    "open_block",
    "open_run",
    "system_name",
]

logger = logging.getLogger("uow")

DEBUG = logging.DEBUG
_cache = vars(logger).get("_cache")
LEVELS: dict[int, bool] = _cache if isinstance(_cache, dict) else {}
"""Logging's cache of the `uow` logger's `isEnabledFor()` answers: read without a call, refilled by
`open_block()` when a level change cleared it (an empty dict, never filled, under a logger class of
another kind)."""

COMMITTED = "committed"
"""The transaction committed (for a savepoint: it was released into its parent)."""
ROLLED_BACK = "rolled_back"
"""The work was rolled back: by `rollback()`, by leaving the block without `commit()`, or a savepoint's."""
FAILED = "failed"
"""An exception ended it: a commit that raised (its work rolled back), or a block left by an exception."""
UNKNOWN = "unknown"
"""A commit whose outcome is unknown: the connection was lost, or the call cut off, while COMMIT was
on its way."""

_ids = itertools.count(1)

_SYSTEMS = {"mssql": "microsoft.sql_server", "oracle": "oracle.db"}


def system_name(dialect: Dialect | None) -> str | None:
    """The OpenTelemetry `db.system.name` of a SQLAlchemy dialect (`"mariadb"` for MariaDB through
    a MySQL driver)."""
    if dialect is None:
        return None
    if getattr(dialect, "is_mariadb", False):
        return "mariadb"
    return _SYSTEMS.get(dialect.name, dialect.name)


class BlockWatch:
    """What happens to one block of a unit: its bookkeeping, and a DEBUG line per step when `log`.

    Attributes:
        id: The block's number in this process, in the log lines as `uow_unit_id`.
        outcome: What the block's work came to so far, and once `exited()`, its final outcome.
    """

    __slots__ = (
        "attempt",
        "began",
        "commits",
        "committing",
        "flavour",
        "hook_failures",
        "id",
        "log",
        "outcome",
        "run",
        "started",
        "system",
        "unknown",
    )

    def __init__(self, session: Session, *, attempt: int | None, flavour: str, log: bool) -> None:
        self.id: int = next(_ids)
        self.log: bool = log
        self.attempt: int | None = attempt
        self.flavour: str = flavour
        self.system: str | None = system_name(getattr(session.bind, "dialect", None))
        self.outcome: str = ROLLED_BACK
        self.unknown: bool = False
        self.commits: int = 0
        self.hook_failures: int = 0
        self.committing: bool = False
        self.began: float | None = None
        self.run: RunWatch | None = None
        """The watch of the retry loop this block is an attempt of, once the attempt told it."""
        self.started: float = time.perf_counter()
        if log:
            if attempt is None:
                self.debug("enter", "unit %d entered (%s)", self.id, flavour)
            else:
                self.debug("enter", "unit %d entered (%s), attempt %d", self.id, flavour, attempt)

    def debug(self, event: str, message: str, *args: object, **fields: object) -> None:
        extra: dict[str, object] = {"uow_unit_id": self.id, "uow_event": event}
        if self.attempt is not None:
            extra["uow_attempt"] = self.attempt
        if self.system is not None:
            extra["uow_db_system"] = self.system
        extra.update(fields)
        logger.debug(message, *args, extra=extra)

    # -- the root transaction -------------------------------------------------------------------

    def transaction_began(self, connection: Connection) -> None:
        """The root transaction holds its first connection."""
        self.began = time.perf_counter()
        self.system = system_name(connection.dialect)  # MariaDB is known once the engine connected
        if self.log:
            self.debug("begin", "unit %d began a transaction", self.id)

    def commit_started(self) -> None:
        """The root transaction's commit starts: `unit.commit()` (before its flush), or SQLAlchemy's
        `before_commit` of a commit through the session; told twice for the unit's own commits."""
        self.committing = True

    def commit_failed(self, error: BaseException, *, unknown: bool) -> None:
        """`unit.commit()` raised `error` (translated); `unknown` if it may have committed."""
        if unknown:
            self.unknown = True

    def transaction_ended(self, *, committed: bool, unknown: bool, wrote: bool) -> tuple[str, float | None]:
        """The root transaction ended, its hooks ran: its outcome, and how long it held a connection."""
        held = None if self.began is None else time.perf_counter() - self.began
        self.began = None
        committing = self.committing
        self.committing = False
        if committed:
            outcome = COMMITTED
            self.commits += 1
            self.outcome = COMMITTED
        elif unknown:
            outcome = UNKNOWN
            self.unknown = True
        else:
            outcome = FAILED if committing else ROLLED_BACK
            if wrote or committing:
                self.outcome = ROLLED_BACK
        if self.log:
            self.debug(
                "commit" if committing or committed else "rollback",
                "unit %d: transaction %s",
                self.id,
                outcome,
                uow_outcome=outcome,
                uow_held=held,
            )
        return outcome, held

    def rolling_back(self) -> None:
        """`unit.rollback()` was called."""
        self.outcome = ROLLED_BACK

    # -- within the transaction -----------------------------------------------------------------

    def savepoint_started(self, scope: Scope) -> None:
        if self.log:
            self.debug("savepoint", "unit %d: savepoint begun", self.id)

    def savepoint_ended(self, scope: Scope, *, committed: bool) -> str:
        outcome = COMMITTED if committed else ROLLED_BACK
        if self.log:
            self.debug(
                "savepoint",
                "unit %d: savepoint %s",
                self.id,
                "released" if committed else "rolled back",
                uow_outcome=outcome,
            )
        return outcome

    def statement_failed(self, error: BaseException) -> None:
        """A statement (or a savepoint's RELEASE or ROLLBACK TO) of the block failed with `error`."""

    def hook_failed(self, stage: str, *, robust: bool) -> None:
        """A hook (or, at `stage` `"dispatch"`, an event handler) raised."""
        self.hook_failures += 1

    # -- the end --------------------------------------------------------------------------------

    def exited(self, error: BaseException | None, discarded: str | None) -> tuple[str, float]:
        """The block ended (`error` leaving it, if any) and its session closed: outcome and duration."""
        duration = time.perf_counter() - self.started
        if self.unknown:
            outcome = UNKNOWN
        elif error is not None:
            outcome = FAILED
        elif discarded is not None:
            outcome = ROLLED_BACK
        else:
            outcome = self.outcome
        self.outcome = outcome
        if self.log:
            fields: dict[str, object] = {"uow_outcome": outcome, "uow_duration": duration}
            if self.hook_failures:
                fields["uow_hook_failures"] = self.hook_failures
            if error is not None:
                fields["uow_reason"] = reason(error)
            self.debug("exit", "unit %d exited: %s", self.id, outcome, **fields)
        return outcome, duration


class RunWatch:
    """What happens to the attempts of one `run()` or `attempts()` loop."""

    __slots__ = ("attempts", "block", "flavour", "log")

    def __init__(self, *, flavour: str, log: bool) -> None:
        self.flavour: str = flavour
        self.log: bool = log
        self.attempts: int = 0
        self.block: BlockWatch | None = None

    def attempt_entering(self, number: int) -> None:
        """Attempt `number` is about to enter its unit's block."""
        self.attempts = number
        self.block = None

    def attempt_entered(self, block: BlockWatch | None) -> None:
        """The attempt's block was entered; `block` watches it."""
        self.block = block
        if block is not None:
            block.run = self

    def attempt_ended(self, error: BaseException | None, *, retried: bool) -> None:
        """The attempt ended with `error`; `retried` if it was transient and swallowed for another attempt.

        Also called when the attempt failed to enter its block (with `retried` false).
        """
        block = self.block
        if self.log and block is not None:
            fields: dict[str, object] = {"uow_outcome": block.outcome, "uow_retried": retried}
            if error is not None:
                fields["uow_reason"] = reason(error)
            block.debug(
                "attempt",
                "attempt %d of unit %d: %s%s",
                self.attempts,
                block.id,
                block.outcome,
                f", transient ({reason(error)})" if retried and error is not None else "",
                **fields,
            )

    def retrying(self, number: int, failure: BaseException | None, delay: float) -> None:
        """The loop runs another attempt, `delay` seconds after attempt `number` failed with `failure`."""

    def exhausted(self, error: BaseException) -> None:
        """The loop gave up (or failed before the next attempt): `error` propagates."""


class Observer:
    """Makes the watches of blocks and of retry loops; `uow.otel` installs a subclass as `observer`."""

    def block(self, session: Session, *, attempt: int | None, flavour: str, log: bool) -> BlockWatch:
        return BlockWatch(session, attempt=attempt, flavour=flavour, log=log)

    def run(self, *, flavour: str, log: bool) -> RunWatch:
        return RunWatch(flavour=flavour, log=log)


observer: Observer | None = None
"""The installed observer; `None` (the default) leaves units unobserved but for DEBUG logging."""

_LOGGING = Observer()


def open_block(session: Session, attempt: int | None, flavour: str) -> BlockWatch | None:
    """The watch of a block that starts now, if anything watches it (refills logging's cache)."""
    log = logger.isEnabledFor(DEBUG)
    chosen = observer if observer is not None else _LOGGING if log else None
    return None if chosen is None else chosen.block(session, attempt=attempt, flavour=flavour, log=log)


def open_run(flavour: str) -> RunWatch | None:
    """The watch of a retry loop whose first attempt starts now, if anything watches it."""
    log = logger.isEnabledFor(DEBUG)
    chosen = observer if observer is not None else _LOGGING if log else None
    return None if chosen is None else chosen.run(flavour=flavour, log=log)
