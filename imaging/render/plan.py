"""Step `plan`: decide the output size from the request and the source size, before decoding.

Deciding it up front lets `scale_on_load` pick the cheapest decode that is still
big enough, and lets an oversized request fail before any pixel is decoded.
"""

from __future__ import annotations

from imaging.render.context import RenderContext
from imaging.render.errors import BadRequest
from imaging.render.options import Fit


def plan_size(source: tuple[int, int], box: tuple[int | None, int | None],
              fit: Fit) -> tuple[tuple[int, int], tuple[int, int]]:
    """(size after resize, final size) for a source (as displayed) and a box in device pixels.

    With one side given the other follows the aspect ratio and `fit` does not
    matter; with none the size is the source's. Every fit may enlarge.
    """
    sw, sh = source
    bw, bh = box
    if bw is None and bh is None:
        return (sw, sh), (sw, sh)
    if bw is None or bh is None:
        scale = bw / sw if bw is not None else bh / sh  # type: ignore[operator]
        size = (bw or max(1, round(sw * scale)), bh or max(1, round(sh * scale)))
        return size, size
    if fit is Fit.fill:
        return (bw, bh), (bw, bh)
    if fit is Fit.cover:
        scale = max(bw / sw, bh / sh)
        return (max(bw, round(sw * scale)), max(bh, round(sh * scale))), (bw, bh)
    scale = min(bw / sw, bh / sh)
    inner = (min(bw, max(1, round(sw * scale))), min(bh, max(1, round(sh * scale))))
    return inner, ((bw, bh) if fit is Fit.contain else inner)


def plan(ctx: RenderContext) -> None:
    """Fill resize_* and target_*; refuse outputs over render_max_output_pixels."""
    resized, target = plan_size((ctx.source_width, ctx.source_height), ctx.options.box, ctx.options.fit)
    pixels = target[0] * target[1]
    if pixels > ctx.max_output_pixels:
        raise BadRequest(f"the thumbnail would be {target[0]}x{target[1]} = {pixels} pixels, over the "
                         f"limit of {ctx.max_output_pixels} (IMGKIT_RENDER_MAX_OUTPUT_PIXELS); ask for a "
                         "smaller w/h/dpr", code="output_too_large", width=target[0], height=target[1])
    if resized[0] * resized[1] > max(ctx.max_pixels, ctx.max_output_pixels):
        raise BadRequest(f"covering {target[0]}x{target[1]} needs an intermediate of "
                         f"{resized[0]}x{resized[1]} pixels, over the limit; the source's aspect ratio is "
                         "too far from the box's", code="output_too_large")
    (ctx.resize_width, ctx.resize_height), (ctx.target_width, ctx.target_height) = resized, target
