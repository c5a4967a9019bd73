"""Where the API's similarity queries go: the in-process index, or every shard over HTTP.

`IMGKIT_INDEX_URLS` empty: the `IndexService` inside this process (`imgkit dev`). Set:
the query is sent to every shard concurrently and the answers are merged by (distance,
id). Shards hold disjoint images (split by Kafka partition) and each returns its first
`limit`, so the merge is exactly the answer one index over everything would give. A
shard that does not answer fails the query (503): a partial answer would silently miss
near-duplicates, which is worse than an error the client can retry.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import httpx

from imgkit.errors import ImgKitError, ServiceUnavailable
from index.engine import Match
from index.service import CrossCheck, IndexService, format_hash, merge_matches


class SimilarityIndex(Protocol):
    async def similar(self, account_id: str, kind: str, hash: int, max_distance: int, limit: int,
                      cross_check: CrossCheck | None = None) -> list[Match]: ...


class LocalIndex:
    """The in-process index (embedded mode)."""

    def __init__(self, service: IndexService) -> None:
        self.service = service

    async def similar(self, account_id: str, kind: str, hash: int, max_distance: int, limit: int,
                      cross_check: CrossCheck | None = None) -> list[Match]:
        return self.service.similar(account_id, kind, hash, max_distance, limit, cross_check)


class ShardedIndex:
    """Every shard of a cluster, queried concurrently over HTTP."""

    def __init__(self, urls: list[str], timeout: float = 5.0,
                 client: httpx.AsyncClient | None = None) -> None:
        if not urls:
            raise ValueError("no index shard URLs")
        self.urls = [u.rstrip("/") for u in urls]
        self.client = client or httpx.AsyncClient(timeout=timeout, trust_env=False)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _ask(self, url: str, params: dict[str, str | int]) -> list[Match]:
        try:
            response = await self.client.get(f"{url}/similar", params=params)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"the near-duplicate index shard at {url} is unreachable ({type(exc).__name__}); "
                "try again shortly", shard=url) from None
        if response.status_code >= 500:
            raise ServiceUnavailable(
                f"the near-duplicate index shard at {url} is not ready (HTTP {response.status_code}); "
                "try again shortly", shard=url)
        if response.status_code != 200:
            raise ImgKitError(f"the index shard at {url} refused the query: {response.text[:200]}",
                              code="index_error", status=502, shard=url)
        return [Match(m["id"], int(m["distance"])) for m in response.json()["matches"]]

    async def similar(self, account_id: str, kind: str, hash: int, max_distance: int, limit: int,
                      cross_check: CrossCheck | None = None) -> list[Match]:
        params: dict[str, str | int] = {"account": account_id, "hash": format_hash(hash), "kind": kind,
                                        "max_distance": max_distance, "limit": limit}
        if cross_check is not None:
            params["dhash"] = format_hash(cross_check.dhash)
            params["dhash_max_distance"] = cross_check.max_distance
        answers = await asyncio.gather(*(self._ask(url, params) for url in self.urls))
        return merge_matches(answers, limit)
