"""The annotate agent: one annotation request in, one `AnnotationCompleted` out.

For each request it
1. asks the result cache what it already knows of these bytes (by checksum)
   from this provider, so a repeated request, or the same image in another
   account, costs no provider call; only the missing features are sent;
2. reads the original from the source cache by checksum, downloading it again
   (through the one guarded downloader) if it was evicted — bytes never travel
   through the bus;
3. calls the provider, retrying retryable `ProviderError`s (rate limits, 5xx,
   timeouts) with exponential backoff and jitter, up to
   `annotate_max_attempts`; a non-retryable one fails the request at once;
4. emits the combined result, or `failed` with the provider's message.

Every failure a client can act on becomes a `failed` result rather than an
exception, so the store and webhook stages announce it; only unexpected bugs
propagate (the runner retries them, then dead-letters the request).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from agents.annotate.providers import Provider, ProviderError
from agents.annotate.store import AnnotationStore, CachedFeature
from agents.context import AgentContext
from agents.process import fetch_with_retries
from imgkit.errors import ImgKitError
from schemas.annotations import Annotations, Feature
from schemas.events import AnnotationCompleted, AnnotationRequested, ErrorInfo
from streams.topology import Emit, Topic

log = logging.getLogger("imgkit.agents.annotate")


class SourceChanged(ImgKitError):
    """The original was evicted and the URL now serves other bytes: annotating them would
    describe another image than the one stored."""

    code = "source_changed"
    status = 409


async def load_original(ctx: AgentContext, request: AnnotationRequested) -> bytes:
    """The original's bytes: from the source cache, else downloaded again (and cached)."""
    data = await asyncio.to_thread(ctx.sources.read, request.checksum)
    if data is not None:
        return data
    log.info("original evicted; downloading it again", extra={"image_id": request.image_id})
    fetched = await fetch_with_retries(ctx, request.url)
    checksum = await asyncio.to_thread(ctx.sources.put, fetched.data)
    if checksum != request.checksum:
        raise SourceChanged(f"the image at {request.url} changed since it was processed; submit it "
                            "again to annotate the new one", url=request.url)
    return fetched.data


def backoff_delay(base: float, limit: float, attempt: int) -> float:
    """Exponential with jitter: between half and all of min(limit, base * 2^(attempt-1)), so
    retries of many requests hit by one rate limit spread out but never retry at once."""
    ceiling = min(limit, base * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


async def call_provider(ctx: AgentContext, provider: Provider, image: bytes,
                        features: set[Feature]) -> Annotations:
    settings = ctx.settings
    for attempt in range(1, settings.annotate_max_attempts + 1):
        try:
            return await provider.annotate(image, features)
        except ProviderError as exc:
            if not exc.retryable or attempt == settings.annotate_max_attempts:
                raise
            delay = backoff_delay(settings.annotate_backoff_base, settings.annotate_backoff_max, attempt)
            log.info("retrying provider", extra={"provider": provider.name, "attempt": attempt,
                                                 "delay": round(delay, 3), "error": exc.message})
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


def combine(provider: str, cached: dict[Feature, CachedFeature], answer: Annotations | None,
            fresh: set[Feature]) -> Annotations:
    """One result from the cached features and the provider's answer for the missing ones."""
    data: dict[str, object] = {"provider": provider}
    raw: dict[str, object] = {}
    for feature, part in cached.items():
        data[feature.value] = part.result
        raw.update(part.raw)
    if answer is not None:
        dumped = answer.model_dump(mode="json", exclude={"raw"})
        for feature in fresh:
            data[feature.value] = dumped[feature.value]
        raw.update(answer.raw)
    data["raw"] = raw
    return Annotations.model_validate(data)


def outcome(request: AnnotationRequested, **fields: Any) -> AnnotationCompleted:
    """The result event of `request`, carrying what the store and the webhook need."""
    return AnnotationCompleted(
        annotation_id=request.annotation_id, image_id=request.image_id,
        account_id=request.account_id, checksum=request.checksum, url=request.url,
        provider=request.provider, features=sorted(set(request.features)),
        passthrough=request.passthrough, webhook_url=request.webhook_url,
        requested_at=request.requested_at, completed_at=datetime.now(UTC), **fields)


async def annotate(ctx: AgentContext, request: AnnotationRequested,
                   completed: Topic[AnnotationCompleted]) -> Sequence[Emit]:
    wanted = set(request.features)
    try:
        provider = await ctx.providers.get(request.provider, ctx.settings)
        provider.check_features(wanted)
        cached = await AnnotationStore.of(ctx.db).cached(request.checksum, provider.name, wanted)
        missing = wanted - cached.keys()
        answer = None
        if missing:
            image = await load_original(ctx, request)
            answer = await call_provider(ctx, provider, image, missing)
        result = combine(provider.name, cached, answer, missing)
    except ImgKitError as exc:
        log.info("annotation failed", extra={"annotation_id": request.annotation_id,
                                             "error": exc.code, "detail": str(exc)})
        return [Emit(completed, outcome(request, status="failed",
                                        error=ErrorInfo(code=exc.code, message=exc.message)))]
    log.info("annotated", extra={"annotation_id": request.annotation_id, "provider": provider.name,
                                 "fresh": sorted(missing), "cached": sorted(cached)})
    return [Emit(completed, outcome(request, status="completed", fresh_features=sorted(missing),
                                    annotations=result))]
