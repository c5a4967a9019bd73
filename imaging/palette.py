"""Dominant colours of an image: one implementation for ingestion and the `local` provider.

The palette only needs a statistical picture of the pixels, so the image is
first shrunk to at most `SAMPLE_SIZE` pixels a side (pyvips shrink-on-load for
encoded bytes: a 50-megapixel JPEG is never decoded in full), then quantised
with Pillow's median cut, which is fast (a few ms at that size) and
deterministic: the same image always gives the same palette, so re-processing
an image does not churn stored rows.

Transparent pixels (alpha < 50 %) are left out: the colour under a logo's
transparent background is not a colour anyone sees.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pyvips
from PIL import Image

from imgkit.errors import ImageError

SAMPLE_SIZE = 128
"""Longest side, in pixels, of the copy the palette is computed from."""

_OPAQUE = 128


class Colour(NamedTuple):
    """A dominant colour and the share of (opaque) pixels it stands for."""

    hex: str
    """`#rrggbb`, lower case."""
    share: float
    """Fraction of the sampled opaque pixels, 0..1; the shares of one palette sum to 1."""
    rgb: tuple[int, int, int]
    """The same colour as 0..255 channels."""


def dominant_colours(image: Image.Image | bytes, count: int = 5) -> list[Colour]:
    """Up to `count` main colours of `image`, largest share first.

    `image` is either a decoded Pillow image (used as is, not modified) or the
    encoded bytes of any format libvips reads. An image with no opaque pixel has
    no palette (empty list). Raises ImageError when the bytes are not an image.
    """
    if not 1 <= count <= 256:
        raise ValueError(f"count must be between 1 and 256 (got {count})")
    pixels = _sample_pixels(image)
    if len(pixels) == 0:
        return []
    # One row of opaque pixels: quantising it is the same as quantising the image minus
    # its transparent pixels, and median cut only looks at the colour distribution.
    strip = Image.fromarray(pixels.reshape(1, -1, 3), mode="RGB")
    quantised = strip.quantize(colors=count, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    palette = quantised.getpalette() or []
    used = quantised.getcolors(maxcolors=256) or []
    total = float(len(pixels))
    colours = []
    for pixel_count, index in used:
        start = 3 * int(index)  # type: ignore[arg-type]  # a palette index for "P" images
        r, g, b = palette[start: start + 3]
        colours.append(Colour(f"#{r:02x}{g:02x}{b:02x}", pixel_count / total, (r, g, b)))
    # Ties are ordered by the colour itself so that the order is deterministic too.
    colours.sort(key=lambda c: (-c.share, c.hex))
    return colours


def _sample_pixels(image: Image.Image | bytes) -> np.ndarray:
    """The opaque pixels of a <= SAMPLE_SIZE copy of `image`, as an (n, 3) uint8 array."""
    if isinstance(image, bytes | bytearray | memoryview):
        rgba = _decode_small(bytes(image))
    else:
        small = image.copy()
        # NEAREST keeps real pixel values (no blended edge colours that exist nowhere in
        # the image) and is an unbiased sample of the pixel distribution.
        small.thumbnail((SAMPLE_SIZE, SAMPLE_SIZE), Image.Resampling.NEAREST)
        rgba = np.asarray(small.convert("RGBA"), dtype=np.uint8)
    flat = rgba.reshape(-1, 4)
    return np.ascontiguousarray(flat[flat[:, 3] >= _OPAQUE, :3])


def _decode_small(data: bytes) -> np.ndarray:
    """Decode encoded bytes straight to a small sRGB + alpha array (shrink-on-load)."""
    try:
        small = pyvips.Image.thumbnail_buffer(data, SAMPLE_SIZE, height=SAMPLE_SIZE, size="down")
        small = small.colourspace("srgb")  # grey, CMYK, 16-bit... → 8-bit sRGB
        if not small.hasalpha():
            small = small.bandjoin(255)
        small = small.extract_band(0, n=4).cast("uchar")
        buffer = small.write_to_memory()
    except pyvips.Error as exc:
        detail = (getattr(exc, "detail", "") or str(exc)).strip().splitlines()
        raise ImageError("cannot read the image to compute its colours",
                         reason=detail[0] if detail else "unknown") from exc
    return np.frombuffer(buffer, dtype=np.uint8).reshape(small.height, small.width, 4)
