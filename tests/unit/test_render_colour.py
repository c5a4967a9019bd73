"""Step colour: embedded profiles converted to sRGB (and sRGB's attached); grey stays grey."""

from __future__ import annotations

import pyvips

from imaging.render.colour import colour
from tests.unit._render_images import RED, close, context, p3_jpeg, pixel, solid

SRGB_PROFILE = solid(4, 4).icc_transform("srgb", input_profile="srgb").get("icc-profile-data")


def _run(image: pyvips.Image) -> pyvips.Image:
    ctx = context()
    ctx.image = image
    colour(ctx)
    return ctx.current()


def test_p3_source_is_converted_to_srgb_and_tagged_srgb() -> None:
    source = pyvips.Image.new_from_buffer(p3_jpeg(RED), "")
    assert not close(pixel(source, 5, 5), RED, 8)  # the stored numbers are P3's
    out = _run(source)
    assert close(pixel(out, 5, 5), RED, 4)
    assert out.get("icc-profile-data") == SRGB_PROFILE


def test_untagged_srgb_stays_untagged() -> None:
    out = _run(solid(8, 8, RED))
    assert close(pixel(out, 1, 1), RED, 0) and not out.get_typeof("icc-profile-data")


def test_cmyk_without_profile_becomes_srgb() -> None:
    cmyk = solid(8, 8, RED).icc_transform("cmyk", input_profile="srgb")
    cmyk.remove("icc-profile-data")
    out = _run(cmyk)
    assert out.interpretation == "srgb" and out.bands == 3
    assert close(pixel(out, 1, 1), RED, 40)


def test_grey_16_bit_becomes_8_bit_grey() -> None:
    grey = (pyvips.Image.black(8, 8) + 30000).cast("ushort").copy(interpretation="grey16")
    out = _run(grey)
    assert (out.bands, out.format, out.interpretation) == (1, "uchar", "b-w")
    assert abs(pixel(out, 1, 1)[0] - 30000 / 257) < 2
