"""`/images/{id}/annotations`: ask a vision provider about a stored image, read the answer.

The request is checked here as far as it can be without calling the provider
(feature names, image ready, provider known, configured and offering the
features), so a mistake is a clear 4xx now rather than a `failed` webhook later.
The work itself happens in the annotate agent; the answer comes by webhook and
through `GET /images/{id}` (merged per feature) or the request resource.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Response

from agents.annotate.providers import Provider, ProviderNotConfigured
from agents.annotate.store import AnnotationStore
from api.deps import current_account, get_runtime
from imgkit.accounts import Account
from imgkit.db import Row
from imgkit.errors import BadRequest, ImgKitError, NotFound
from imgkit.ids import is_valid_id, new_id
from imgkit.runtime import Runtime
from schemas.annotation_requests import AnnotationCreate, AnnotationRequestResource
from schemas.annotations import Feature
from schemas.events import AnnotationRequested
from schemas.images import ErrorBody

router = APIRouter(tags=["annotations"], responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody},
                                                    422: {"model": ErrorBody}, 429: {"model": ErrorBody}})

VALID_FEATURES = ", ".join(f.value for f in Feature)


class ImageNotReady(ImgKitError):
    """Annotations need the stored original, which exists once the image is `completed`."""

    code = "image_not_ready"
    status = 409


def parse_features(names: list[str]) -> list[Feature]:
    """The requested features, deduplicated in request order; 422 naming the valid ones."""
    if not names:
        raise BadRequest(f"`annotations` is empty: ask for at least one of {VALID_FEATURES}",
                         code="no_features")
    valid = {f.value for f in Feature}
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise BadRequest(f"unknown feature(s) {', '.join(repr(n) for n in unknown)}; valid features: "
                         f"{VALID_FEATURES}", code="unknown_feature", unknown=unknown)
    return list(dict.fromkeys(Feature(n) for n in names))


async def ready_image(runtime: Runtime, account_id: str, image_id: str) -> Row:
    """The image's row if it is in this account and completed; 404 / 409 otherwise."""
    row = await runtime.images.get_row(account_id, image_id) if is_valid_id(image_id, "img") else None
    if row is None:
        raise NotFound(f"no image {image_id!r} in this account", image_id=image_id)
    if row["status"] != "completed" or not row["checksum"]:
        hint = ("it failed and cannot be annotated" if row["status"] == "failed"
                else "retry once it is completed (its webhook says when)")
        raise ImageNotReady(f"image {image_id} is {row['status']}: {hint}", image_id=image_id,
                            image_status=row["status"])
    return row


async def provider_for(runtime: Runtime, asked: str | None) -> Provider:
    """The provider asked for, or the default. A provider the client named explicitly that
    cannot run here is the client's choice to change (422); the default one being unusable
    is the server's problem (503)."""
    name = asked or runtime.settings.vision_provider
    try:
        return await runtime.context.providers.get(name, runtime.settings)
    except ProviderNotConfigured as exc:
        if asked:
            raise ProviderNotConfigured(f"{exc.message} (choose another provider, or ask the "
                                        "operator to configure this one)", status=422,
                                        provider=name) from None
        raise


@router.post("/images/{image_id}/annotations", status_code=202, response_model=AnnotationRequestResource,
             responses={409: {"model": ErrorBody}, 503: {"model": ErrorBody}})
async def request_annotations(image_id: str, body: AnnotationCreate, response: Response,
                              account: Account = Depends(current_account),
                              runtime: Runtime = Depends(get_runtime)) -> AnnotationRequestResource:
    """Ask for features of a completed image. Answers at once with the request in status
    `pending`; an `annotations.completed` or `annotations.failed` webhook follows."""
    features = parse_features(body.annotations)
    row = await ready_image(runtime, account.id, image_id)
    provider = await provider_for(runtime, body.provider)
    provider.check_features(features)
    now = datetime.now(UTC)
    request = AnnotationRequested(
        annotation_id=new_id("ann"), image_id=image_id, account_id=account.id,
        checksum=row["checksum"], url=row["final_url"] or row["url"], provider=provider.name,
        features=features, passthrough=body.passthrough, webhook_url=body.webhook_url,
        requested_at=now)
    await AnnotationStore.of(runtime.db).write_pending(request)
    await runtime.request_annotations(request)
    response.headers["Location"] = f"/images/{image_id}/annotations/{request.annotation_id}"
    return AnnotationRequestResource(id=request.annotation_id, image_id=image_id, status="pending",
                                     provider=provider.name, features=features, created_at=now,
                                     updated_at=now, passthrough=body.passthrough)


@router.get("/images/{image_id}/annotations/{annotation_id}", response_model=AnnotationRequestResource)
async def get_annotation_request(image_id: str, annotation_id: str,
                                 account: Account = Depends(current_account),
                                 runtime: Runtime = Depends(get_runtime)) -> AnnotationRequestResource:
    """One annotation request: its status, and its result or error once done."""
    found = None
    if is_valid_id(image_id, "img") and is_valid_id(annotation_id, "ann") and \
            await runtime.images.get_row(account.id, image_id) is not None:
        found = await AnnotationStore.of(runtime.db).get(account.id, image_id, annotation_id)
    if found is None:
        raise NotFound(f"no annotation request {annotation_id!r} for image {image_id!r} in this "
                       "account", image_id=image_id, annotation_id=annotation_id)
    return found
