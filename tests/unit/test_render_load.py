"""Step scale_on_load: the cheapest decode that is still big enough."""

from __future__ import annotations

from imaging.render.load import load_shrink, scale_on_load
from tests.unit._render_images import context, jpeg, solid


def test_jpeg_shrink_is_the_largest_power_of_two_that_keeps_the_planned_size() -> None:
    assert load_shrink("jpegload_buffer", (6000, 4000), (400, 267)) == {"shrink": 8}
    assert load_shrink("jpegload_buffer", (6000, 4000), (1000, 667)) == {"shrink": 4}
    assert load_shrink("jpegload_buffer", (6000, 4000), (5000, 3333)) == {}
    assert load_shrink("pngload_buffer", (6000, 4000), (400, 267)) == {}
    assert load_shrink("webpload_buffer", (1000, 1000), (250, 250)) == {"scale": 0.25}


def test_loads_a_reduced_jpeg_no_smaller_than_planned() -> None:
    ctx = context(jpeg(solid(1600, 1200)))
    ctx.loader, ctx.source_width, ctx.source_height = "jpegload_buffer", 1600, 1200
    ctx.resize_width, ctx.resize_height = 300, 225
    scale_on_load(ctx)
    image = ctx.current()
    assert (image.width, image.height) == (400, 300)  # 1/4: 1/8 would be 200 wide, too small
