"""Steps choose_format, finalize and encode."""

from __future__ import annotations

import pytest
import pyvips

from imaging.render.choose_format import resolve_format
from imaging.render.encode import encode
from imaging.render.finalize import finalize
from imaging.render.options import parse_options
from tests.unit._render_images import RED, close, context, decode, jpeg, p3_jpeg, pixel, solid

MAGIC = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG", "webp": b"RIFF", "avif": b"ftypavif"}


@pytest.mark.parametrize(("accept", "alpha", "allowed", "chosen"), [
    ("image/avif,image/webp,*/*", False, ["jpeg", "png", "webp", "avif"], "avif"),
    ("image/webp,*/*", False, ["jpeg", "png", "webp", "avif"], "webp"),
    ("*/*", False, ["jpeg", "png", "webp", "avif"], "jpeg"),
    ("*/*", True, ["jpeg", "png", "webp", "avif"], "png"),
    ("image/avif", False, ["jpeg", "webp"], "jpeg"),
    ("*/*", False, ["webp"], "webp"),
])
def test_auto_format(accept: str, alpha: bool, allowed: list[str], chosen: str) -> None:
    options = parse_options({}, accept=accept, allowed_formats=allowed)
    assert resolve_format(options, alpha) == chosen


def test_finalize_strips_exif_but_keeps_icc() -> None:
    ctx = context()
    ctx.image = decode(jpeg(solid(8, 8), orientation=3)).icc_transform("srgb", input_profile="srgb")
    assert ctx.image.get_typeof("exif-data")
    ctx.output_format = "jpeg"
    finalize(ctx)
    fields = ctx.current().get_fields()
    assert "icc-profile-data" in fields
    assert not [f for f in fields if f.startswith(("exif", "xmp", "iptc")) or f == "orientation"]


def test_finalize_flattens_alpha_onto_the_background_for_jpeg() -> None:
    ctx = context(background="00ff00")
    ctx.image = solid(8, 8, RED).bandjoin_const([0]).copy(interpretation="srgb")
    ctx.output_format = "jpeg"
    finalize(ctx)
    assert ctx.current().bands == 3 and close(pixel(ctx.current(), 1, 1), (0, 255, 0), 0)


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "avif"])
def test_encode_each_format_keeping_the_profile(fmt: str) -> None:
    ctx = context()
    ctx.image = decode(p3_jpeg()).icc_transform("srgb", embedded=True)
    ctx.output_format = fmt
    encode(ctx)
    assert MAGIC[fmt] in ctx.data[:12]
    out = decode(ctx.data)
    assert out.get_typeof("icc-profile-data") and close(pixel(out, 5, 5), RED, 16)


def test_quality_changes_the_size() -> None:
    image = (pyvips.Image.gaussnoise(64, 64, mean=128, sigma=40).cast("uchar") * [1, 1, 1]).cast("uchar")
    sizes = []
    for q in ("20", "95"):
        ctx = context(q=q)
        ctx.image, ctx.output_format = image, "jpeg"
        encode(ctx)
        sizes.append(len(ctx.data))
    assert sizes[0] < sizes[1]
