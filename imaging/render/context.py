"""The one record the render steps share.

Each step reads what earlier steps left here and fills in its own fields; a
field's comment says what it holds and when it is still empty. Keeping all the
state in one place is what lets a step be a plain function `step(ctx)` that is
tested alone by building a context by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyvips

from imaging.render.decoded import DecodedCache
from imaging.render.errors import ImageError
from imaging.render.options import RenderOptions


@dataclass
class RenderContext:
    source: bytes  # the original encoded image; empty until `source_bytes()` when `read_source` is set
    options: RenderOptions  # the validated request
    max_pixels: int  # settings.max_pixels: largest source (and intermediate) width x height
    max_output_pixels: int  # settings.render_max_output_pixels: largest output width x height
    image: pyvips.Image | None = None  # the current image (lazy libvips pipeline); None before load
    loader: str = ""  # libvips loader of the source, e.g. "jpegload_buffer"; "" before load
    source_width: int = 0  # first frame as displayed (EXIF orientation applied); 0 before load
    source_height: int = 0  # likewise
    orientation: int = 1  # EXIF orientation 1..8 of the source; 1 when absent
    had_icc: bool = False  # the source embedded an ICC profile (so the output carries sRGB's)
    has_alpha: bool = False  # the source has an alpha band (auto then prefers a format that keeps it)
    resize_width: int = 0  # size after the resize, before cover's crop or contain's padding; 0 before plan
    resize_height: int = 0  # likewise
    target_width: int = 0  # final output size; 0 before plan
    target_height: int = 0  # likewise
    output_format: str = ""  # concrete format (jpeg/png/webp/avif) to encode; "" before choose_format
    data: bytes = b""  # the encoded output; empty before encode
    source_key: str = ""  # sha256 of the source when the caller knows it; "" = no decoded cache
    decoded: DecodedCache | None = None  # decoded levels and headers shared by renders; None = off
    read_source: Callable[[], bytes] | None = None  # reads the source on first need (a cache hit never does)

    def source_bytes(self) -> bytes:
        """The source, read now if it was not given: a render served from `decoded` never reads it."""
        if not self.source and self.read_source is not None:
            self.source = self.read_source()
        if not self.source:
            raise ImageError("the source is empty")
        return self.source

    def cache(self) -> DecodedCache | None:
        """The decoded cache when this render may use it (on, and the source's sha256 known)."""
        return self.decoded if self.decoded is not None and self.decoded.enabled and self.source_key \
            else None

    def current(self) -> pyvips.Image:
        """The image, for steps that run after load (a missing image is a bug in the step list)."""
        if self.image is None:
            raise RuntimeError("render step ran before load")
        return self.image
