"""Step orient: EXIF orientation applied to the pixels, tag dropped."""

from __future__ import annotations

from imaging.render.load import scale_on_load
from imaging.render.orient import orient
from imaging.render.probe import probe
from tests.unit._render_images import RED, close, context, jpeg, marked, pixel


def test_orientation_6_is_turned_clockwise() -> None:
    ctx = context(jpeg(marked(200, 100), orientation=6))
    probe(ctx)
    ctx.resize_width, ctx.resize_height = ctx.source_width, ctx.source_height
    scale_on_load(ctx)
    orient(ctx)
    image = ctx.current()
    assert (image.width, image.height) == (100, 200)
    assert close(pixel(image, 75, 25), RED)  # the stored top-left is now top-right
    assert not close(pixel(image, 25, 25), RED)
    assert not image.get_typeof("orientation")
