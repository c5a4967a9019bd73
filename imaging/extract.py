"""Everything ImgKit learns from one image's bytes: the extraction pipeline.

A short list of named steps over one `Extraction` record (like the render path):
identify (type, header size, pixel limit) → decode small (shrink-on-load) →
hashes → palette → EXIF → XMP. Each step records its duration, so the stage log
in ClickHouse shows where time goes. Pure and synchronous: the agent runs it in a
worker thread, `imgkit inspect` runs it directly.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import imagehash
import numpy as np
import pyvips
from PIL import Image

from imaging.exif import ExifData, read_exif
from imaging.palette import dominant_colours
from imaging.sniff import sniff_mime
from imaging.xmp import read_xmp
from imgkit.errors import ImageError

HASH_DECODE_SIZE = 256
"""Side of the small decode the hashes and palette use: imagehash reduces to 32x32
(pHash) and 9x8 (dHash) anyway, so more pixels only cost time."""

DECODABLE = {"image/jpeg", "image/png", "image/gif", "image/webp", "image/tiff", "image/avif",
             "image/heif", "image/heic", "image/bmp", "image/svg+xml"}


@dataclass
class Extraction:
    """What the steps fill in. Zero values mean "not computed" (option off, or failed early)."""

    data: bytes  # the original bytes, as downloaded
    want_exif: bool = True
    want_xmp: bool = True
    want_palette: bool = True
    max_pixels: int = 100_000_000
    content_type: str = ""  # sniffed MIME type
    checksum: str = ""  # sha256 hex of `data`
    width: int = 0  # as displayed: EXIF orientation 5-8 swaps the stored sides
    height: int = 0
    small: Image.Image | None = None  # RGB decode of at most HASH_DECODE_SIZE per side
    phash: str = ""  # 16 hex digits
    dhash: str = ""
    palette: list[tuple[str, float]] = field(default_factory=list)
    exif: ExifData | None = None
    xmp: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)  # step name → milliseconds


def step_identify(ex: Extraction) -> None:
    if not ex.checksum:  # callers that already hashed these bytes pass the checksum in
        ex.checksum = hashlib.sha256(ex.data).hexdigest()
    mime = sniff_mime(ex.data)
    if mime is None:
        raise ImageError("the content is not an image ImgKit can read", code="not_an_image",
                         size=len(ex.data))
    ex.content_type = mime
    if mime not in DECODABLE:
        raise ImageError(f"{mime} images are not supported", code="unsupported_format", mime=mime)
    try:
        header = pyvips.Image.new_from_buffer(ex.data, "", access="sequential")
    except pyvips.Error as exc:
        raise ImageError("the image is corrupt or truncated", code="corrupt_image",
                         detail=str(exc).splitlines()[0][:200]) from None
    width, height = header.width, header.height
    if width * height > ex.max_pixels:
        raise ImageError(f"the image has {width}x{height} pixels, more than the limit of "
                         f"{ex.max_pixels}", code="too_many_pixels", status=413,
                         width=width, height=height, limit=ex.max_pixels)
    orientation = header.get("orientation") if header.get_typeof("orientation") else 1
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    ex.width, ex.height = width, height


def step_decode_small(ex: Extraction) -> None:
    try:
        thumb = pyvips.Image.thumbnail_buffer(ex.data, HASH_DECODE_SIZE, height=HASH_DECODE_SIZE,
                                              size="down")
        if thumb.hasalpha():
            thumb = thumb.flatten(background=[255, 255, 255])
        if thumb.interpretation not in ("srgb", "b-w"):
            thumb = thumb.colourspace("srgb")
        if thumb.bands == 1:
            thumb = thumb.bandjoin([thumb, thumb])
        pixels = np.ndarray(buffer=thumb.cast("uchar").write_to_memory(), dtype=np.uint8,
                            shape=(thumb.height, thumb.width, thumb.bands))
    except pyvips.Error as exc:
        raise ImageError("the image could not be decoded", code="corrupt_image",
                         detail=str(exc).splitlines()[0][:200]) from None
    ex.small = Image.fromarray(np.ascontiguousarray(pixels[:, :, :3]), "RGB")


def step_hashes(ex: Extraction) -> None:
    assert ex.small is not None
    # imagehash converts to greyscale itself (PIL's "L"): doing it in libvips moves pHash.
    ex.phash = str(imagehash.phash(ex.small))
    ex.dhash = str(imagehash.dhash(ex.small))


def step_palette(ex: Extraction) -> None:
    if ex.want_palette and ex.small is not None:
        ex.palette = [(c.hex, c.share) for c in dominant_colours(ex.small)]


def step_exif(ex: Extraction) -> None:
    if ex.want_exif:
        ex.exif = read_exif(ex.data)


def step_xmp(ex: Extraction) -> None:
    if ex.want_xmp:
        ex.xmp = read_xmp(ex.data)


STEPS: tuple[tuple[str, Callable[[Extraction], None]], ...] = (
    ("identify", step_identify),
    ("decode", step_decode_small),
    ("hashes", step_hashes),
    ("palette", step_palette),
    ("exif", step_exif),
    ("xmp", step_xmp),
)


def extract(data: bytes, *, exif: bool = True, xmp: bool = True, palette: bool = True,
            max_pixels: int = 100_000_000, checksum: str = "") -> Extraction:
    """Run every step; raise ImageError (with the step's code) on bytes that are not a usable image.

    `checksum` is the sha256 of `data` when the caller already has it."""
    ex = Extraction(data=data, want_exif=exif, want_xmp=xmp, want_palette=palette,
                    max_pixels=max_pixels, checksum=checksum)
    for name, step in STEPS:
        started = time.perf_counter()
        step(ex)
        ex.timings[name] = (time.perf_counter() - started) * 1000
    return ex
