"""Step resize: exact planned size; alpha premultiplied so edges keep their colour."""

from __future__ import annotations

from imaging.render.resize import resize
from tests.unit._render_images import RED, close, context, pixel, solid


def test_scales_to_the_planned_size_even_non_uniformly() -> None:
    ctx = context()
    ctx.image = solid(333, 177)
    ctx.resize_width, ctx.resize_height = 100, 100
    resize(ctx)
    assert (ctx.current().width, ctx.current().height) == (100, 100)


def test_transparent_pixels_do_not_darken_the_edges() -> None:
    opaque_red = solid(50, 50, RED).bandjoin_const([255])
    transparent_black = solid(50, 50, (0, 0, 0)).bandjoin_const([0])
    ctx = context()
    ctx.image = transparent_black.join(opaque_red, "horizontal").copy(interpretation="srgb")
    ctx.resize_width, ctx.resize_height = 20, 10
    resize(ctx)
    edge = pixel(ctx.current(), 10, 5)  # half covered: colour must still be red, not dark red
    assert 0 < edge[3] < 255 and close(edge[:3], RED, 10)
