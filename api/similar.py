"""Near-duplicates: `GET /images/{id}/similar` and `POST /similar` (by hash or by URL).

Similarity is the Hamming distance between 64-bit perceptual hashes (pHash by default;
`kind=dhash` for dHash). The index answers with ids; this module adds what a client
needs (url, size) from storage in one query, and drops ids storage no longer has (an
image deleted a moment ago, before its removal reached the index).

**dHash cross-check** (`cross_check=true`, pHash queries only): a pHash match is kept
only if its dHash is also within `dhash_max_distance` of the query's dHash. pHash and
dHash fail on different images (pHash looks at low DCT frequencies, dHash at
neighbouring-pixel gradients), so unrelated images rarely collide on both: the check
removes most false positives of a wide pHash radius while keeping resized and
recompressed copies (measured in `tests/bench/bench_similarity_quality.py`).

Measured (46 corpus cameras + 12 generated images, 1653 unrelated pairs): at pHash <= 8
resized and recompressed (q 30-90) copies are all found, 10 % of 5 %-crops and half of
2-5 degree rotations are missed, and no unrelated pair matches (the closest is at 16).
Wider radii find more crops and rotations (<= 12: 3 % / 17 % / 18 % missed for crops of
5 % / 10 % and rotations) with the margin to unrelated images shrinking to 4 bits; that
is where the cross-check (dHash <= 12 by default) is meant to be turned on.
"""

from __future__ import annotations

import asyncio
from typing import Literal, Self

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, field_validator, model_validator

from api.deps import current_account, get_runtime
from imaging.extract import extract
from imaging.fetch import fetch
from imgkit.accounts import Account
from imgkit.errors import BadRequest, FetchError, ImgKitError, NotFound, ServiceUnavailable
from imgkit.ids import is_valid_id
from imgkit.runtime import Runtime
from index.client import LocalIndex, ShardedIndex, SimilarityIndex
from index.engine import Match
from index.service import CrossCheck, IndexService, parse_hash
from schemas.images import ErrorBody, check_http_url

#: Defaults chosen from the measurements of `tests/bench/bench_similarity_quality.py`.
DEFAULT_MAX_DISTANCE = 8
DEFAULT_DHASH_MAX_DISTANCE = 12

Kind = Literal["phash", "dhash"]

router = APIRouter(tags=["similar"], responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody},
                                                429: {"model": ErrorBody}, 503: {"model": ErrorBody}})


class NotReady(ImgKitError):
    code = "image_not_completed"
    status = 409


class SimilarImage(BaseModel):
    id: str
    distance: int = Field(description="Hamming distance between the hashes (0 = same hash).")
    url: str
    width: int | None
    height: int | None
    byte_size: int | None


class SimilarQuery(BaseModel):
    hash: str | None = Field(None, description="A 64-bit perceptual hash as 16 hex digits (of `kind`).")
    url: str | None = Field(None, description="An image to download and hash (not stored).")
    dhash: str | None = Field(None, description="With `hash` and `cross_check`: the query's dHash.")
    kind: Kind = "phash"
    max_distance: int = Field(DEFAULT_MAX_DISTANCE, ge=0, le=32)
    limit: int = Field(20, ge=1, le=500)
    cross_check: bool = Field(False, description="Keep a pHash match only if its dHash is within "
                              "`dhash_max_distance` too.")
    dhash_max_distance: int = Field(DEFAULT_DHASH_MAX_DISTANCE, ge=0, le=32)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value)

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.hash is None) == (self.url is None):
            raise ValueError("give exactly one of `hash` and `url`")
        if self.cross_check and self.kind != "phash":
            raise ValueError("cross_check applies to pHash queries (kind=phash)")
        if self.cross_check and self.hash is not None and self.dhash is None:
            raise ValueError("cross_check with a `hash` needs the query's `dhash` too")
        return self


def similarity_index(request: Request, runtime: Runtime = Depends(get_runtime)) -> SimilarityIndex:
    """The shards of `IMGKIT_INDEX_URLS`, else the index inside this process (`imgkit dev`)."""
    urls = runtime.settings.index_urls
    if urls:
        sharded: ShardedIndex | None = getattr(request.app.state, "similarity_index", None)
        if sharded is None:
            sharded = request.app.state.similarity_index = ShardedIndex(urls)
        return sharded
    if isinstance(runtime.context.index, IndexService):
        return LocalIndex(runtime.context.index)
    raise ServiceUnavailable("no near-duplicate index here: this process runs in "
                             f"`{runtime.mode.value}` mode; set IMGKIT_INDEX_URLS to the `imgkit index` "
                             "shards (or run `imgkit dev`, which has the index in process)")


