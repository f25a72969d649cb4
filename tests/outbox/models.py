"""The outbox's tables and the models the outbox specifications write beside them."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from uow import HasEvents
from uow.outbox import inbox_table, outbox_table


class Base(DeclarativeBase):
    pass


OUTBOX = outbox_table(Base.metadata)
INBOX = inbox_table(Base.metadata)


class Shipment(HasEvents, Base):
    """An aggregate with a database-generated key that records domain events."""

    __tablename__ = "uow_shipment"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    address: Mapped[str] = mapped_column(String(80))


class Ledger(Base):
    """The effects a consumer applies: one row per message applied, by message id (no uniqueness)."""

    __tablename__ = "uow_ledger_entry"

    entry: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    consumer: Mapped[str] = mapped_column(String(40))
    message_id: Mapped[str] = mapped_column(String(64))
