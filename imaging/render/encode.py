"""Step `encode`: write the final image in the chosen format.

JPEG: `optimize_coding` (Huffman tables fitted to the image: ~6% smaller for
a few ms on a 400 px thumbnail) and mozjpeg's trellis quantisation and
deringing (pyvips-binary's libvips is built with mozjpeg: another ~14% smaller
for ~9 ms; a libjpeg-turbo build ignores them, so the code is right in both).
Baseline, not progressive: `optimize_scans` only helps progressive files and
progressive encoding cost ~40 ms more per thumbnail.
WebP and AVIF use a middle effort: a thumbnail is encoded once and then cached,
but it is encoded while a client waits.
"""

from __future__ import annotations

from typing import Any

from imaging.render.context import RenderContext
from imaging.render.options import DEFAULT_QUALITY

_SAVERS: dict[str, tuple[str, dict[str, Any]]] = {
    "jpeg": ("jpegsave_buffer", {"optimize_coding": True, "trellis_quant": True,
                                 "overshoot_deringing": True}),
    "png": ("pngsave_buffer", {"compression": 6}),
    "webp": ("webpsave_buffer", {"effort": 4}),
    "avif": ("heifsave_buffer", {"compression": "av1", "effort": 2, "bitdepth": 8}),
}


def encode(ctx: RenderContext) -> None:
    """Fill data with the encoded image."""
    image = ctx.current()
    saver, options = _SAVERS[ctx.output_format]
    options = dict(options, keep="icc")
    if ctx.output_format != "png":
        options["Q"] = ctx.options.quality or DEFAULT_QUALITY[ctx.output_format]
    ctx.data = getattr(image, saver)(**options)
