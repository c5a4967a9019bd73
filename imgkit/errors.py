"""Typed errors that carry a stable code, an HTTP status and context.

Every failure that can reach a client (as an HTTP answer, or as the `error` of a
failed image) is one of these, so handlers and agents never guess a status or
invent a message: the raising site knows best what went wrong.
"""

from __future__ import annotations

from typing import Any


class ImgKitError(Exception):
    """Base of every error ImgKit reports to a client.

    `code` is machine-readable and stable (clients branch on it), `message` is for
    people, `status` is the HTTP status it maps to, `context` holds the values that
    explain it (url, limit, size...).
    """

    code: str = "internal_error"
    status: int = 500

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 **context: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.context = context

    def to_dict(self) -> dict[str, Any]:
        """The `{code, message}` shape stored on failed images and sent in error bodies."""
        return {"code": self.code, "message": self.message}

    def __str__(self) -> str:
        if not self.context:
            return self.message
        details = ", ".join(f"{k}={v!r}" for k, v in sorted(self.context.items()))
        return f"{self.message} ({details})"


class ConfigError(ImgKitError):
    code = "config_error"
    status = 500


class BadRequest(ImgKitError):
    code = "bad_request"
    status = 422


class NotFound(ImgKitError):
    code = "not_found"
    status = 404


class Unauthorized(ImgKitError):
    code = "unauthorized"
    status = 401


class Forbidden(ImgKitError):
    code = "forbidden"
    status = 403


class FetchError(ImgKitError):
    """A source could not be downloaded: blocked address, HTTP error, timeout, too large."""

    code = "fetch_failed"
    status = 422


class ImageError(ImgKitError):
    """The bytes are not an image we can read, or exceed a limit (pixels, format)."""

    code = "invalid_image"
    status = 422


class ServiceUnavailable(ImgKitError):
    """A dependency (screenshot service, index shard, storage) did not answer."""

    code = "service_unavailable"
    status = 503
