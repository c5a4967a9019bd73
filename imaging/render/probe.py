"""Step `probe`: read the header only, and refuse what must not be decoded.

libvips opens an image lazily: `new_from_buffer` parses the header and decodes
no pixel until something asks for one. So the pixel limit (decompression bombs:
a few kilobytes of PNG can claim 100 000 x 100 000 pixels) is enforced here,
before any decoding, and so is the list of formats we agree to parse at all.
"""

from __future__ import annotations

import pyvips

from imaging.render.context import RenderContext
from imaging.render.errors import ImageError

#: libvips loaders we accept, by the name the header reports. Others (SVG, PDF, matrix
#: and raw formats...) are refused: they are rarely wanted and widen the attack surface.
ALLOWED_LOADERS = frozenset({"jpegload_buffer", "pngload_buffer", "webpload_buffer", "gifload_buffer",
                             "heifload_buffer", "tiffload_buffer"})


def probe(ctx: RenderContext) -> None:
    """Fill loader, source size (as displayed), orientation, had_icc and has_alpha."""
    try:
        header = pyvips.Image.new_from_buffer(ctx.source, "", access="sequential")
    except pyvips.Error:
        raise ImageError("the source is not an image ImgKit can read (supported: JPEG, PNG, WebP, "
                         "GIF, AVIF/HEIF, TIFF)") from None
    loader = str(header.get("vips-loader")) if header.get_typeof("vips-loader") else ""
    if loader not in ALLOWED_LOADERS:
        raise ImageError(f"unsupported source format ({loader.removesuffix('_buffer') or 'unknown'}); "
                         "supported: JPEG, PNG, WebP, GIF, AVIF/HEIF, TIFF", loader=loader)
    pixels = header.width * header.height  # first frame only: animations render their first frame
    if pixels > ctx.max_pixels:
        raise ImageError(f"the source is {header.width}x{header.height} = {pixels} pixels, over the "
                         f"limit of {ctx.max_pixels} (IMGKIT_MAX_PIXELS)", code="too_many_pixels",
                         width=header.width, height=header.height)
    orientation = int(header.get("orientation")) if header.get_typeof("orientation") else 1
    ctx.orientation = orientation if 1 <= orientation <= 8 else 1
    swapped = ctx.orientation >= 5  # 5..8 are the transposing orientations
    ctx.source_width, ctx.source_height = ((header.height, header.width) if swapped
                                           else (header.width, header.height))
    ctx.loader = loader
    ctx.had_icc = bool(header.get_typeof("icc-profile-data"))
    ctx.has_alpha = bool(header.hasalpha())
