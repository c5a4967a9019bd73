"""Errors of the render path, each carrying the HTTP status it maps to.

Bad query values are `BadRequest` and unreadable or oversized images are
`ImageError` (both from the kernel); only the deadline needs a type of its own.
"""

from __future__ import annotations

from imgkit.errors import BadRequest, ImageError, ImgKitError


class RenderTimeout(ImgKitError):
    """The render (queueing included) passed `settings.render_timeout`; retrying later may work."""

    code = "render_timeout"
    status = 503


__all__ = ["BadRequest", "ImageError", "RenderTimeout"]
