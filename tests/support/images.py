"""Test images made in the tests, with known sizes, colours and metadata."""

from __future__ import annotations

import io

import pyvips
from PIL import Image, ImageDraw


def jpeg(width: int = 640, height: int = 480, colour: tuple[int, int, int] = (200, 30, 30),
         orientation: int | None = None, quality: int = 90, pattern: bool = True) -> bytes:
    """A JPEG with a two-colour pattern (so hashes are not degenerate) and an optional
    EXIF orientation tag (written by libvips)."""
    image = Image.new("RGB", (width, height), colour)
    if pattern:
        draw = ImageDraw.Draw(image)
        draw.rectangle((0, 0, width // 3, height // 2), fill=(20, 20, 160))
        draw.ellipse((width // 2, height // 3, width - 10, height - 10), fill=(240, 240, 240))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    if orientation is None:
        return buffer.getvalue()
    vips_image = pyvips.Image.new_from_buffer(buffer.getvalue(), "").copy()
    vips_image.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    return bytes(vips_image.jpegsave_buffer(Q=quality))


def png(width: int = 64, height: int = 48, colour: tuple[int, int, int, int] = (0, 128, 0, 255)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()
