"""Annotation storage: request rows, the shared result cache, and the store agent.

`AnnotationStore` owns every read and write of the `annotations` and
`annotation_cache` tables (schemas/migrations/0002_annotations.sql), so the
API, the annotate agent, the webhook agent and image deletion see one shape.

The result cache is keyed by (checksum, provider, feature): the same bytes
asked the same question of the same provider get the same answer, whichever
account or request asks, so each feature is paid for once per distinct image.
Writes are idempotent like the rest of storage: a replayed event writes the
same rows with the same version, and ReplacingMergeTree keeps one.

This module does not import `agents.store` (which imports it, to attach the
merged annotations to the image resource).
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agents.rows import latest_by, to_json, utc
from imgkit.db import BatchLoader, Database, Row
from schemas.annotation_requests import AnnotationRequestResource
from schemas.annotations import Annotations, Feature
from schemas.events import (
    AnnotationCompleted,
    AnnotationRequested,
    AnnotationStored,
    ErrorInfo,
    revision,
)
from streams.topology import Emit, Topic

RAW_KEYS: dict[str, dict[Feature, tuple[str, ...]]] = {
    "google": {
        Feature.labels: ("labelAnnotations",),
        Feature.landmarks: ("landmarkAnnotations",),
        Feature.text: ("textAnnotations", "fullTextAnnotation"),
        Feature.safe_search: ("safeSearchAnnotation",),
        Feature.properties: ("imagePropertiesAnnotation", "cropHintsAnnotation"),
        Feature.web_entities: ("webDetection",),
        Feature.faces: ("faceAnnotations",),
        Feature.objects: ("localizedObjectAnnotations",),
    },
}
"""Which keys of a provider's `raw` answer belong to which feature, for providers that answer
several features in one call. A provider not listed keeps its whole `raw` with each feature
(right for `local` and `tesseract`, which offer one feature each)."""

ANNOTATION_COLUMNS = (
    "account_id, image_id, id, version, deleted, created_at, updated_at, status, provider, features, "
    "cached_features, checksum, source_url, result, raw, passthrough, webhook_url, error_code, "
    "error_message")


@dataclass(frozen=True)
class CachedFeature:
    """One feature's answer from the result cache: its neutral JSON and its part of `raw`."""

    result: Any
    raw: dict[str, Any]


