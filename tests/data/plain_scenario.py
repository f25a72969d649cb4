"""The reference scenario in plain SQLAlchemy 2.0, as its documentation writes it.

The specification runs this beside ``python -m uow.examples.users`` and requires the same SQL.
"""

import sys

from sqlalchemy import String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "user"

    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(20))


engine = create_engine(sys.argv[1] if len(sys.argv) > 1 else "sqlite://", echo=True)
Base.metadata.create_all(engine)
Session = sessionmaker(bind=engine)

with Session() as session:
    session.add(User(id="5", name="Bob"))
    session.add(User(id="5", name="LILY"))
    session.rollback()

    session.add(User(id="7", name="hanmeimei"))
    session.commit()

    user = session.scalars(select(User).where(User.id == "7")).one()
    print("type:", type(user))
    print("name:", user.name)
