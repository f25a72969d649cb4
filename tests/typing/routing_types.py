"""Checked by ``mypy --strict`` in CI: routers are session factories that units accept as they are."""

from __future__ import annotations

from collections.abc import Sequence
from typing import assert_type

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, sessionmaker

from uow import (
    AsyncReplicaRouter,
    AsyncUnitOfWork,
    RandomReplica,
    ReadYourWrites,
    ReplicaRouter,
    RoundRobin,
    UnitOfWork,
)


def first(replicas: Sequence[Engine]) -> Engine:
    return replicas[0]


def sync_router(primary: Engine, replica: Engine, factory: sessionmaker[Session]) -> None:
    router = ReplicaRouter(
        primary, [replica], policy=RoundRobin(), read_your_writes=ReadYourWrites(timeout=0.5)
    )
    assert_type(router(), Session)
    assert_type(router.replicas, tuple[Engine, ...])
    ReplicaRouter(factory, [replica, factory], policy=first, read_your_writes=None)
    with UnitOfWork(router, read_only=True) as unit:
        assert_type(unit.session, Session)


async def async_router(
    primary: AsyncEngine, replica: AsyncEngine, factory: async_sessionmaker[AsyncSession]
) -> None:
    router = AsyncReplicaRouter(primary, [replica, factory], policy=RandomReplica())
    assert_type(router(), AsyncSession)
    assert_type(router.primary, AsyncEngine)
    AsyncReplicaRouter(factory, [], read_your_writes=ReadYourWrites(primary_window=2.0))
    async with AsyncUnitOfWork(router, read_only=True) as unit:
        assert_type(unit.session, AsyncSession)
