"""Step probe: header-only checks before decoding."""

from __future__ import annotations

import pytest

from imaging.render.probe import probe
from imgkit.errors import ImageError
from tests.unit._render_images import context, jpeg, marked, p3_jpeg, rgba_png, solid


def test_reads_size_loader_and_flags() -> None:
    ctx = context(rgba_png(80, 60))
    probe(ctx)
    assert (ctx.loader, ctx.source_width, ctx.source_height, ctx.has_alpha, ctx.had_icc) == (
        "pngload_buffer", 80, 60, True, False)
    assert ctx.image is None  # nothing decoded yet


def test_orientation_swaps_the_displayed_size() -> None:
    ctx = context(jpeg(marked(200, 100), orientation=6))
    probe(ctx)
    assert (ctx.orientation, ctx.source_width, ctx.source_height) == (6, 100, 200)


def test_embedded_profile_is_noticed() -> None:
    ctx = context(p3_jpeg())
    probe(ctx)
    assert ctx.had_icc


def test_not_an_image() -> None:
    with pytest.raises(ImageError, match="not an image") as info:
        probe(context(b"<html>hello</html>"))
    assert info.value.status == 422


def test_too_many_pixels_is_refused_from_the_header() -> None:
    ctx = context(jpeg(solid(300, 200)))
    ctx.max_pixels = 300 * 200 - 1
    with pytest.raises(ImageError, match="over the limit") as info:
        probe(ctx)
    assert (info.value.status, info.value.code) == (422, "too_many_pixels")
