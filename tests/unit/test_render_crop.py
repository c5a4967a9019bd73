"""Step crop: cover cuts by gravity, contain pads with the background."""

from __future__ import annotations

import pyvips

from imaging.render.crop import crop, crop_offsets
from imaging.render.options import Gravity
from tests.unit._render_images import RED, close, context, jpeg, marked, pixel, solid


def test_compass_offsets() -> None:
    assert crop_offsets(Gravity.centre, (400, 200), (200, 200)) == (100, 0)
    assert crop_offsets(Gravity.west, (400, 200), (200, 200)) == (0, 0)
    assert crop_offsets(Gravity.southeast, (400, 300), (200, 200)) == (200, 100)


def test_cover_north_west_keeps_the_top_left() -> None:
    ctx = context(w="50", h="50", gravity="northwest")
    ctx.image = marked(200, 100)
    ctx.target_width, ctx.target_height = 50, 50
    crop(ctx)
    image = ctx.current()
    assert (image.width, image.height) == (50, 50) and close(pixel(image, 25, 25), RED)


def test_cover_smart_crop_finds_the_interesting_part_of_a_sequential_image() -> None:
    grey = solid(300, 60, (128, 128, 128))
    busy = solid(60, 60, RED)
    for i in range(0, 60, 6):
        busy = busy.draw_rect([255, 255, 0], i, 0, 3, 60, fill=True)
    streamed = pyvips.Image.new_from_buffer(jpeg(grey.insert(busy, 230, 0)), "", access="sequential")
    ctx = context(w="60", h="60", gravity="attention")
    ctx.image = streamed
    ctx.target_width, ctx.target_height = 60, 60
    crop(ctx)
    assert ctx.current()[0].avg() > 200  # mostly the red-and-yellow stripes (a centre crop: 128)


def test_contain_pads_with_the_background() -> None:
    ctx = context(w="100", h="100", fit="contain", background="00ff00")
    ctx.image = solid(100, 50, RED)
    ctx.target_width, ctx.target_height = 100, 100
    crop(ctx)
    image = ctx.current()
    assert (image.width, image.height) == (100, 100)
    assert close(pixel(image, 50, 5), (0, 255, 0)) and close(pixel(image, 50, 50), RED)


def test_contain_with_transparent_background_adds_alpha() -> None:
    ctx = context(w="100", h="100", fit="contain", background="00000000")
    ctx.image = solid(100, 50, RED)
    ctx.target_width, ctx.target_height = 100, 100
    crop(ctx)
    assert ctx.current().bands == 4 and pixel(ctx.current(), 50, 5)[3] == 0
