"""Stage 1: download the image once, keep the original, extract everything.

Emits the result (or the failure) to `images.processed`, and the hashes to
`images.hashes` for the near-duplicate index. Transient download failures
(timeouts, 5xx, 429, refused connections) are retried here with exponential
backoff; anything else fails the image at once with a readable error: a 404
will not become a 200 by asking again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Sequence

from agents.context import AgentContext
from imaging.exif import ExifData
from imaging.extract import Extraction, extract
from imaging.fetch import Fetched, fetch, is_transient
from imgkit.errors import FetchError, ImgKitError
from schemas.events import (
    ErrorInfo,
    ExifFields,
    ImageHashes,
    ImageProcessed,
    ImageRequested,
    PaletteColour,
    StageTiming,
    revision,
)
from streams.topology import Emit, Topic

log = logging.getLogger("imgkit.agents.process")


async def fetch_with_retries(ctx: AgentContext, url: str) -> Fetched:
    delay = 0.5
    for attempt in range(1, ctx.settings.process_max_attempts + 1):
        try:
            return await fetch(url, ctx.settings, ctx.fetch_client)
        except FetchError as exc:
            if not is_transient(exc) or attempt == ctx.settings.process_max_attempts:
                raise
            log.info("retrying download", extra={"url": url, "attempt": attempt, "error": exc.code})
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay *= 2
    raise AssertionError("unreachable")


def exif_fields(exif: ExifData | None) -> ExifFields:
    if exif is None:
        return ExifFields()
    return ExifFields(camera_make=exif.make or "", camera_model=exif.model or "",
                      lens_model=exif.lens_model or "", iso=exif.iso, f_number=exif.f_number,
                      exposure_time=exif.exposure_time, focal_length=exif.focal_length,
                      taken_at=exif.taken_at, gps_latitude=exif.gps_latitude,
                      gps_longitude=exif.gps_longitude, gps_altitude=exif.gps_altitude)


def completed(request: ImageRequested, fetched: Fetched, ex: Extraction,
              stages: list[StageTiming]) -> ImageProcessed:
    return ImageProcessed(
        image_id=request.image_id, account_id=request.account_id, status="completed",
        url=request.url, final_url=fetched.final_url, filename=fetched.filename,
        content_type=ex.content_type, checksum=ex.checksum, byte_size=len(fetched.data),
        width=ex.width, height=ex.height,
        exif=dict(ex.exif.tags) if ex.exif else None, exif_fields=exif_fields(ex.exif), xmp=ex.xmp,
        phash=ex.phash, dhash=ex.dhash,
        palette=[PaletteColour(hex=h, share=round(s, 4)) for h, s in ex.palette]
        if request.options.palette else None,
        passthrough=request.passthrough, options=request.options, webhook_url=request.webhook_url,
        idempotency_key=request.idempotency_key,
        created_at=request.created_at or request.requested_at, stages=stages)


def failed(request: ImageRequested, error: ImgKitError, stages: list[StageTiming]) -> ImageProcessed:
    return ImageProcessed(
        image_id=request.image_id, account_id=request.account_id, status="failed", url=request.url,
        error=ErrorInfo(code=error.code, message=error.message), passthrough=request.passthrough,
        options=request.options, webhook_url=request.webhook_url,
        idempotency_key=request.idempotency_key,
        created_at=request.created_at or request.requested_at, stages=stages)


def keep_and_extract(ctx: AgentContext, request: ImageRequested, data: bytes) -> Extraction:
    """Hash the original once, keep it in the source cache, extract: one worker thread does
    it all, so the event loop neither hashes megabytes nor waits for two thread handoffs."""
    checksum = hashlib.sha256(data).hexdigest()
    ctx.sources.put(data, checksum)
    options = request.options
    return extract(data, exif=options.exif, xmp=options.xmp, palette=options.palette,
                   max_pixels=ctx.settings.max_pixels, checksum=checksum)


async def mark_processing(ctx: AgentContext, request: ImageRequested, version: int) -> None:
    """Write the image's `processing` row. The status is informative: if the write fails, the
    image still completes (its result is stored by the store agent), so this only logs."""
    try:
        await ctx.images.write_processing(request, version)
    except Exception as exc:
        log.warning("could not mark the image processing",
                    extra={"image_id": request.image_id, "error": repr(exc)})


_MARKING: set[asyncio.Task[None]] = set()
"""`processing` writes in flight (the loop keeps only weak references to tasks)."""


async def process_image(ctx: AgentContext, request: ImageRequested, processed: Topic[ImageProcessed],
                        hashes: Topic[ImageHashes]) -> Sequence[Emit]:
    # The `processing` row is written beside the work, not before it (a write waits for its
    # batch, up to PIPELINE_SPACING, which would hold up every download), and the result
    # does not wait for it either: its version is taken here, so the result's revision,
    # taken later, wins whichever row lands first; a row lost in a crash only loses the
    # informative status (the `pending` row brings the image back).
    marking = asyncio.create_task(mark_processing(ctx, request, revision()))
    _MARKING.add(marking)
    marking.add_done_callback(_MARKING.discard)
    return await _process(ctx, request, processed, hashes)


async def _process(ctx: AgentContext, request: ImageRequested, processed: Topic[ImageProcessed],
                   hashes: Topic[ImageHashes]) -> Sequence[Emit]:
    stages: list[StageTiming] = []
    started = time.perf_counter()
    try:
        fetched = await fetch_with_retries(ctx, request.url)
        stages.append(StageTiming(stage="download", duration_ms=(time.perf_counter() - started) * 1000))
        async with ctx.cpu_gate:
            ex = await asyncio.to_thread(keep_and_extract, ctx, request, fetched.data)
    except ImgKitError as exc:
        stage = "download" if not stages else "extract"
        stages.append(StageTiming(stage=stage, duration_ms=(time.perf_counter() - started) * 1000,
                                  outcome="error", error_code=exc.code))
        log.info("image failed", extra={"image_id": request.image_id, "error": exc.code,
                                        "detail": str(exc)})
        return [Emit(processed, failed(request, exc, stages))]
    stages.extend(StageTiming(stage=name, duration_ms=ms) for name, ms in ex.timings.items())
    result = completed(request, fetched, ex, stages)
    return [Emit(processed, result),
            Emit(hashes, ImageHashes(image_id=request.image_id, account_id=request.account_id,
                                     phash=ex.phash, dhash=ex.dhash))]
