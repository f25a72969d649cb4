"""Read replicas: a session factory that sends read-only units to replicas and the rest to the primary.

A [`ReplicaRouter`][uow.ReplicaRouter] is the session factory of the units that use it. Its sessions
decide where they go at their first statement, once per unit block, from the unit's options:

| the unit | reads and writes on |
|---|---|
| not read-only (or a session no unit manages) | the primary |
| read-only, SERIALIZABLE, on PostgreSQL | the primary: hot standbys refuse serializable transactions |
| read-only, every replica left out after refusing a connection | the primary |
| read-only, after a commit in this thread or task, the replica still behind at the timeout | the primary |
| any other read-only unit | a replica, chosen by the policy |

Read-your-writes follows the commits made through the router in the current context (thread or
task, as `contextvars` see it). A replica is known to be caught up from a point in time on: after
waiting for it (PostgreSQL: its replay position against the primary's WAL position; Galera:
`wsrep_sync_wait`), every commit made before the wait began is visible on it, so later units skip
the wait. The units themselves are untouched: everything here lives in the router's session class.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from sqlalchemy import Engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from uow._classify import mysql_errno, sqlstate
from uow._errors import InvalidArgumentError, ReplicaWriteError
from uow._listeners import ledger_of

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, ExceptionContext

__all__ = [
    "DEFAULT_READ_YOUR_WRITES",
    "RandomReplica",
    "ReadYourWrites",
    "Replica",
    "ReplicaRouter",
    "RoundRobin",
    "RoutedSession",
    "Routing",
    "check_policy",
    "check_rule",
    "routed_class",
]

logger = logging.getLogger("uow")

E = TypeVar("E")

_PG_READ_ONLY = "25006"  # read_only_sql_transaction: a hot standby, or a READ ONLY transaction
# MariaDB/MySQL: ER_OPTION_PREVENTS_STATEMENT (with --read-only), ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION.
_MYSQL_READ_ONLY = frozenset({1290, 1792})
_MYSQL_DIALECTS = frozenset({"mysql", "mariadb"})
# Galera's ER_UNKNOWN_COM_ERROR: "WSREP has not yet prepared node for application use".
_WSREP_NOT_READY = 1047
_FIRST_POLL = 0.0005
_LONGEST_POLL = 0.02

_PG_INSERT_LSN = text("SELECT pg_current_wal_insert_lsn()::text")
# A server that is not in recovery (a promoted replica, or the primary itself) has every commit.
_PG_REPLAYED = text(
    "SELECT coalesce(pg_last_wal_replay_lsn() >= CAST(CAST(:lsn AS TEXT) AS pg_lsn), NOT pg_is_in_recovery())"
)


# -- policies -----------------------------------------------------------------------------------


class RoundRobin:
    """Choose the available replicas in turn: one unit after another goes to the next one.

    Thread-safe; with replicas left out for a while, the turn goes on over those that remain.
    """

    __slots__ = ("_turns",)

    def __init__(self) -> None:
        self._turns = itertools.count()

    def __call__(self, replicas: Sequence[E], /) -> E:
        return replicas[next(self._turns) % len(replicas)]

    def __repr__(self) -> str:
        return "RoundRobin()"


class RandomReplica:
    """Choose one of the available replicas at random, each as likely as the others.

    Args:
        rng: Draws a float in `[0, 1)`; replace it for a reproducible choice.
    """

    __slots__ = ("_rng",)

    def __init__(self, rng: Callable[[], float] = random.random) -> None:
        self._rng = rng

    def __call__(self, replicas: Sequence[E], /) -> E:
        return replicas[min(int(self._rng() * len(replicas)), len(replicas) - 1)]

    def __repr__(self) -> str:
        return "RandomReplica()"


@dataclass(frozen=True, slots=True)
class ReadYourWrites:
    """After a unit commits through a router, later read-only units in the same context see that commit.

    The context is the thread, or the asyncio task (child tasks start with a copy of their parent's).
    A read-only unit that starts after a commit in its context either reads from a replica that has
    caught up with that commit or reads from the primary; it never reads older data than the commit.

    By default the unit waits, at most `timeout` seconds, for the replica it was given to catch up:
    on PostgreSQL until the replica has replayed the primary's WAL up to the commit
    (`pg_last_wal_replay_lsn()` against `pg_current_wal_insert_lsn()`, polled from 0.5 ms up to
    20 ms apart); on MariaDB Galera by one statement run with `wsrep_sync_wait = 1`, which makes the
    node apply every write set the cluster had ordered (its own bound is the provider's
    `repl.causal_read_timeout`). Past the timeout, the unit reads from the primary. On any other
    dialect, where there is no way to ask a replica, units read from the primary until `timeout`
    seconds have passed since the commit. A replica known to have caught up after a commit is not
    asked again for that commit; one that cannot be asked (an error) leaves the unit to the primary
    and the error is logged to the `uow` logger.

    With `primary_window`, read-only units read from the primary for that many seconds after each
    commit in their context instead, with no waiting and no extra round trip.

    Attributes:
        timeout: The longest wait for a replica, in seconds; with 0 the replica is asked once and
            the unit reads from the primary if it has not caught up.
        primary_window: Read from the primary for this many seconds after a commit, instead of
            waiting for the replica; `None` waits.
    """

    timeout: float = 1.0
    primary_window: float | None = None

    def __post_init__(self) -> None:
        for name in ("timeout", "primary_window"):
            value = getattr(self, name)
            if value is None and name == "primary_window":
                continue
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise InvalidArgumentError(
                    f"ReadYourWrites.{name} must be a non-negative number, got {value!r}"
                )


DEFAULT_READ_YOUR_WRITES = ReadYourWrites()

_serials = itertools.count(1)
_last_commits: ContextVar[Mapping[int, float] | None] = ContextVar("uow_last_commits", default=None)
"""When the current context last committed through each router (by serial), on `time.monotonic()`."""


def _committed(serial: int) -> None:
    commits = _last_commits.get()
    _last_commits.set({**commits, serial: time.monotonic()} if commits else {serial: time.monotonic()})


def _last_commit(serial: int) -> float | None:
    commits = _last_commits.get()
    return None if commits is None else commits.get(serial)


# -- the replicas -------------------------------------------------------------------------------


class Replica:
    """One replica of a router: its engine, and what the router learned about it."""

    __slots__ = ("down_until", "engine", "galera", "given", "name", "synced_at", "variants")

    def __init__(self, given: Any, engine: Engine) -> None:
        self.given = given
        """The engine as the router was given it (an `AsyncEngine` for an async router)."""
        self.engine = engine
        self.name = engine.url.render_as_string(hide_password=True)
        self.down_until = 0.0
        """Left out of the choice until then (`time.monotonic()`), after refusing a connection."""
        self.synced_at = float("-inf")
        """Every commit on the primary before this moment (`time.monotonic()`) is visible here."""
        self.galera: bool | None = None
        self.variants: dict[tuple[tuple[str, Any], ...], Engine] = {}

    def variant(self, options: dict[str, Any]) -> Engine:
        """This replica's engine with the execution options a unit asked of the primary's."""
        if not options:
            return self.engine
        try:
            key = tuple(sorted(options.items()))
            engine = self.variants.get(key)
        except TypeError:  # an option value that cannot be a key: not cached
            return self.engine.execution_options(**options)
        if engine is None:
            engine = self.variants[key] = self.engine.execution_options(**options)
        return engine

    def caught_up(self, moment: float) -> None:
        if moment > self.synced_at:
            self.synced_at = moment


class Routing:
    """What a router decides, flavour-neutral: the sync and async routers' sessions ask it."""

    __slots__ = (
        "_by_id",
        "_primary_lsn",
        "cooldown",
        "is_async",
        "policy",
        "primary",
        "read_your_writes",
        "replicas",
        "serial",
    )

    def __init__(
        self,
        primary: Engine,
        replicas: list[Replica],
        policy: Callable[[Sequence[Any]], Any],
        read_your_writes: ReadYourWrites | None,
        cooldown: float,
        *,
        is_async: bool,
    ) -> None:
        self.serial = next(_serials)
        self.primary = primary
        self.replicas = replicas
        self._by_id = {id(replica.given): replica for replica in replicas}
        self.policy = policy
        self.read_your_writes = read_your_writes
        self.cooldown = cooldown
        self.is_async = is_async
        self._primary_lsn: tuple[float, str] | None = None
        for replica in replicas:
            event.listen(replica.engine, "handle_error", _on_replica_error(self, replica), retval=True)

    # -- where a session goes -------------------------------------------------------------------

    def route(self, session: RoutedSession) -> Engine | Connection:
        """The engine for `session`'s unit; records the replica chosen, if any, on the session."""
        bind = session.bind
        assert bind is not None  # the router's sessionmaker binds every session to the primary
        ledger = ledger_of(session)
        if ledger is None or not ledger.options.read_only or not isinstance(bind, Engine):
            return bind  # a session bound to a Connection (a test's outer transaction) stays there
        options = _added_options(bind, self.primary)
        if options.get("isolation_level") == "SERIALIZABLE" and bind.dialect.name == "postgresql":
            return bind
        replica = self._choose()
        if replica is None:
            return bind
        if self.read_your_writes is not None:
            committed = _last_commit(self.serial)
            if committed is not None and not self._caught_up(replica, committed, self.read_your_writes):
                return bind
        session._uow_replica = replica
        return replica.variant(options)

    def _choose(self) -> Replica | None:
        now = time.monotonic()
        available = [replica for replica in self.replicas if replica.down_until <= now]
        if not available:
            return None
        chosen = self.policy([replica.given for replica in available])
        replica = self._by_id.get(id(chosen))
        if replica is None or replica not in available:
            raise InvalidArgumentError(
                f"the replica policy {self.policy!r} returned {chosen!r}, which is not one of the "
                "available replicas it was given"
            )
        return replica

    # -- read-your-writes -----------------------------------------------------------------------

    def _caught_up(self, replica: Replica, committed: float, rule: ReadYourWrites) -> bool:
        """Whether `replica` shows the commit made at `committed`, after waiting for it if need be."""
        if rule.primary_window is not None:
            return time.monotonic() - committed >= rule.primary_window
        if replica.synced_at > committed:
            return True
        deadline = time.monotonic() + rule.timeout
        try:
            return self._wait(replica, committed, deadline, rule)
        except Exception as exc:  # the unit reads from the primary, which answers for itself
            logger.warning(
                "could not learn whether replica %s caught up (%r); reading from the primary",
                replica.name,
                exc,
            )
            return False

    def _wait(self, replica: Replica, committed: float, deadline: float, rule: ReadYourWrites) -> bool:
        dialect = replica.engine.dialect
        if dialect.name == "postgresql":
            return self._wait_for_replay(replica, committed, deadline)
        if dialect.name in _MYSQL_DIALECTS:
            with replica.engine.connect() as connection:
                if replica.galera is None:
                    replica.galera = str(connection.scalar(text("SELECT @@wsrep_on"))).upper() in {"1", "ON"}
                if replica.galera:
                    started = time.monotonic()
                    _sync_wait(connection)
                    replica.caught_up(started)
                    return True
        # No way to ask this replica: read from the primary until the timeout has passed.
        return time.monotonic() - committed >= rule.timeout

    def _wait_for_replay(self, replica: Replica, committed: float, deadline: float) -> bool:
        observed, lsn = self._lsn_after(committed)
        with replica.engine.connect() as connection:
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            pause = _FIRST_POLL
            while not connection.scalar(_PG_REPLAYED, {"lsn": lsn}):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    logger.info(
                        "replica %s did not replay %s in time; reading from the primary",
                        replica.name,
                        lsn,
                    )
                    return False
                self._sleep(min(pause, remaining))
                pause = min(pause * 2, _LONGEST_POLL)
        replica.caught_up(observed)
        return True

    def _lsn_after(self, committed: float) -> tuple[float, str]:
        """A WAL position of the primary's that was read after `committed`, and when it was read."""
        known = self._primary_lsn
        if known is not None and known[0] > committed:
            return known
        started = time.monotonic()
        with self.primary.connect() as connection:
            lsn = connection.execution_options(isolation_level="AUTOCOMMIT").scalar(_PG_INSERT_LSN)
        assert isinstance(lsn, str)
        known = self._primary_lsn
        if known is None or started > known[0]:
            self._primary_lsn = (started, lsn)
        return started, lsn

    def _sleep(self, seconds: float) -> None:
        if self.is_async:
            from sqlalchemy.util import await_only

            await_only(asyncio.sleep(seconds))
        else:
            time.sleep(seconds)


def _sync_wait(connection: Connection) -> None:
    """Make a Galera node apply every write set the cluster ordered before this statement."""
    if connection.dialect.is_mariadb:  # type: ignore[attr-defined]  # the MySQL dialects have it
        connection.exec_driver_sql("SET STATEMENT wsrep_sync_wait = 1 FOR SELECT 1")
        return
    previous = connection.scalar(text("SELECT @@SESSION.wsrep_sync_wait"))
    connection.exec_driver_sql("SET SESSION wsrep_sync_wait = 1")
    try:
        connection.exec_driver_sql("SELECT 1")
    finally:
        connection.exec_driver_sql(f"SET SESSION wsrep_sync_wait = {int(previous or 0)}")


_MISSING = object()


def _added_options(bind: Engine, primary: Engine) -> dict[str, Any]:
    """The execution options a unit set on its session's engine beyond the primary's own."""
    if bind is primary:
        return {}
    base = primary.get_execution_options()
    return {
        key: value for key, value in bind.get_execution_options().items() if base.get(key, _MISSING) != value
    }


# -- errors on a replica ------------------------------------------------------------------------


def _refuses_write(error: sa_exc.DBAPIError) -> bool:
    errno = mysql_errno(error)
    if errno is not None:
        return errno in _MYSQL_READ_ONLY and (errno != 1290 or "read" in str(error.orig).lower())
    return sqlstate(error) == _PG_READ_ONLY


def _out_of_cluster(error: sa_exc.DBAPIError) -> bool:
    """Whether a Galera node refused work because it is not in the primary component (leaving, joining)."""
    return mysql_errno(error) == _WSREP_NOT_READY and "wsrep" in str(error.orig).lower()


def _on_replica_error(
    routing: Routing, replica: Replica
) -> Callable[[ExceptionContext], BaseException | None]:
    """A `handle_error` listener for one replica's engine: name the replica in what goes wrong there.

    A refused write becomes a [`ReplicaWriteError`][uow.ReplicaWriteError]. A replica that cannot
    serve (it refused a connection, or is a Galera node outside the primary component) is left out of
    the choice for `cooldown` seconds and its error counts as a lost connection, so that `run()` runs
    the unit again, on another replica or on the primary.
    """

    def on_error(context: ExceptionContext) -> BaseException | None:
        error = context.sqlalchemy_exception
        if not isinstance(error, sa_exc.DBAPIError) or isinstance(
            getattr(context, "chained_exception", None), ReplicaWriteError
        ):
            return None
        if _refuses_write(error):
            return ReplicaWriteError(replica.name, context.statement)
        refused = context.connection is None and not context.is_pre_ping
        if refused or _out_of_cluster(error):
            replica.down_until = time.monotonic() + routing.cooldown
            context.is_disconnect = True
            what = (
                "refused a connection"
                if refused
                else "is not ready (outside the cluster's primary component)"
            )
            error.add_note(
                f"uow: the read replica {replica.name} {what}; read-only units go to the other replicas "
                f"or the primary for {routing.cooldown:g} s"
            )
            logger.warning("replica %s %s; left out for %g s", replica.name, what, routing.cooldown)
        elif context.is_disconnect:
            error.add_note(f"uow: the connection to the read replica {replica.name} was lost")
        return None

    return on_error


# -- the session --------------------------------------------------------------------------------


class RoutedSession(Session):
    """A session that asks its router where to go at its first statement."""

    _uow_routing: ClassVar[Routing]
    _uow_routed: Engine | Connection | None = None
    _uow_replica: Replica | None = None

    def get_bind(self, mapper: Any = None, *, clause: Any = None, bind: Any = None, **kw: Any) -> Any:
        if bind is not None:
            return super().get_bind(mapper, clause=clause, bind=bind, **kw)
        routed = self._uow_routed
        if routed is None:
            routed = self._uow_routed = type(self)._uow_routing.route(self)
        return routed


def _on_commit(session: RoutedSession) -> None:
    if session._uow_routed is not None and session._uow_replica is None:
        _committed(type(session)._uow_routing.serial)


def routed_class(base: type[Session], routing: Routing) -> type[RoutedSession]:
    """A session class of `base` whose sessions `routing` routes."""
    if not issubclass(base, Session):
        raise InvalidArgumentError(f"a router's sessions must be Session subclasses, got {base!r}")
    routed: type[RoutedSession] = type(
        f"Routed{base.__name__}", (RoutedSession, base), {"_uow_routing": routing}
    )
    event.listen(routed, "after_commit", _on_commit)
    return routed


def check_rule(read_your_writes: object, cooldown: object) -> None:
    if read_your_writes is not None and not isinstance(read_your_writes, ReadYourWrites):
        raise InvalidArgumentError(
            f"read_your_writes must be a ReadYourWrites or None, got {read_your_writes!r}"
        )
    if not isinstance(cooldown, int | float) or isinstance(cooldown, bool) or cooldown < 0:
        raise InvalidArgumentError(f"cooldown must be a non-negative number of seconds, got {cooldown!r}")


def check_policy(policy: object) -> None:
    if not callable(policy):
        raise InvalidArgumentError(
            f"policy must be a callable that takes the available replicas and returns one, got {policy!r}"
        )


class ReplicaRouter:
    """A session factory that sends read-only units to read replicas and every other unit to the primary.

    ```python
    router = ReplicaRouter(primary=engine, replicas=[replica_engine])

    with UnitOfWork(router) as unit:                  # the primary
        unit.repository(User).add(User(id="7", name="hanmeimei"))
        unit.commit()
    with UnitOfWork(router, read_only=True) as unit:  # a replica, caught up with the commit above
        unit.repository(User).get_one("7")
    ```

    A unit made with `read_only=True` reads from a replica chosen by `policy`; any other unit, and a
    session used without a unit, reads and writes on the primary. The choice is made at the unit's
    first statement and holds for its whole block; the unit's isolation level and read-only mode
    apply on the replica as on the primary. A read-only SERIALIZABLE unit on PostgreSQL reads from the
    primary, since hot standbys refuse serializable transactions.

    With `read_your_writes` (on by default), a read-only unit that starts after a commit made
    through this router in the same thread or task never reads data older than that commit: see
    [`ReadYourWrites`][uow.ReadYourWrites]. With `None`, replicas may lag behind the primary.

    A write that reaches a replica raises [`ReplicaWriteError`][uow.ReplicaWriteError]. A recovery
    conflict on a PostgreSQL standby (SQLSTATE 40001, "conflict with recovery") is a
    [`TransientError`][uow.TransientError] like any serialization failure, retried by `run()`. A
    replica that refuses a connection is left out for `cooldown` seconds, and the error counts as a
    lost connection, so that `run()` runs the unit again on another replica or on the primary.

    The router adds a `handle_error` listener to each replica's engine. It adds nothing to units that
    do not use it.
    """

    __slots__ = ("_factory", "_routing")

    def __init__(
        self,
        primary: Engine | sessionmaker[Session],
        replicas: Sequence[Engine | sessionmaker[Session]],
        *,
        policy: Callable[[Sequence[Engine]], Engine] | None = None,
        read_your_writes: ReadYourWrites | None = DEFAULT_READ_YOUR_WRITES,
        cooldown: float = 5.0,
    ) -> None:
        """Route units between `primary` and `replicas`.

        Args:
            primary: The primary's engine, or a `sessionmaker` bound to it, whose session class and
                options (`expire_on_commit`, ...) the router's sessions keep.
            replicas: The replicas' engines (or `sessionmaker`s bound to them); may be empty, which
                sends every unit to the primary.
            policy: Chooses a replica for each read-only unit: called with the available replicas'
                engines, returns one of them. [`RoundRobin`][uow.RoundRobin] by default;
                [`RandomReplica`][uow.RandomReplica] draws at random.
            read_your_writes: How read-only units see the commits made before them in their
                context; `None` lets them read whatever their replica has.
            cooldown: How long, in seconds, a replica that refused a connection is left out.

        Raises:
            InvalidArgumentError: An argument is not what is described here.
        """
        check_policy(policy or RoundRobin())
        check_rule(read_your_writes, cooldown)
        base, options, primary_engine = _sync_factory(primary, "primary")
        records = [Replica(given, given) for given in (_sync_factory(r, "replica")[2] for r in replicas)]
        self._routing = Routing(
            primary_engine, records, policy or RoundRobin(), read_your_writes, cooldown, is_async=False
        )
        self._factory: sessionmaker[Session] = sessionmaker(
            bind=primary_engine, class_=routed_class(base, self._routing), **options
        )

    def __call__(self) -> Session:
        """A new session, routed at its first statement."""
        return self._factory()

    @property
    def primary(self) -> Engine:
        """The primary's engine."""
        return self._routing.primary

    @property
    def replicas(self) -> tuple[Engine, ...]:
        """The replicas' engines, in the order given."""
        return tuple(replica.engine for replica in self._routing.replicas)

    def __repr__(self) -> str:
        return f"<ReplicaRouter primary={self._routing.primary.url!r} replicas={len(self._routing.replicas)}>"


def _sync_factory(target: object, role: str) -> tuple[type[Session], dict[str, Any], Engine]:
    """The session class, session options and engine that a router's `primary` or `replica` stands for."""
    if isinstance(target, Engine):
        return Session, {}, target
    if isinstance(target, sessionmaker):
        options = dict(target.kw)
        bind = options.pop("bind", None)
        if options.pop("binds", None):
            raise InvalidArgumentError(
                f"the {role}'s sessionmaker has binds= per mapper; a router needs one engine"
            )
        if isinstance(bind, Engine):
            return target.class_, options, bind
    raise InvalidArgumentError(f"the {role} must be an Engine or a sessionmaker bound to one, got {target!r}")
