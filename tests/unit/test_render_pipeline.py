"""The whole renderer: the runner, the deadline, the concurrency gate, and end-to-end cases."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from imaging.render import STEPS, parse_options, render, render_sync
from imaging.render import pipeline as pipeline_module
from imaging.render.context import RenderContext
from imaging.render.errors import RenderTimeout
from imaging.render.pipeline import run_steps
from imgkit.errors import ImageError
from imgkit.settings import Settings, load_settings
from tests.unit._render_images import (
    RED,
    animated_gif,
    close,
    context,
    decode,
    jpeg,
    marked,
    p3_jpeg,
    pixel,
    rgba_png,
    solid,
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=str(tmp_path))


def test_steps_are_named_and_ordered() -> None:
    assert [s.__name__ for s in STEPS] == ["probe", "plan", "choose_format", "scale_on_load", "orient",
                                           "resize", "colour", "crop", "finalize", "encode"]


def test_orientation_6_jpeg_comes_out_rotated(settings: Settings) -> None:
    out = render_sync(jpeg(marked(400, 200), orientation=6), parse_options({"w": "100", "format": "png"}),
                      settings)
    assert (out.width, out.height, out.content_type) == (100, 200, "image/png")
    assert close(pixel(out.data, 75, 25), RED) and not close(pixel(out.data, 25, 25), RED)


def test_icc_profile_is_converted_and_srgb_attached(settings: Settings) -> None:
    out = render_sync(p3_jpeg(RED, size=200), parse_options({"w": "50", "format": "jpeg", "q": "95"}),
                      settings)
    image = decode(out.data)
    assert image.get_typeof("icc-profile-data")
    assert image.get("icc-profile-data") == solid(4, 4).icc_transform(
        "srgb", input_profile="srgb").get("icc-profile-data")
    assert close(pixel(image, 25, 25), RED, 8)


def test_exif_is_stripped(settings: Settings) -> None:
    out = render_sync(jpeg(solid(100, 100), orientation=1), parse_options({"w": "50", "format": "jpeg"}),
                      settings)
    assert not [f for f in decode(out.data).get_fields() if f.startswith("exif")]


@pytest.mark.parametrize(("fit", "size"), [("cover", (200, 200)), ("contain", (200, 200)),
                                           ("fill", (200, 200)), ("inside", (200, 100))])
def test_fit_dimensions(settings: Settings, fit: str, size: tuple[int, int]) -> None:
    out = render_sync(jpeg(solid(800, 400)), parse_options({"w": "200", "h": "200", "fit": fit}), settings)
    assert (out.width, out.height) == size
    assert (decode(out.data).width, decode(out.data).height) == size


def test_dpr_multiplies_the_box(settings: Settings) -> None:
    out = render_sync(jpeg(solid(800, 400)), parse_options({"w": "100", "dpr": "2"}), settings)
    assert (out.width, out.height) == (200, 100)


@pytest.mark.parametrize(("accept", "content_type"), [
    ("image/avif,image/webp,*/*;q=0.8", "image/avif"),
    ("image/webp,*/*", "image/webp"),
    ("*/*", "image/jpeg"),
])
def test_format_auto_follows_accept(settings: Settings, accept: str, content_type: str) -> None:
    out = render_sync(jpeg(solid(64, 64)), parse_options({"w": "32"}, accept=accept), settings)
    assert out.content_type == content_type


def test_auto_keeps_transparency_as_png_for_old_clients(settings: Settings) -> None:
    out = render_sync(rgba_png(), parse_options({"w": "40"}, accept="*/*"), settings)
    assert out.content_type == "image/png" and decode(out.data).bands == 4


def test_animated_gif_renders_its_first_frame(settings: Settings) -> None:
    out = render_sync(animated_gif(), parse_options({"w": "20", "format": "png"}), settings)
    assert (out.width, out.height) == (20, 15)
    assert close(pixel(out.data, 10, 7), RED)


def test_too_many_pixels_is_422(tmp_path: Path) -> None:
    small_limit = load_settings(data_dir=str(tmp_path), max_pixels=1000)
    with pytest.raises(ImageError) as info:
        render_sync(jpeg(solid(100, 100)), parse_options({"w": "10"}), small_limit)
    assert info.value.status == 422 and info.value.code == "too_many_pixels"


def test_corrupt_pixels_are_an_image_error(settings: Settings) -> None:
    data = jpeg(solid(300, 300))
    with pytest.raises(ImageError):
        render_sync(data[:200] + b"\x00" * 50, parse_options({"w": "10", "format": "jpeg"}), settings)


def test_the_runner_stops_between_steps_past_the_deadline() -> None:
    ran: list[str] = []

    def slow(ctx: RenderContext) -> None:
        ran.append("slow")
        time.sleep(0.05)

    def never(ctx: RenderContext) -> None:
        ran.append("never")

    with pytest.raises(RenderTimeout, match="before step never") as info:
        run_steps(context(b"x"), [slow, never], deadline=time.monotonic() + 0.01)
    assert ran == ["slow"] and info.value.status == 503


async def test_render_runs_in_threads_at_most_render_concurrency_at_once(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.render_concurrency = 2
    active, peak, lock = 0, 0, threading.Lock()

    def fake_render(*args: object, **kwargs: object) -> str:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)
        with lock:
            active -= 1
        return "done"

    monkeypatch.setattr(pipeline_module, "render_sync", fake_render)
    options = parse_options({})
    results = await asyncio.gather(*(render(b"x", options, settings) for _ in range(6)))
    assert results == ["done"] * 6 and peak == 2


async def test_render_gives_up_when_the_queue_outlasts_the_timeout(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.render_concurrency, settings.render_timeout = 1, 0.1
    monkeypatch.setattr(pipeline_module, "render_sync", lambda *a, **k: time.sleep(0.3))
    first = asyncio.ensure_future(render(b"x", parse_options({}), settings))
    await asyncio.sleep(0.01)
    with pytest.raises(RenderTimeout, match="queued"):
        await render(b"x", parse_options({}), settings)
    await first


async def test_render_end_to_end(settings: Settings) -> None:
    out = await render(jpeg(solid(640, 480)), parse_options({"w": "64", "format": "webp"}), settings)
    assert (out.width, out.height, out.content_type) == (64, 48, "image/webp")
