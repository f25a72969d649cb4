"""The async twin of [`ReplicaRouter`][uow.ReplicaRouter], for `AsyncUnitOfWork`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from uow._errors import InvalidArgumentError
from uow._routing import (
    DEFAULT_READ_YOUR_WRITES,
    ReadYourWrites,
    Replica,
    RoundRobin,
    Routing,
    check_policy,
    check_rule,
    routed_class,
)

__all__ = ["AsyncReplicaRouter"]


class AsyncReplicaRouter:
    """An `AsyncSession` factory that sends read-only units to read replicas and the others to the primary.

    ```python
    router = AsyncReplicaRouter(primary=async_engine, replicas=[async_replica_engine])

    async with AsyncUnitOfWork(router, read_only=True) as unit:
        await unit.repository(User).get_one("7")
    ```

    It routes exactly as [`ReplicaRouter`][uow.ReplicaRouter] does; read-your-writes follows the
    commits of the current task (a task started from another sees its parent's commits), and waiting
    for a replica awaits on the event loop.
    """

    __slots__ = ("_factory", "_primary", "_routing")

    def __init__(
        self,
        primary: AsyncEngine | async_sessionmaker[AsyncSession],
        replicas: Sequence[AsyncEngine | async_sessionmaker[AsyncSession]],
        *,
        policy: Callable[[Sequence[AsyncEngine]], AsyncEngine] | None = None,
        read_your_writes: ReadYourWrites | None = DEFAULT_READ_YOUR_WRITES,
        cooldown: float = 5.0,
    ) -> None:
        """Route async units between `primary` and `replicas`.

        Args:
            primary: The primary's `AsyncEngine`, or an `async_sessionmaker` bound to it, whose
                session classes and options the router's sessions keep.
            replicas: The replicas' `AsyncEngine`s (or `async_sessionmaker`s bound to them).
            policy: As for [`ReplicaRouter`][uow.ReplicaRouter], called with `AsyncEngine`s.
            read_your_writes: As for [`ReplicaRouter`][uow.ReplicaRouter].
            cooldown: As for [`ReplicaRouter`][uow.ReplicaRouter].

        Raises:
            InvalidArgumentError: An argument is not what is described here.
        """
        check_policy(policy or RoundRobin())
        check_rule(read_your_writes, cooldown)
        async_class, sync_class, options, engine = _async_factory(primary, "primary")
        records = []
        for replica in replicas:
            given = _async_factory(replica, "replica")[3]
            records.append(Replica(given, given.sync_engine))
        self._routing = Routing(
            engine.sync_engine, records, policy or RoundRobin(), read_your_writes, cooldown, is_async=True
        )
        self._primary = engine
        self._factory: async_sessionmaker[AsyncSession] = async_sessionmaker(
            bind=engine,
            class_=async_class,
            sync_session_class=routed_class(sync_class, self._routing),
            **options,
        )

    def __call__(self) -> AsyncSession:
        """A new session, routed at its first statement."""
        return self._factory()

    @property
    def primary(self) -> AsyncEngine:
        """The primary's engine."""
        return self._primary

    @property
    def replicas(self) -> tuple[AsyncEngine, ...]:
        """The replicas' engines, in the order given."""
        return tuple(replica.given for replica in self._routing.replicas)

    def __repr__(self) -> str:
        return f"<AsyncReplicaRouter primary={self._primary.url!r} replicas={len(self._routing.replicas)}>"


def _async_factory(
    target: object, role: str
) -> tuple[type[AsyncSession], type[Session], dict[str, Any], AsyncEngine]:
    if isinstance(target, AsyncEngine):
        return AsyncSession, Session, {}, target
    if isinstance(target, async_sessionmaker):
        options = dict(target.kw)
        bind = options.pop("bind", None)
        sync_class = options.pop("sync_session_class", None) or Session
        if options.pop("binds", None):
            raise InvalidArgumentError(
                f"the {role}'s async_sessionmaker has binds= per mapper; a router needs one engine"
            )
        if isinstance(bind, AsyncEngine):
            return target.class_, sync_class, options, bind
    raise InvalidArgumentError(
        f"the {role} must be an AsyncEngine or an async_sessionmaker bound to one, got {target!r}"
    )
