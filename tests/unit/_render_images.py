"""Images generated for the render tests (no binary fixtures in the repository)."""

from __future__ import annotations

import io

import pyvips
from PIL import Image

from imaging.render.context import RenderContext
from imaging.render.options import RenderOptions, parse_options

RED = (220, 20, 20)
BLUE = (20, 20, 220)


def solid(width: int, height: int, rgb: tuple[int, int, int] = BLUE) -> pyvips.Image:
    return (pyvips.Image.black(width, height, bands=3) + list(rgb)).cast("uchar").copy(
        interpretation="srgb")


def marked(width: int, height: int) -> pyvips.Image:
    """Blue with a red top-left quadrant, so that rotations and flips can be told apart."""
    return solid(width, height).insert(solid(width // 2, height // 2, RED), 0, 0)


def jpeg(image: pyvips.Image, orientation: int | None = None, q: int = 92) -> bytes:
    if orientation is not None:
        image = image.copy()
        image.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    return bytes(image.jpegsave_buffer(Q=q, keep="all"))


def p3_jpeg(rgb: tuple[int, int, int] = RED, size: int = 64) -> bytes:
    """An sRGB colour converted to Display P3, tagged with the P3 profile (numbers differ from sRGB)."""
    return bytes(solid(size, size, rgb).icc_transform("p3", input_profile="srgb").jpegsave_buffer(
        Q=95, keep="icc"))


def rgba_png(width: int = 80, height: int = 60) -> bytes:
    base = solid(width, height, RED).bandjoin_const([0])  # fully transparent...
    base = base.insert(solid(width // 2, height, RED).bandjoin_const([255]), 0, 0)  # ...right half
    return bytes(base.copy(interpretation="srgb").pngsave_buffer())


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (40, 30), colour) for colour in (RED, BLUE, (20, 220, 20))]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


def decode(data: bytes) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(data, "")


def pixel(data_or_image: bytes | pyvips.Image, x: int, y: int) -> list[float]:
    image = decode(data_or_image) if isinstance(data_or_image, bytes) else data_or_image
    return list(image(x, y))


def close(actual: list[float], expected: tuple[int, ...], tolerance: float = 12) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=False))


def context(source: bytes = b"", options: RenderOptions | None = None, **params: str) -> RenderContext:
    return RenderContext(source=source, options=options or parse_options(params),
                         max_pixels=100_000_000, max_output_pixels=16_000_000)
