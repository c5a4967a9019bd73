"""The REST API's request and response models: the OpenAPI document is built from these."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator

from schemas.events import ErrorInfo, PaletteColour

MAX_URL_LENGTH = 4096


def check_http_url(value: str, what: str = "url") -> str:
    """Refuse anything but an absolute http(s) URL with a host: the first SSRF gate."""
    value = value.strip()
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"{what} is longer than {MAX_URL_LENGTH} characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{what} must use http or https (got {parts.scheme or 'no scheme'!r})")
    if not parts.hostname:
        raise ValueError(f"{what} has no host")
    return value


class ImageCreate(BaseModel):
    url: str = Field(description="The image (or a page with og:image) to process; http or https.")
    passthrough: Any = Field(None, description="Any JSON; returned as is in the resource and webhooks.")
    exif: bool = Field(True, description="Extract EXIF.")
    xmp: bool = Field(True, description="Extract XMP.")
    palette: bool = Field(True, description="Compute the dominant colours.")
    webhook_url: str | None = Field(None, description="Where to send webhooks; default: the account's.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value)

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        return None if value in (None, "") else check_http_url(value, "webhook_url")


class ImageResource(BaseModel):
    id: str = Field(description="`img_` KSUID.")
    created_at: datetime
    updated_at: datetime
    status: Literal["pending", "processing", "completed", "failed"]
    url: str
    final_url: str | None = None
    filename: str | None = None
    content_type: str | None = None
    checksum: str | None = Field(None, description="sha256 of the original, hex.")
    byte_size: int | None = None
    width: int | None = Field(None, description="Width as displayed (EXIF orientation applied).")
    height: int | None = None
    exif: dict[str, Any] | None = Field(None, description="ExifTool tag names and printed values.")
    xmp: dict[str, Any] | None = None
    phash: str | None = Field(None, description="64-bit perceptual hash, 16 hex digits.")
    dhash: str | None = Field(None, description="64-bit difference hash, 16 hex digits.")
    palette: list[PaletteColour] | None = None
    passthrough: Any = None
    error: ErrorInfo | None = None
    annotations: dict[str, Any] | None = None


class ImageList(BaseModel):
    data: list[ImageResource]
    next_cursor: str | None = Field(None, description="Pass as `cursor` to get the next page.")


class ErrorBody(BaseModel):
    error: ErrorInfo
