"""Step `scale_on_load`: decode the source at the smallest size that is still big enough.

JPEG can decode at 1/2, 1/4 or 1/8 scale straight from its DCT coefficients,
and WebP can scale while decoding; both are much cheaper than decoding full
size and shrinking. We take the largest reduction that still leaves at least the
planned size (what Pillow's `draft()` does). libvips's own `thumbnail` leaves a
further factor of two, which measured ~15% slower for a 400 px thumbnail of a
24 MP JPEG with no visible gain (tests/bench/bench_render.py). Access is
sequential: the image streams through the pipeline in strips, never whole in
memory, unless the decoded cache keeps the result (imaging/render/decoded.py):
then it is decoded whole once, and later renders of the same source at the same
scale start from it. Only the first frame of animations is loaded (libvips's
default).
"""

from __future__ import annotations

from typing import Any

import pyvips

from imaging.render.context import RenderContext
from imaging.render.errors import ImageError


def load_shrink(loader: str, source: tuple[int, int], planned: tuple[int, int]) -> dict[str, Any]:
    """Loader options that reduce the decode to no less than `planned` (both as displayed)."""
    factor = min(source[0] / planned[0], source[1] / planned[1])
    if loader == "jpegload_buffer":
        shrink = next((s for s in (8, 4, 2) if factor >= s), 1)
        return {"shrink": shrink} if shrink > 1 else {}
    if loader == "webpload_buffer" and factor > 1:
        return {"scale": 1 / factor}
    return {}


def scale_on_load(ctx: RenderContext) -> None:
    """Fill image with the decoded first frame: lazily, or from (and into) the decoded cache."""
    options = load_shrink(ctx.loader, (ctx.source_width, ctx.source_height),
                          (ctx.resize_width, ctx.resize_height))
    cache = ctx.cache()
    key = cache.key(ctx.source_key, options) if cache is not None else None
    if cache is not None and key is not None:
        cached = cache.get(key)
        if cached is not None:
            ctx.image = cached
            return
    try:
        image = pyvips.Image.new_from_buffer(ctx.source_bytes(), "", access="sequential", **options)
        if cache is not None and key is not None and cache.fits(image):
            # decoded whole now rather than strip by strip in `encode`: same pixels, kept for the next
            image = image.copy_memory()
            cache.put(key, image)
    except pyvips.Error as exc:
        detail = (exc.detail or exc.message or "unknown error").strip().splitlines()[0]
        raise ImageError(f"the source could not be decoded: {detail}") from None
    ctx.image = image
