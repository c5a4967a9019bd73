"""Step `crop`: from the resized image to the final box (cover crops, contain pads)."""

from __future__ import annotations

from imaging.render.context import RenderContext
from imaging.render.options import Fit, Gravity

#: libvips `gravity` directions by our names (libvips calls the middle "centre" too).
_COMPASS = {
    Gravity.centre: "centre", Gravity.north: "north", Gravity.south: "south", Gravity.east: "east",
    Gravity.west: "west", Gravity.northeast: "north-east", Gravity.northwest: "north-west",
    Gravity.southeast: "south-east", Gravity.southwest: "south-west",
}


def crop_offsets(gravity: Gravity, size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner of a `box` cut out of `size` for a compass gravity."""
    free_x, free_y = size[0] - box[0], size[1] - box[1]
    name = _COMPASS[gravity]
    x = 0 if "west" in name else free_x if "east" in name else free_x // 2
    y = 0 if "north" in name else free_y if "south" in name else free_y // 2
    return x, y


def crop(ctx: RenderContext) -> None:
    """Cut (cover) or pad (contain) `image` to target_width x target_height."""
    image = ctx.current()
    box = (ctx.target_width, ctx.target_height)
    if (image.width, image.height) == box:
        return
    options = ctx.options
    if options.fit is Fit.contain:
        background = list(options.background)
        if image.bands < 3:  # grey: the background colour needs colour bands
            image = image.colourspace("srgb")
        if background[3] < 255 and not image.hasalpha():
            image = image.bandjoin_const([255])
        if not image.hasalpha():
            background = background[:3]
        ctx.image = image.gravity(_COMPASS.get(options.gravity, "centre"), *box, extend="background",
                                  background=background)
        return
    if options.gravity.is_smart:
        interesting = "entropy" if options.gravity is Gravity.entropy else "attention"
        # smartcrop reads the image more than once; a sequential pipeline cannot
        ctx.image = image.copy_memory().smartcrop(*box, interesting=interesting)
        return
    x, y = crop_offsets(options.gravity, (image.width, image.height), box)
    ctx.image = image.crop(x, y, *box)
