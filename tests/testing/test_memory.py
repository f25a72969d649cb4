"""The in-memory unit is the real unit on SQLite: what SQL does, it does (a cosmicpython-style service)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Boolean, Column, ForeignKey, Integer, MetaData, String, Table, inspect
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import registry, relationship

import uow
from tests.models import Account, Base, Tag
from uow.testing import AsyncInMemoryUnitOfWork, InMemoryStore, InMemoryUnitOfWork, UnsupportedSchemaError


class Product:
    def __init__(self, sku: str, batches: list[Batch] | None = None) -> None:
        self.sku = sku
        self.batches = batches or []


class Batch:
    def __init__(self, ref: str, qty: int, active: bool = True) -> None:
        self.ref = ref
        self.qty = qty
        self.active = active


def map_model() -> MetaData:
    """Map the aggregate imperatively, as cosmicpython's orm.start_mappers() does before each test."""
    metadata = MetaData()
    products = Table("products", metadata, Column("sku", String(20), primary_key=True))
    batches = Table(
        "batches",
        metadata,
        Column("ref", String(20), primary_key=True),
        Column("sku", ForeignKey("products.sku"), nullable=False),
        Column("qty", Integer, nullable=False),
        Column("active", Boolean, nullable=False),
    )
    mapper_registry = registry()
    mapper_registry.map_imperatively(Batch, batches)
    mapper_registry.map_imperatively(Product, products, properties={"batches": relationship(Batch)})
    return metadata


@pytest.fixture
def mappers() -> Iterator[MetaData]:
    """The aggregate mapped for one test and unmapped after it (cosmicpython's clear_mappers())."""
    metadata = map_model()
    yield metadata
    inspect(Product).registry.dispose()


def test_children_saved_through_a_relationship_are_stored(mappers: MetaData) -> None:
    store = InMemoryStore(mappers)
    with InMemoryUnitOfWork(store) as unit:
        product = Product("CHAIR")
        product.batches.append(Batch("b1", 10))
        product.batches.append(Batch("b2", 5))
        unit.repository(Product).add(product)
        unit.commit()

    assert [(batch.ref, batch.qty) for batch in store.all(Batch)] == [("b1", 10), ("b2", 5)]
    with InMemoryUnitOfWork(store) as unit:
        assert [batch.ref for batch in unit.repository(Product).get_one("CHAIR").batches] == ["b1", "b2"]


def test_boolean_filters_work_as_in_sql(mappers: MetaData) -> None:
    store = InMemoryStore(mappers)
    store.insert(Product("LAMP", [Batch("on", 1), Batch("off", 2, active=False)]))
    with InMemoryUnitOfWork(store) as unit:
        batches = unit.repository(Batch)
        assert batches.count(active=True) == 1
        assert [batch.ref for batch in batches.list(Batch.active.is_(False))] == ["off"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("round_", [1, 2])
def test_the_store_works_after_the_classes_are_mapped_again(mappers: MetaData, round_: int) -> None:
    store = InMemoryStore(mappers)
    with InMemoryUnitOfWork(store) as unit:
        unit.repository(Product).add(Product(f"SKU-{round_}"))
        unit.commit()

    assert [product.sku for product in store.all(Product)] == [f"SKU-{round_}"]


def test_foreign_keys_are_enforced() -> None:
    store = InMemoryStore(Base)
    with InMemoryUnitOfWork(store) as unit:
        unit.session.add(Tag(id=1, account_id=404, label="orphan"))
        with pytest.raises(uow.IntegrityError):
            unit.commit()

    assert store.all(Tag) == []


def test_cascades_follow_the_relationship_configuration() -> None:
    store = InMemoryStore(Base)
    store.insert(Account(id=1, owner="ann", tags=[Tag(id=1, label="a"), Tag(id=2, label="b")]))
    with InMemoryUnitOfWork(store) as unit:
        unit.repository(Account).remove(unit.repository(Account).get_one(1))
        unit.commit()

    assert store.all(Tag) == []


def test_units_of_one_store_see_each_others_commits_and_other_stores_see_nothing() -> None:
    store, other = InMemoryStore(Base), InMemoryStore(Base)
    with InMemoryUnitOfWork(store) as unit:
        unit.repository(Account).add(Account(id=1, owner="ann"))
        unit.commit()

    with InMemoryUnitOfWork(store) as unit:
        assert unit.repository(Account).get_one(1).owner == "ann"
    assert other.all(Account) == []


def test_a_model_not_given_to_the_store_gets_its_tables_on_first_use() -> None:
    store = InMemoryStore()
    with InMemoryUnitOfWork(store) as unit:
        unit.repository(Account).add(Account(id=1, owner="ann"))
        unit.commit()

    assert [account.owner for account in store.all(Account)] == ["ann"]


def test_the_async_unit_shares_the_store() -> None:
    import asyncio

    store = InMemoryStore(Base)

    async def scenario() -> None:
        async with AsyncInMemoryUnitOfWork(store) as unit:
            await unit.repository(Account).add(Account(id=1, owner="ann"))
            await unit.commit()

    asyncio.run(scenario())
    assert [account.owner for account in store.all(Account)] == ["ann"]


def test_a_column_type_sqlite_cannot_create_is_named() -> None:
    metadata = MetaData()
    Table("uow_sized", metadata, Column("id", Integer, primary_key=True), Column("sizes", ARRAY(Integer)))

    with pytest.raises(UnsupportedSchemaError) as caught:
        InMemoryStore(metadata)

    assert (caught.value.table, caught.value.column) == ("uow_sized", "sizes")
    assert "uow_sized.sizes" in str(caught.value)


def test_clear_deletes_every_committed_row_children_first() -> None:
    store = InMemoryStore(Base)
    store.insert(Account(id=1, owner="ann", tags=[Tag(id=1, label="a")]))

    store.clear()

    assert (store.all(Account), store.all(Tag)) == ([], [])
