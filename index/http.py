"""The index shard's HTTP API (`imgkit index`): internal, called by the ImgKit API only.

It trusts its caller for the account (the API has authenticated the request), so it must
listen on loopback or an internal network only, like the screenshot service.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Query
from pydantic import BaseModel, Field

from api.errors import install_error_handlers
from imgkit.errors import BadRequest, ServiceUnavailable
from imgkit.settings import Settings
from index.engine import Match
from index.feed import FeedOptions, IndexFeed
from index.service import CrossCheck, IndexService, check_kind, parse_hash

MAX_LIMIT = 1000


class MatchOut(BaseModel):
    id: str
    distance: int


class SimilarOut(BaseModel):
    matches: list[MatchOut]


class BatchIn(BaseModel):
    account: str = Field(min_length=1)
    kind: str = "phash"
    hashes: list[str] = Field(min_length=1, max_length=1000)
    dhashes: list[str] | None = Field(None, description="Cross-check: one dHash per hash.")
    max_distance: int = Field(8, ge=0, le=64)
    limit: int = Field(50, ge=1, le=MAX_LIMIT)
    dhash_max_distance: int = Field(12, ge=0, le=64)


class BatchOut(BaseModel):
    results: list[list[MatchOut]]


def _out(matches: list[Match]) -> list[MatchOut]:
    return [MatchOut(id=m.id, distance=m.distance) for m in matches]


def create_index_app(settings: Settings, options: FeedOptions | None = None,
                     service: IndexService | None = None) -> FastAPI:
    """The shard: its feed starts and stops with the app (a final snapshot on shutdown)."""
    index = service or IndexService(settings.index_engine)
    feed = IndexFeed(settings, index, options)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await feed.start()
        try:
            yield
        finally:
            await feed.stop()

    app = FastAPI(title="ImgKit index shard", lifespan=lifespan)
    app.state.feed = feed
    install_error_handlers(app)

    def ready() -> None:
        if feed.status.state != "ready":
            raise ServiceUnavailable(f"index shard {feed.shard_label} is {feed.status.state}",
                                     state=feed.status.state)

    @app.get("/similar", response_model=SimilarOut)
    async def similar(account: str = Query(..., min_length=1), hash: str = Query(...),
                      kind: str = Query("phash"), max_distance: int = Query(8, ge=0, le=64),
                      limit: int = Query(50, ge=1, le=MAX_LIMIT), dhash: str | None = Query(None),
                      dhash_max_distance: int = Query(12, ge=0, le=64)) -> SimilarOut:
        """Ids of `account` within `max_distance` of `hash`, the first `limit` by (distance, id).
        With `dhash`: only matches whose dHash is within `dhash_max_distance` of it."""
        ready()
        check = CrossCheck(parse_hash(dhash, "dhash"), dhash_max_distance) if dhash else None
        found = index.similar(account, check_kind(kind), parse_hash(hash), max_distance, limit, check)
        return SimilarOut(matches=_out(found))

    @app.post("/similar/batch", response_model=BatchOut)
    async def similar_batch(body: BatchIn) -> BatchOut:
        """Several queries of one account at once (bulk deduplication)."""
        ready()
        check_kind(body.kind)
        queries = [parse_hash(h) for h in body.hashes]
        if body.dhashes is not None and len(body.dhashes) != len(queries):
            raise BadRequest("dhashes must have one entry per hash")
        checks = ([CrossCheck(parse_hash(d, "dhash"), body.dhash_max_distance) for d in body.dhashes]
                  if body.dhashes is not None else [None] * len(queries))
        return BatchOut(results=[
            _out(index.similar(body.account, body.kind, q, body.max_distance, body.limit, c))
            for q, c in zip(queries, checks, strict=True)])

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        status = feed.status
        return {"status": "ok" if status.state == "ready" else status.state,
                "topic": feed.topic, "shard": feed.shard_label, "partitions": feed.partitions,
                "engine": index.engine, "counts": index.counts(), "indexes": len(index.indexes),
                "applied_offsets": {str(p): o for p, o in sorted(feed.offsets.items())},
                "lag": feed.lag(), "records_applied": index.applied, "loaded_from": status.source,
                "load_seconds": status.loaded_seconds, "snapshots": status.snapshots,
                "last_snapshot_at": status.last_snapshot_at, "skipped_records": status.skipped,
                "memory_bytes": index.indexes.memory_bytes(), "error": status.error or None}

    return app


def serve(settings: Settings, options: FeedOptions, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(create_index_app(settings, options), host=host, port=port, log_config=None,
                access_log=False, timeout_graceful_shutdown=10)