async def _describe(runtime: Runtime, account_id: str, matches: list[Match],
                    limit: int) -> list[SimilarImage]:
    """Matches with their stored url and size, in match order; ids storage lacks are dropped."""
    if not matches:
        return []
    rows = await runtime.db.query(
        "SELECT id, url, width, height, byte_size FROM images FINAL WHERE account_id = {a:String} "
        "AND id IN {ids:Array(String)} AND status = 'completed'",
        {"a": account_id, "ids": [m.id for m in matches]})
    by_id = {row["id"]: row for row in rows}
    found = [SimilarImage(id=m.id, distance=m.distance, url=row["url"], width=row["width"] or None,
                          height=row["height"] or None, byte_size=row["byte_size"] or None)
             for m in matches if (row := by_id.get(m.id)) is not None]
    return found[:limit]


@router.get("/images/{image_id}/similar", response_model=list[SimilarImage],
            responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}})
async def similar_to_image(
        image_id: str, max_distance: int = Query(DEFAULT_MAX_DISTANCE, ge=0, le=32),
        limit: int = Query(20, ge=1, le=500), kind: Kind = Query("phash"),
        cross_check: bool = Query(False), dhash_max_distance: int = Query(DEFAULT_DHASH_MAX_DISTANCE,
                                                                          ge=0, le=32),
        account: Account = Depends(current_account), runtime: Runtime = Depends(get_runtime),
        index: SimilarityIndex = Depends(similarity_index)) -> list[SimilarImage]:
    """Images of this account whose hash is within `max_distance` of this image's, nearest
    first (ties by id), the image itself excluded. 409 until the image is `completed`."""
    row = await runtime.images.get_row(account.id, image_id) if is_valid_id(image_id, "img") else None
    if row is None:
        raise NotFound(f"no image {image_id!r} in this account", image_id=image_id)
    if row["status"] != "completed" or not row[kind]:
        raise NotReady(f"image {image_id} is {row['status']}; similarity needs a completed image",
                       image_id=image_id, image_status=row["status"])
    if cross_check and kind != "phash":
        raise BadRequest("cross_check applies to pHash queries (kind=phash)")
    check = CrossCheck(parse_hash(row["dhash"], "dhash"), dhash_max_distance) if cross_check else None
    matches = await index.similar(account.id, kind, parse_hash(row[kind], kind), max_distance,
                                  limit + 1, check)
    return await _describe(runtime, account.id, [m for m in matches if m.id != image_id], limit)


@router.post("/similar", response_model=list[SimilarImage])
async def similar_to(body: SimilarQuery, account: Account = Depends(current_account),
                     runtime: Runtime = Depends(get_runtime),
                     index: SimilarityIndex = Depends(similarity_index)) -> list[SimilarImage]:
    """Images of this account near a hash, or near an image at a URL (downloaded through the
    guarded fetcher and hashed, not stored); nearest first."""
    if body.url is not None:
        try:
            fetched = await fetch(body.url, runtime.settings, runtime.context.fetch_client)
        except FetchError as exc:
            # the *query's* URL failed, not this endpoint: always a 422 the client can act on
            # (a 404 here would read as "no such endpoint"), with the fetcher's code kept
            raise FetchError(exc.message, code=exc.code, status=422, **exc.context) from None
        async with runtime.context.cpu_gate:
            extraction = await asyncio.to_thread(
                extract, fetched.data, exif=False, xmp=False, palette=False,
                max_pixels=runtime.settings.max_pixels)
        query = parse_hash(extraction.phash if body.kind == "phash" else extraction.dhash, body.kind)
        dhash = parse_hash(extraction.dhash, "dhash")
    else:
        query = parse_hash(body.hash or "", "hash")
        dhash = parse_hash(body.dhash, "dhash") if body.dhash is not None else 0
    check = CrossCheck(dhash, body.dhash_max_distance) if body.cross_check else None
    matches = await index.similar(account.id, body.kind, query, body.max_distance, body.limit, check)
    return await _describe(runtime, account.id, matches, body.limit)
