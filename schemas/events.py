"""The records on every topic. JSON on the wire, keyed by image id, versioned.

Producers outside ImgKit may publish `ImageRequested` to `<prefix>.images.requested`
themselves; its JSON Schema is in `schemas/json/`. Fields are only ever added
with defaults; a breaking change would bump `version`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from imgkit.ids import new_id
from schemas.annotations import Annotations, Feature
from streams.record import Record


def now() -> datetime:
    return datetime.now(UTC)


def revision() -> int:
    """A monotonic row version (microseconds): the latest state of an image wins in storage."""
    return time.time_ns() // 1000


class ExtractOptions(BaseModel):
    exif: bool = True
    xmp: bool = True
    palette: bool = True


class ErrorInfo(BaseModel):
    code: str
    message: str


class StageTiming(BaseModel):
    stage: str
    duration_ms: float
    outcome: Literal["ok", "error", "skipped"] = "ok"
    error_code: str = ""


class PaletteColour(BaseModel):
    hex: str = Field(description="Colour as #rrggbb.")
    share: float = Field(description="Fraction of the image's pixels, 0..1.")


class ImageRequested(Record):
    """Ask ImgKit to process an image. Any system may produce this."""

    key_field = "image_id"
    event_id: str = Field(default_factory=lambda: new_id("evt"))
    image_id: str = Field(description="`img_` KSUID; the key of every event of this image.")
    account_id: str
    url: str
    options: ExtractOptions = Field(default_factory=ExtractOptions)
    passthrough: Any = None
    webhook_url: str | None = None
    requested_at: datetime = Field(default_factory=now)
    created_at: datetime | None = Field(None, description="When the API accepted it (else requested_at).")
    idempotency_key: str | None = Field(None, description="The `Idempotency-Key` the image was "
                                        "created with, if any: kept on every state of the image, "
                                        "so a retried POST finds it.")


class ExifFields(BaseModel):
    """EXIF values as typed columns for analytics, beside the printed tags."""

    camera_make: str = ""
    camera_model: str = ""
    lens_model: str = ""
    iso: int | None = None
    f_number: float | None = None
    exposure_time: float | None = None
    focal_length: float | None = None
    taken_at: datetime | None = None
    gps_latitude: float | None = None
    gps_longitude: float | None = None
    gps_altitude: float | None = None


class ImageProcessed(Record):
    """The outcome of processing: the full result, or the error. Stored, then announced."""

    key_field = "image_id"
    image_id: str
    account_id: str
    revision: int = Field(default_factory=revision)
    status: Literal["completed", "failed"]
    url: str
    final_url: str | None = None
    filename: str | None = None
    content_type: str | None = None
    checksum: str | None = None
    byte_size: int | None = None
    width: int | None = None
    height: int | None = None
    exif: dict[str, Any] | None = None
    exif_fields: ExifFields = Field(default_factory=ExifFields)
    xmp: dict[str, Any] | None = None
    phash: str | None = None
    dhash: str | None = None
    palette: list[PaletteColour] | None = None
    error: ErrorInfo | None = None
    passthrough: Any = None
    options: ExtractOptions = Field(default_factory=ExtractOptions)
    webhook_url: str | None = None
    idempotency_key: str | None = Field(None, description="Copied from the `ImageRequested`.")
    created_at: datetime = Field(default_factory=now)
    processed_at: datetime = Field(default_factory=now)
    stages: list[StageTiming] = Field(default_factory=list)


class ImageStored(Record):
    """The result is in ClickHouse: safe to announce (a client reading it will see it)."""

    key_field = "image_id"
    image_id: str
    account_id: str
    event_type: Literal["image.completed", "image.failed", "image.deleted"]
    revision: int
    webhook_url: str | None = None
    resource: dict[str, Any] | None = Field(
        None, description="The image resource exactly as stored (what GET /images/{id} returns, "
        "annotations aside), so the webhook needs no read; absent in older records.")


class ImageHashes(Record):
    """Feed of the near-duplicate index. `deleted` removes the image from it."""

    key_field = "image_id"
    image_id: str
    account_id: str
    phash: str | None = None
    dhash: str | None = None
    deleted: bool = False


class WebhookDelivery(Record):
    """One webhook to send (again). `payload` is fixed at the first attempt, so every retry
    carries the same body and the same `webhook-id`, which receivers deduplicate on."""

    key_field = "image_id"
    event_id: str
    event_type: str
    account_id: str
    image_id: str
    url: str
    payload: str
    attempt: int = 1
    not_before: datetime = Field(default_factory=now)
    last_error: str = ""


class AnnotationRequested(Record):
    """Ask the annotate agent for features of a stored image. The API produces it once the
    image is `completed`, so the checksum (the source cache key) is known."""

    key_field = "image_id"
    event_id: str = Field(default_factory=lambda: new_id("evt"))
    annotation_id: str = Field(description="`ann_` KSUID of the annotation request.")
    image_id: str
    account_id: str
    checksum: str = Field(description="sha256 of the original: key of the source and result caches.")
    url: str = Field(description="Where the original can be downloaded again if it was evicted.")
    provider: str
    features: list[Feature]
    passthrough: Any = None
    webhook_url: str | None = None
    requested_at: datetime = Field(default_factory=now)


class AnnotationCompleted(Record):
    """The outcome of an annotation request: the provider-neutral result, or the error."""

    key_field = "image_id"
    annotation_id: str
    image_id: str
    account_id: str
    checksum: str
    url: str = ""
    revision: int = Field(default_factory=revision)
    status: Literal["completed", "failed"]
    provider: str
    features: list[Feature]
    fresh_features: list[Feature] = Field(default_factory=list, description="Features the provider "
                                          "answered now (the others came from the result cache); "
                                          "the store writes these to the cache.")
    annotations: Annotations | None = None
    error: ErrorInfo | None = None
    passthrough: Any = None
    webhook_url: str | None = None
    requested_at: datetime = Field(default_factory=now)
    completed_at: datetime = Field(default_factory=now)


class AnnotationStored(Record):
    """An annotation result is in ClickHouse: safe to announce by webhook."""

    key_field = "image_id"
    annotation_id: str
    image_id: str
    account_id: str
    event_type: Literal["annotations.completed", "annotations.failed"]
    revision: int
    webhook_url: str | None = None
