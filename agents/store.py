"""Stage 2: write results to ClickHouse in batches, then announce them as stored.

`ImageStore` also owns every read of the `images` table, so the API, the webhook
agent and recovery see one shape. Writes are idempotent: a replayed event writes
the same row with the same `version` (its revision), and ReplacingMergeTree keeps
one; reads use FINAL so they see the latest version only.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from agents.annotate.store import AnnotationStore
from agents.rows import from_json, latest_by, to_json, utc
from imgkit.db import BatchLoader, BatchWriter, Database, Row
from schemas.events import (
    ErrorInfo,
    ImageProcessed,
    ImageRequested,
    ImageStored,
    PaletteColour,
    revision,
)
from schemas.images import ImageResource
from streams.topology import Emit, Topic

IMAGES_LINGER = 0.005
"""Seconds a pending row (a POST) waits for company: concurrent POSTs then share one
insert (each chDB insert costs ~7 ms of CPU whatever its size, up to tens of rows); a
POST answers at most this much later."""

IMAGES_SPACING = 0.05
"""Least seconds between two inserts of pending rows while POSTs keep coming (with
IMAGES_QUIET): a burst of POSTs makes at most 20 inserts a second, and a POST under load
answers up to this much later."""

IMAGES_QUIET = 0.025
"""A pending batch goes once no POST has come for this long (BatchWriter.quiet), so a lone
POST, or the last of a burst, does not wait out IMAGES_SPACING."""

DELETED_VERSION = 2**63 - 1
"""The version of a deletion's row: the highest, so that no result or `processing` row
of the image written later (an image deleted while in the pipeline) brings it back."""

PIPELINE_SPACING = 0.25
"""Least seconds between two inserts of the pipeline's own rows (`processing`, results,
the stage log). A busy pipeline then makes four inserts a second per table, each with
a quarter second of rows, instead of one per image or two (each chDB insert costs ~7 ms
of CPU whatever its size: 1.3 calls per image were ~15% of the service's CPU in
tests/bench/bench_pipeline.py); a webhook leaves up to this much later. A quiet
pipeline writes at once (BatchWriter.spacing)."""

PIPELINE_QUIET = 0.1
"""A pipeline batch waiting out PIPELINE_SPACING goes once no row has come for this long
(BatchWriter.quiet): the last images of a burst are stored, and their webhooks sent, up
to 0.15 s sooner. Under load rows come every few tens of milliseconds, so the spacing holds."""

IMAGE_COLUMNS = (
    "id, account_id, version, created_at, updated_at, status, url, final_url, filename, content_type, "
    "checksum, byte_size, width, height, phash, dhash, exif, xmp, palette, passthrough, options, "
    "webhook_url, error_code, error_message")


def _base_row(image_id: str, account_id: str, version: int) -> Row:
    return {"account_id": account_id, "id": image_id, "version": version, "deleted": 0,
            "final_url": "", "filename": "", "content_type": "", "checksum": "", "byte_size": 0,
            "width": 0, "height": 0, "phash": "", "dhash": "", "exif": "", "xmp": "", "palette": "",
            "passthrough": "", "options": "", "webhook_url": "", "idempotency_key": "",
            "error_code": "", "error_message": "", "camera_make": "", "camera_model": "",
            "lens_model": "", "iso": None, "f_number": None, "exposure_time": None,
            "focal_length": None, "taken_at": None, "gps_latitude": None, "gps_longitude": None,
            "gps_altitude": None}


def request_row(request: ImageRequested, status: Literal["pending", "processing"],
                updated_at: datetime | None = None, version: int | None = None) -> Row:
    """The row of an image not finished yet: what was asked, nothing found yet."""
    created = utc(request.created_at or request.requested_at)
    row = _base_row(request.image_id, request.account_id, revision() if version is None else version)
    row.update(created_at=created, updated_at=utc(updated_at) or created, status=status,
               url=request.url, passthrough=to_json(request.passthrough),
               options=request.options.model_dump_json(), webhook_url=request.webhook_url or "",
               idempotency_key=request.idempotency_key or "")
    return row


def pending_row(request: ImageRequested) -> Row:
    """Written by the API when it accepts the request."""
    return request_row(request, "pending")


def processing_row(request: ImageRequested, version: int | None = None) -> Row:
    """Written by the process agent when it starts on the request. Its version (default: now)
    is older than the revision of the completed/failed result, taken later, which replaces it."""
    return request_row(request, "processing", updated_at=datetime.now(UTC), version=version)


def processed_row(event: ImageProcessed) -> Row:
    row = _base_row(event.image_id, event.account_id, event.revision)
    f = event.exif_fields
    row.update(
        created_at=utc(event.created_at), updated_at=utc(event.processed_at), status=event.status,
        url=event.url, final_url=event.final_url or "", filename=event.filename or "",
        content_type=event.content_type or "", checksum=event.checksum or "",
        byte_size=event.byte_size or 0, width=event.width or 0, height=event.height or 0,
        phash=event.phash or "", dhash=event.dhash or "", exif=to_json(event.exif), xmp=to_json(event.xmp),
        palette=to_json([c.model_dump() for c in event.palette] if event.palette is not None else None),
        passthrough=to_json(event.passthrough), options=event.options.model_dump_json(),
        webhook_url=event.webhook_url or "", idempotency_key=event.idempotency_key or "",
        error_code=event.error.code if event.error else "",
        error_message=event.error.message if event.error else "",
        camera_make=f.camera_make, camera_model=f.camera_model, lens_model=f.lens_model, iso=f.iso,
        f_number=f.f_number, exposure_time=f.exposure_time, focal_length=f.focal_length,
        taken_at=utc(f.taken_at), gps_latitude=f.gps_latitude, gps_longitude=f.gps_longitude,
        gps_altitude=f.gps_altitude)
    return row


def stage_rows(event: ImageProcessed) -> list[Row]:
    at = utc(event.processed_at)
    return [{"account_id": event.account_id, "image_id": event.image_id, "stage": s.stage,
             "outcome": s.outcome, "duration_ms": s.duration_ms, "error_code": s.error_code, "at": at}
            for s in event.stages]


def to_resource(row: Row, annotations: dict[str, Any] | None = None) -> ImageResource:
    error = ErrorInfo(code=row["error_code"], message=row["error_message"]) if row["error_code"] else None
    palette = from_json(row["palette"])
    return ImageResource(
        id=row["id"], created_at=utc(row["created_at"]), updated_at=utc(row["updated_at"]),
        status=row["status"], url=row["url"], final_url=row["final_url"] or None,
        filename=row["filename"] or None, content_type=row["content_type"] or None,
        checksum=row["checksum"] or None, byte_size=row["byte_size"] or None,
        width=row["width"] or None, height=row["height"] or None, exif=from_json(row["exif"]),
        xmp=from_json(row["xmp"]), phash=row["phash"] or None, dhash=row["dhash"] or None,
        palette=[PaletteColour(**c) for c in palette] if palette is not None else None,
        passthrough=from_json(row["passthrough"]), error=error, annotations=annotations)


_STORES: weakref.WeakKeyDictionary[Database, ImageStore] = weakref.WeakKeyDictionary()


class ImageStore:
    """Reads and writes of `images`. One per Database (`ImageStore.of(db)`), so concurrent
    lookups by id from many webhook deliveries share one query."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._by_id: BatchLoader[tuple[str, str], Row] = BatchLoader(self._rows_by_id)

    @classmethod
    def of(cls, db: Database) -> ImageStore:
        store = _STORES.get(db)
        if store is None:
            store = _STORES[db] = cls(db)
        return store

    async def _rows_by_id(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Row]:
        # On the full primary key: `id IN (...)` alone would scan every account's granules.
        rows = await self.db.query(
            f"SELECT {IMAGE_COLUMNS} FROM images FINAL "
            "WHERE (account_id, id) IN {keys:Array(Tuple(String, String))}", {"keys": sorted(set(keys))})
        return {(r["account_id"], r["id"]): r for r in rows}

    async def write_pending(self, request: ImageRequested) -> None:
        await self.db.writer("images", linger=IMAGES_LINGER, spacing=IMAGES_SPACING,
                             quiet=IMAGES_QUIET).write(pending_row(request))

    def _pipeline_writer(self) -> BatchWriter:
        return self.db.writer("images", spacing=PIPELINE_SPACING, quiet=PIPELINE_QUIET)

    async def write_processing(self, request: ImageRequested, version: int | None = None) -> None:
        """`version`: when processing started (see `processing_row`). Through the pipeline's
        batcher, so it shares an insert with other images' rows and results."""
        await self._pipeline_writer().write(processing_row(request, version))

    async def write_processed(self, events: Sequence[ImageProcessed]) -> None:
        # Through the shared batchers: every partition's store batch and the processing rows
        # share one insert per table (each chDB insert has a large fixed cost).
        await asyncio.gather(
            self._pipeline_writer().write_many([processed_row(e) for e in events]),
            self.db.writer("stage_events", spacing=PIPELINE_SPACING, quiet=PIPELINE_QUIET).write_many(
                [row for e in events for row in stage_rows(e)]))

    async def get_row(self, account_id: str, image_id: str) -> Row | None:
        return await self._by_id.load((account_id, image_id))

    async def get(self, account_id: str, image_id: str) -> ImageResource | None:
        row = await self.get_row(account_id, image_id)
        if row is None:
            return None
        return to_resource(row, await AnnotationStore.of(self.db).merged(account_id, image_id))

    async def page(self, account_id: str, limit: int, cursor: str | None) -> list[ImageResource]:
        """Newest first: KSUIDs sort by creation time, so `id < cursor` pages backwards in time."""
        where = "account_id = {a:String}" + (" AND id < {c:String}" if cursor else "")
        rows = await self.db.query(
            f"SELECT {IMAGE_COLUMNS} FROM images FINAL WHERE {where} ORDER BY id DESC "
            "LIMIT {n:UInt32}", {"a": account_id, "c": cursor or "", "n": limit})
        if not rows:
            return []
        # One query for the annotations of the whole page (as `get` has for one image).
        annotations = await AnnotationStore.of(self.db).merged_many(account_id, [r["id"] for r in rows])
        return [to_resource(r, annotations.get(r["id"])) for r in rows]

    async def find_by_idempotency_key(self, account_id: str, key: str) -> ImageResource | None:
        row = await self.db.query_one(
            f"SELECT {IMAGE_COLUMNS} FROM images FINAL WHERE account_id = {{a:String}} "
            "AND idempotency_key = {k:String} LIMIT 1", {"a": account_id, "k": key})
        return None if row is None else to_resource(row)

    async def delete(self, account_id: str, image_id: str) -> bool:
        row = await self.get_row(account_id, image_id)
        if row is None:
            return False
        tombstone = _base_row(image_id, account_id, DELETED_VERSION)
        tombstone.update(deleted=1, created_at=row["created_at"], updated_at=datetime.now(UTC),
                         status="deleted", url="")
        await self.db.insert("images", [tombstone])
        await self.db.command("ALTER TABLE stage_events DELETE WHERE account_id = {a:String} "
                              "AND image_id = {id:String}", {"a": account_id, "id": image_id})
        await AnnotationStore.of(self.db).delete_image(account_id, image_id)
        return True

    async def unfinished(self, limit: int = 10_000) -> list[Row]:
        """Images still pending or processing: after a crash of the embedded bus, they are
        submitted again (with everything `ImageRequested` carried, idempotency key included)."""
        return await self.db.query(
            "SELECT id, account_id, url, passthrough, options, webhook_url, idempotency_key, created_at "
            "FROM images FINAL WHERE status IN ('pending', 'processing') ORDER BY id "
            "LIMIT {n:UInt32}", {"n": limit})


async def store_batch(images: ImageStore, events: Sequence[ImageProcessed],
                      stored: Topic[ImageStored]) -> Sequence[Emit]:
    """One insert for the whole batch, then one `stored` event per image (after the write),
    carrying the resource as stored so that the webhook does not read it back."""
    latest = latest_by(events, lambda e: e.image_id)
    await images.write_processed(latest)
    return [Emit(stored, ImageStored(
        image_id=e.image_id, account_id=e.account_id, revision=e.revision,
        event_type="image.completed" if e.status == "completed" else "image.failed",
        webhook_url=e.webhook_url, resource=stored_resource(e))) for e in latest]


def stored_resource(event: ImageProcessed) -> dict[str, Any]:
    """The resource a read of the stored row returns: through the same row and the same
    `to_resource`, with times cut to the milliseconds of the DateTime64(3) columns."""
    row = processed_row(event)
    for name in ("created_at", "updated_at"):
        row[name] = row[name].replace(microsecond=row[name].microsecond // 1000 * 1000)
    return to_resource(row).model_dump(mode="json")
