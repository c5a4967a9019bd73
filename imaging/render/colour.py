"""Step `colour`: convert to 8-bit sRGB, the colour space every browser assumes.

A photo tagged Display P3 or Adobe RGB looks washed out when its numbers are
read as sRGB, so an embedded ICC profile is applied and the pixels converted
to sRGB; the output then carries the (small, 480-byte) sRGB profile so that
colour-managed viewers read it right. Sources without a profile are taken to be
sRGB already and stay without one (smaller output). It runs after the resize:
colour transforms cost per pixel, and by now there are far fewer.
"""

from __future__ import annotations

import pyvips

from imaging.render.context import RenderContext

_GREY = ("b-w", "grey16")


def colour(ctx: RenderContext) -> None:
    """Convert `image` to sRGB (or 8-bit grey for grey sources without a profile)."""
    image = ctx.current()
    if image.get_typeof("icc-profile-data"):
        try:
            image = image.icc_transform("srgb", embedded=True, intent="relative")
        except pyvips.Error:
            # a broken profile is the source's problem, not a reason to fail the thumbnail
            image = image.copy()
            image.remove("icc-profile-data")
            image = image.colourspace("srgb")
    elif image.interpretation == "cmyk":
        image = image.icc_transform("srgb", input_profile="cmyk", intent="relative")
    elif image.interpretation in _GREY:
        image = image.colourspace("b-w")
    elif image.interpretation != "srgb" or image.format != "uchar":
        image = image.colourspace("srgb")
    if image.format != "uchar":
        image = image.cast("uchar")
    ctx.image = image