def raw_part(provider: str, feature: Feature, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a provider's raw answer that belongs to `feature` (see RAW_KEYS)."""
    keys = RAW_KEYS.get(provider, {}).get(feature)
    if keys is None:
        return dict(raw)
    return {k: raw[k] for k in keys if k in raw}


def _row(*, account_id: str, image_id: str, annotation_id: str, version: int, created_at: datetime,
         updated_at: datetime, status: str, provider: str = "", features: Iterable[Feature] = (),
         **values: Any) -> Row:
    row: Row = {"account_id": account_id, "image_id": image_id, "id": annotation_id, "version": version,
                "deleted": 0, "created_at": utc(created_at), "updated_at": utc(updated_at),
                "status": status, "provider": provider, "features": [f.value for f in features],
                "cached_features": [], "checksum": "", "source_url": "", "result": "", "raw": "",
                "passthrough": "", "webhook_url": "", "error_code": "", "error_message": ""}
    row.update(values)
    return row


def pending_row(request: AnnotationRequested) -> Row:
    return _row(account_id=request.account_id, image_id=request.image_id,
                annotation_id=request.annotation_id, version=revision(),
                created_at=request.requested_at, updated_at=request.requested_at, status="pending",
                provider=request.provider, features=request.features, checksum=request.checksum,
                source_url=request.url, passthrough=to_json(request.passthrough),
                webhook_url=request.webhook_url or "")


def completed_row(event: AnnotationCompleted) -> Row:
    result = raw = ""
    if event.annotations is not None:
        result = event.annotations.model_dump_json(exclude={"raw"})
        raw = to_json(event.annotations.raw)
    fresh = set(event.fresh_features)
    return _row(account_id=event.account_id, image_id=event.image_id,
                annotation_id=event.annotation_id, version=event.revision,
                created_at=event.requested_at, updated_at=event.completed_at, status=event.status,
                provider=event.provider, features=event.features,
                cached_features=[f.value for f in event.features if f not in fresh]
                if event.status == "completed" else [],
                checksum=event.checksum, source_url=event.url, result=result, raw=raw,
                passthrough=to_json(event.passthrough), webhook_url=event.webhook_url or "",
                error_code=event.error.code if event.error else "",
                error_message=event.error.message if event.error else "")


def cache_rows(event: AnnotationCompleted) -> list[Row]:
    """One cache row per feature the provider answered for this event (not those from the cache)."""
    if event.status != "completed" or event.annotations is None or not event.checksum:
        return []
    answer = event.annotations
    dumped = answer.model_dump(mode="json", exclude={"raw"})
    return [{"checksum": event.checksum, "provider": event.provider, "feature": f.value,
             "version": event.revision, "result": to_json(dumped[f.value]),
             "raw": to_json(raw_part(event.provider, f, answer.raw)), "created_at": utc(event.completed_at)}
            for f in event.fresh_features if dumped.get(f.value) is not None]


def to_request_resource(row: Row) -> AnnotationRequestResource:
    annotations = None
    if row["result"]:
        data = json.loads(row["result"])
        data["raw"] = json.loads(row["raw"]) if row["raw"] else {}
        annotations = Annotations.model_validate(data)
    return AnnotationRequestResource(
        id=row["id"], image_id=row["image_id"], status=row["status"], provider=row["provider"],
        features=[Feature(f) for f in row["features"]],
        cached_features=[Feature(f) for f in row["cached_features"]],
        created_at=utc(row["created_at"]), updated_at=utc(row["updated_at"]),
        passthrough=json.loads(row["passthrough"]) if row["passthrough"] else None,
        annotations=annotations,
        error=ErrorInfo(code=row["error_code"], message=row["error_message"]) if row["error_code"] else None)


def merge_results(rows: Iterable[Row]) -> dict[str, Any]:
    """Completed request rows of one image, oldest first → per feature the latest result,
    `providers` (which provider gave each feature) and `raw` (each provider's answers)."""
    found: dict[str, Any] = {}
    providers: dict[str, str] = {}
    raw: dict[str, dict[str, Any]] = {}
    for row in rows:
        result = json.loads(row["result"]) if row["result"] else {}
        for feature in row["features"]:
            if result.get(feature) is not None:
                found[feature] = result[feature]
                providers[feature] = row["provider"]
        if row["raw"]:
            raw.setdefault(row["provider"], {}).update(json.loads(row["raw"]))
    merged: dict[str, Any] = {f.value: found[f.value] for f in Feature if f.value in found}
    merged["providers"] = {f.value: providers[f.value] for f in Feature if f.value in providers}
    merged["raw"] = raw
    return merged


_STORES: weakref.WeakKeyDictionary[Database, AnnotationStore] = weakref.WeakKeyDictionary()


class AnnotationStore:
    """Reads and writes of `annotations` and `annotation_cache`. One per Database
    (`AnnotationStore.of(db)`), so the merged annotations that every image read and every
    webhook needs are fetched for many images in one query (like `ImageStore.of`)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._merged: BatchLoader[tuple[str, str], dict[str, Any]] = BatchLoader(self._merged_many)

    @classmethod
    def of(cls, db: Database) -> AnnotationStore:
        store = _STORES.get(db)
        if store is None:
            store = _STORES[db] = cls(db)
        return store

    async def write_pending(self, request: AnnotationRequested) -> None:
        await self.db.insert("annotations", [pending_row(request)])

    async def write_completed(self, events: Sequence[AnnotationCompleted]) -> None:
        """The request rows of images that still exist, and the cache rows of every answer
        (an answer paid for is worth keeping even if its image was deleted meanwhile)."""
        live = await self.existing_images(events)
        rows = [completed_row(e) for e in events if (e.account_id, e.image_id) in live]
        await self.db.insert("annotations", rows)
        await self.db.insert("annotation_cache", [r for e in events for r in cache_rows(e)])

    async def existing_images(self, events: Sequence[AnnotationCompleted]) -> set[tuple[str, str]]:
        if not events:
            return set()
        rows = await self.db.query(
            "SELECT account_id, id FROM images FINAL WHERE id IN {ids:Array(String)}",
            {"ids": sorted({e.image_id for e in events})})
        return {(r["account_id"], r["id"]) for r in rows}

    async def cached(self, checksum: str, provider: str,
                     features: Iterable[Feature]) -> dict[Feature, CachedFeature]:
        """What the cache holds for these features of these bytes from this provider."""
        wanted = sorted(f.value for f in features)
        rows = await self.db.query(
            "SELECT feature, result, raw FROM annotation_cache FINAL WHERE checksum = {c:String} "
            "AND provider = {p:String} AND feature IN {f:Array(String)}",
            {"c": checksum, "p": provider, "f": wanted})
        return {Feature(r["feature"]): CachedFeature(json.loads(r["result"]),
                                                     json.loads(r["raw"]) if r["raw"] else {})
                for r in rows if r["result"]}

    async def get(self, account_id: str, image_id: str,
                  annotation_id: str) -> AnnotationRequestResource | None:
        row = await self.db.query_one(
            f"SELECT {ANNOTATION_COLUMNS} FROM annotations FINAL WHERE account_id = {{a:String}} "
            "AND image_id = {i:String} AND id = {id:String}",
            {"a": account_id, "i": image_id, "id": annotation_id})
        return None if row is None else to_request_resource(row)

    async def merged(self, account_id: str, image_id: str) -> dict[str, Any] | None:
        """The image's annotations: per feature, the latest completed result, whichever provider
        gave it (`providers` says which); `raw` holds each provider's answers by provider name.
        None when the image has no completed annotation request."""
        return await self._merged.load((account_id, image_id))

    async def merged_many(self, account_id: str, image_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """`merged` for many images of one account in one query (a page of `GET /images`):
        image id → its annotations, for the images that have any."""
        found = await self._merged_many([(account_id, image_id) for image_id in image_ids])
        return {image_id: merged for (_, image_id), merged in found.items()}

    async def _merged_many(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """The one query behind `merged` (batched by the loader) and `merged_many`."""
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        # On the table's key prefix (account_id, image_id): `image_id IN (...)` alone would
        # read every account's granules.
        rows = await self.db.query(
            "SELECT account_id, image_id, provider, features, result, raw FROM annotations FINAL "
            "WHERE (account_id, image_id) IN {keys:Array(Tuple(String, String))} "
            "AND status = 'completed' ORDER BY updated_at, id", {"keys": wanted})
        by_image: dict[tuple[str, str], list[Row]] = {}
        for row in rows:
            by_image.setdefault((row["account_id"], row["image_id"]), []).append(row)
        return {key: merge_results(image_rows) for key, image_rows in by_image.items()}

    async def delete_image(self, account_id: str, image_id: str) -> None:
        """Tombstone every request of the image (the shared cache stays: see the module doc)."""
        rows = await self.db.query(
            "SELECT id, created_at FROM annotations FINAL WHERE account_id = {a:String} "
            "AND image_id = {i:String}", {"a": account_id, "i": image_id})
        now = datetime.now(UTC)
        tombstones = [_row(account_id=account_id, image_id=image_id, annotation_id=r["id"],
                           version=revision(), created_at=r["created_at"], updated_at=now,
                           status="deleted", deleted=1) for r in rows]
        await self.db.insert("annotations", tombstones)

    async def unfinished(self, limit: int = 10_000) -> list[AnnotationRequested]:
        """Requests still pending: after a crash of the embedded bus, they are submitted again."""
        rows = await self.db.query(
            f"SELECT {ANNOTATION_COLUMNS} FROM annotations FINAL WHERE status = 'pending' "
            "ORDER BY id LIMIT {n:UInt32}", {"n": limit})
        return [AnnotationRequested(
            annotation_id=r["id"], image_id=r["image_id"], account_id=r["account_id"],
            checksum=r["checksum"], url=r["source_url"], provider=r["provider"],
            features=[Feature(f) for f in r["features"]],
            passthrough=json.loads(r["passthrough"]) if r["passthrough"] else None,
            webhook_url=r["webhook_url"] or None, requested_at=utc(r["created_at"])) for r in rows]


async def store_annotations(store: AnnotationStore, events: Sequence[AnnotationCompleted],
                            stored: Topic[AnnotationStored]) -> Sequence[Emit]:
    """One insert per table for the whole batch, then one `stored` event per request."""
    latest = latest_by(events, lambda e: e.annotation_id)
    await store.write_completed(latest)
    return [Emit(stored, AnnotationStored(
        annotation_id=e.annotation_id, image_id=e.image_id, account_id=e.account_id,
        event_type="annotations.completed" if e.status == "completed" else "annotations.failed",
        revision=e.revision, webhook_url=e.webhook_url)) for e in latest]
