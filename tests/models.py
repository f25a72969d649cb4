"""Models the specifications use beside the reference scenario's ``User``."""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Enum, ForeignKey, Numeric, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from uow import AsyncRepository, HasEvents, Repository
from uow.examples.users import User


class Base(DeclarativeBase):
    pass


class Account(HasEvents, Base):
    """An account: NOT NULL and UNIQUE columns, an integer key, a relationship, domain events."""

    __tablename__ = "uow_account"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    owner: Mapped[str] = mapped_column(String(40))
    balance: Mapped[int] = mapped_column(default=0)
    email: Mapped[str | None] = mapped_column(String(80), unique=True)
    tags: Mapped[list[Tag]] = relationship(back_populates="account", cascade="all, delete-orphan")

    def __repr__(self) -> str:
        return f"Account({self.id}, {self.owner!r}, {self.balance})"


class Tag(Base):
    __tablename__ = "uow_tag"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    account_id: Mapped[int] = mapped_column(ForeignKey("uow_account.id"))
    label: Mapped[str] = mapped_column(String(20))
    account: Mapped[Account] = relationship(back_populates="tags")


class Transfer(Base):
    """The log of money moved between accounts: one row per transfer, so none is applied twice."""

    __tablename__ = "uow_transfer"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    source: Mapped[int]
    target: Mapped[int]
    amount: Mapped[int]


class Doctor(Base):
    """Doctors on call: the classic write-skew example."""

    __tablename__ = "uow_doctor"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    on_call: Mapped[bool]


class Counter(Base):
    """A counter under optimistic locking: every UPDATE checks and increments ``version``."""

    __tablename__ = "uow_counter"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    value: Mapped[int] = mapped_column(default=0)
    version: Mapped[int] = mapped_column()

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012  # SQLAlchemy's mapper configuration


class Colour(enum.Enum):
    red = "r"
    green = "g"


class Item(Base):
    """A row of every column type the filters convert, with a unique pair of fields."""

    __tablename__ = "uow_item"
    __table_args__ = (UniqueConstraint("shop", "sku"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    shop: Mapped[str] = mapped_column(String(20), default="main")
    sku: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(40))
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2), default=Decimal("0"))
    weight: Mapped[float] = mapped_column(default=0.0)
    stocked: Mapped[bool] = mapped_column(default=True)
    added: Mapped[date] = mapped_column(default=date(2024, 1, 1))
    seen: Mapped[datetime] = mapped_column(default=datetime(2024, 1, 1, 12, 0))
    ref: Mapped[uuid.UUID] = mapped_column(default=uuid.UUID(int=0))
    colour: Mapped[Colour] = mapped_column(Enum(Colour), default=Colour.red)
    note: Mapped[str | None] = mapped_column(String(200))


class UserRepository(Repository[User]):
    """A user's own repository: adds a query of its own."""

    def named(self, name: str) -> list[User]:
        return self.list(name=name, order_by="id")


class AsyncUserRepository(AsyncRepository[User]):
    async def named(self, name: str) -> list[User]:
        return await self.list(name=name, order_by="id")


__all__ = [
    "Account",
    "AsyncUserRepository",
    "Base",
    "Colour",
    "Counter",
    "Doctor",
    "Item",
    "Tag",
    "Transfer",
    "User",
    "UserRepository",
]
