"""`/images`: submit an image URL, read its result, list, delete."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Header, Query, Response

from api.deps import current_account, get_runtime
from imgkit.accounts import Account
from imgkit.errors import BadRequest, NotFound
from imgkit.ids import is_valid_id, new_id
from imgkit.runtime import Runtime
from schemas.events import ExtractOptions, ImageRequested
from schemas.images import ErrorBody, ImageCreate, ImageList, ImageResource

router = APIRouter(tags=["images"], responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody},
                                               429: {"model": ErrorBody}})

_idempotency_locks: dict[tuple[str, str], asyncio.Lock] = {}


def _not_found(image_id: str) -> NotFound:
    return NotFound(f"no image {image_id!r} in this account", image_id=image_id)


@router.post("/images", status_code=202, response_model=ImageResource)
async def create_image(body: ImageCreate, response: Response,
                       idempotency_key: str | None = Header(None, max_length=255),
                       account: Account = Depends(current_account),
                       runtime: Runtime = Depends(get_runtime)) -> ImageResource:
    """Queue an image for processing. Answers at once with the image in status `pending`;
    a webhook follows when it is `completed` or `failed`."""
    key = (account.id, idempotency_key or "")
    lock = _idempotency_locks.setdefault(key, asyncio.Lock()) if idempotency_key else asyncio.Lock()
    async with lock:
        if idempotency_key:
            existing = await runtime.images.find_by_idempotency_key(account.id, idempotency_key)
            if existing is not None:
                response.headers["Idempotent-Replayed"] = "true"
                return existing
        now = datetime.now(UTC)
        request = ImageRequested(
            image_id=new_id("img"), account_id=account.id, url=body.url,
            options=ExtractOptions(exif=body.exif, xmp=body.xmp, palette=body.palette),
            passthrough=body.passthrough, webhook_url=body.webhook_url, requested_at=now,
            created_at=now, idempotency_key=idempotency_key or None)
        await runtime.images.write_pending(request)
    if idempotency_key:
        _idempotency_locks.pop(key, None)
    await runtime.submit(request)
    response.headers["Location"] = f"/images/{request.image_id}"
    return ImageResource(id=request.image_id, created_at=now, updated_at=now, status="pending",
                         url=body.url, passthrough=body.passthrough)


@router.get("/images/{image_id}", response_model=ImageResource, responses={404: {"model": ErrorBody}})
async def get_image(image_id: str, account: Account = Depends(current_account),
                    runtime: Runtime = Depends(get_runtime)) -> ImageResource:
    if not is_valid_id(image_id, "img"):
        raise _not_found(image_id)
    image = await runtime.images.get(account.id, image_id)
    if image is None:
        raise _not_found(image_id)
    return image


@router.get("/images", response_model=ImageList)
async def list_images(limit: int = Query(20, ge=1, le=100), cursor: str | None = Query(None),
                      account: Account = Depends(current_account),
                      runtime: Runtime = Depends(get_runtime)) -> ImageList:
    """Newest first. `next_cursor` is absent on the last page."""
    if cursor is not None and not is_valid_id(cursor, "img"):
        raise BadRequest("cursor must be an image id from a previous page", cursor=cursor)
    page = await runtime.images.page(account.id, limit + 1, cursor)
    more = len(page) > limit
    page = page[:limit]
    return ImageList(data=page, next_cursor=page[-1].id if more and page else None)


@router.delete("/images/{image_id}", status_code=204, responses={404: {"model": ErrorBody}})
async def delete_image(image_id: str, account: Account = Depends(current_account),
                       runtime: Runtime = Depends(get_runtime)) -> Response:
    """Remove the image, its stage log and its entry in the near-duplicate index."""
    if not is_valid_id(image_id, "img") or not await runtime.images.delete(account.id, image_id):
        raise _not_found(image_id)
    await runtime.forget_hashes(account.id, image_id)
    return Response(status_code=204)
