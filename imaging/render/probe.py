"""Step `probe`: read the header only, and refuse what must not be decoded.

libvips opens an image lazily: `new_from_buffer` parses the header and decodes
no pixel until something asks for one. So the pixel limit (decompression bombs:
a few kilobytes of PNG can claim 100 000 x 100 000 pixels) is enforced here,
before any decoding, and so is the list of formats we agree to parse at all.
"""

from __future__ import annotations

import pyvips

from imaging.render.context import RenderContext
from imaging.render.decoded import Header
from imaging.render.errors import ImageError

#: libvips loaders we accept, by the name the header reports. Others (SVG, PDF, matrix
#: and raw formats...) are refused: they are rarely wanted and widen the attack surface.
ALLOWED_LOADERS = frozenset({"jpegload_buffer", "pngload_buffer", "webpload_buffer", "gifload_buffer",
                             "heifload_buffer", "tiffload_buffer"})


def read_header(source: bytes) -> Header:
    """The header facts of an encoded image; ImageError if libvips cannot read it or may not."""
    try:
        header = pyvips.Image.new_from_buffer(source, "", access="sequential")
    except pyvips.Error:
        raise ImageError("the source is not an image ImgKit can read (supported: JPEG, PNG, WebP, "
                         "GIF, AVIF/HEIF, TIFF)") from None
    loader = str(header.get("vips-loader")) if header.get_typeof("vips-loader") else ""
    if loader not in ALLOWED_LOADERS:
        raise ImageError(f"unsupported source format ({loader.removesuffix('_buffer') or 'unknown'}); "
                         "supported: JPEG, PNG, WebP, GIF, AVIF/HEIF, TIFF", loader=loader)
    orientation = int(header.get("orientation")) if header.get_typeof("orientation") else 1
    return Header(loader=loader, width=header.width, height=header.height,
                  orientation=orientation if 1 <= orientation <= 8 else 1,
                  had_icc=bool(header.get_typeof("icc-profile-data")), has_alpha=bool(header.hasalpha()))


def probe(ctx: RenderContext) -> None:
    """Fill loader, source size (as displayed), orientation, had_icc and has_alpha.

    The header comes from the decoded cache when this source was probed before (then
    the source is not read at all); the limits are checked on every request.
    """
    cache = ctx.cache()
    header = cache.header(ctx.source_key) if cache is not None else None
    if header is None:
        header = read_header(ctx.source_bytes())
        if cache is not None:
            cache.put_header(ctx.source_key, header)
    pixels = header.width * header.height  # first frame only: animations render their first frame
    if pixels > ctx.max_pixels:
        raise ImageError(f"the source is {header.width}x{header.height} = {pixels} pixels, over the "
                         f"limit of {ctx.max_pixels} (IMGKIT_MAX_PIXELS)", code="too_many_pixels",
                         width=header.width, height=header.height)
    ctx.orientation = header.orientation
    swapped = ctx.orientation >= 5  # 5..8 are the transposing orientations
    ctx.source_width, ctx.source_height = ((header.height, header.width) if swapped
                                           else (header.width, header.height))
    ctx.loader = header.loader
    ctx.had_icc = header.had_icc
    ctx.has_alpha = header.has_alpha
