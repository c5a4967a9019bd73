"""Dominant colours: generated images whose colours and proportions are known."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from imaging.palette import SAMPLE_SIZE, Colour, dominant_colours
from imgkit.errors import ImageError

RED, BLUE, GREEN, WHITE = (255, 0, 0), (0, 0, 255), (0, 200, 0), (255, 255, 255)


def stripes(size: tuple[int, int], parts: list[tuple[tuple[int, int, int], float]],
            mode: str = "RGB") -> Image.Image:
    """Vertical stripes: each colour covers its fraction of the width (so of the pixels)."""
    width, height = size
    img = Image.new(mode, size)
    x = 0
    for i, (colour, fraction) in enumerate(parts):
        right = width if i == len(parts) - 1 else x + round(width * fraction)
        img.paste(colour + ((255,) if mode == "RGBA" else ()), (x, 0, right, height))
        x = right
    return img


def encode(img: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def distance(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    return float(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) ** 0.5)


def test_red_three_quarters_blue_one_quarter() -> None:
    colours = dominant_colours(stripes((400, 300), [(RED, 0.75), (BLUE, 0.25)]))

    assert [c.hex for c in colours] == ["#ff0000", "#0000ff"]
    assert colours[0].share == pytest.approx(0.75, abs=0.01)
    assert colours[1].share == pytest.approx(0.25, abs=0.01)
    assert colours[0].rgb == RED
    assert isinstance(colours[0], Colour)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_encoded_bytes_give_the_same_answer(fmt: str) -> None:
    data = encode(stripes((1200, 900), [(RED, 0.75), (BLUE, 0.25)]), fmt, quality=95)

    colours = dominant_colours(data)

    # The shrink blends a few edge pixels and lossy formats move colours a little.
    assert distance(colours[0].rgb, RED) < 30
    assert colours[0].share == pytest.approx(0.75, abs=0.03)
    assert distance(colours[1].rgb, BLUE) < 30
    assert colours[1].share == pytest.approx(0.25, abs=0.03)


def test_three_colours_in_order_of_share() -> None:
    img = stripes((500, 200), [(GREEN, 0.2), (RED, 0.5), (BLUE, 0.3)])

    colours = dominant_colours(img, count=3)

    assert [c.rgb for c in colours] == [RED, BLUE, GREEN]
    assert [round(c.share, 2) for c in colours] == [0.5, 0.3, 0.2]


def test_shares_sum_to_one_and_count_is_respected() -> None:
    noisy = Image.effect_noise((300, 200), 80).convert("RGB")
    photo_like = Image.merge("RGB", (noisy.getchannel(0), noisy.rotate(90, expand=False).getchannel(0),
                                     Image.linear_gradient("L").resize((300, 200))))

    for count in (1, 3, 5, 8):
        colours = dominant_colours(photo_like, count=count)
        assert 1 <= len(colours) <= count
        assert sum(c.share for c in colours) == pytest.approx(1.0, abs=1e-9)
        assert [c.share for c in colours] == sorted((c.share for c in colours), reverse=True)
        for c in colours:
            assert c.hex == "#{:02x}{:02x}{:02x}".format(*c.rgb)


def test_deterministic() -> None:
    noisy = Image.effect_noise((640, 480), 60).convert("RGB")
    data = encode(noisy, "PNG")

    assert dominant_colours(data) == dominant_colours(data)
    assert dominant_colours(noisy) == dominant_colours(noisy)


def test_single_colour_image_has_one_colour() -> None:
    assert dominant_colours(Image.new("RGB", (64, 64), GREEN)) == [Colour("#00c800", 1.0, GREEN)]


def test_transparent_pixels_do_not_count() -> None:
    img = Image.new("RGBA", (200, 100), (0, 0, 0, 0))
    img.paste((*GREEN, 255), (0, 0, 50, 100))  # a quarter opaque green, the rest transparent black

    assert dominant_colours(img) == [Colour("#00c800", 1.0, GREEN)]
    # From bytes, the shrink blends the edge (alpha-premultiplied, so no dark fringe):
    # only shades of the green remain, none of the transparent black.
    colours = dominant_colours(encode(img, "PNG"))
    assert all(distance(c.rgb, GREEN) < 10 for c in colours)
    assert colours[0].share > 0.9


def test_fully_transparent_image_has_no_palette() -> None:
    img = Image.new("RGBA", (50, 50), (10, 20, 30, 0))
    assert dominant_colours(img) == []
    assert dominant_colours(encode(img, "PNG")) == []


@pytest.mark.parametrize("mode", ["L", "P", "LA", "I;16", "CMYK"])
def test_other_modes(mode: str) -> None:
    base = stripes((300, 100), [(RED, 0.75), (WHITE, 0.25)])
    img = base.convert("L").convert("I;16") if mode == "I;16" else base.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"

    for source in (img, encode(img, fmt)):
        colours = dominant_colours(source)
        assert sum(c.share for c in colours) == pytest.approx(1.0)
        assert colours[0].share == pytest.approx(0.75, abs=0.05)


def test_large_image_is_sampled_small_and_not_modified() -> None:
    img = stripes((3000, 2000), [(RED, 0.75), (BLUE, 0.25)])

    colours = dominant_colours(img)

    assert img.size == (3000, 2000)
    assert colours[0].share == pytest.approx(0.75, abs=0.01)
    assert SAMPLE_SIZE <= 128


def test_not_an_image() -> None:
    with pytest.raises(ImageError) as info:
        dominant_colours(b"this is not an image")
    assert info.value.code == "invalid_image"
    assert "known format" in str(info.value)


@pytest.mark.parametrize("count", [0, 257])
def test_count_out_of_range(count: int) -> None:
    with pytest.raises(ValueError, match="count"):
        dominant_colours(Image.new("RGB", (8, 8)), count=count)
