"""Account lookups on chDB: the cache, and one query for concurrent misses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from imgkit.accounts import AccountStore
from imgkit.db import Database, Row
from schemas.migrate import migrate


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"chdb://{tmp_path / 'ch'}")
    await migrate(database)
    yield database
    database.close()


def count_queries(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The list that receives the SQL of each of `db`'s queries from now on."""
    seen: list[str] = []
    real = db.query

    async def counting(sql: str, parameters: Mapping[str, Any] | None = None) -> list[Row]:
        seen.append(sql)
        return await real(sql, parameters)

    monkeypatch.setattr(db, "query", counting)
    return seen


async def test_concurrent_misses_share_one_query(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    store = AccountStore(db)
    first = (await store.create("first", "https://one.example/hook")).account
    second = (await store.create("second")).account
    store.cache_seconds = 0  # every lookup is a miss, as when the entry has just expired
    queries = count_queries(db, monkeypatch)

    found = await asyncio.gather(*(store.get(a) for a in [first.id, second.id, "acc_missing"] * 20))

    assert len(queries) == 1
    assert found[:3] == [first, second, None]
    assert found == found[:3] * 20


async def test_a_cached_account_costs_no_query(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    store = AccountStore(db)
    account = (await store.create("cached")).account
    assert await store.get(account.id) == account
    queries = count_queries(db, monkeypatch)

    assert await store.get(account.id) == account
    assert queries == []
    assert await store.get(account.id, fresh=True) == account
    assert len(queries) == 1
