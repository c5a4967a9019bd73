"""Pillow+draft vs libvips for a 400 px JPEG thumbnail of a 24-megapixel JPEG.

Run: `.venv/bin/python tests/bench/bench_render.py [photo.jpg|""] [rounds]` (without a file,
a 6000x4000 synthetic photo-like JPEG is generated). Variants run interleaved
in random order so that load from other processes spreads evenly; the report
gives the median and 10th/90th percentiles in milliseconds and the output bytes.
This is what chose shrink-on-load by `new_from_buffer(shrink=...)` over
`thumbnail_buffer` in imaging/render/load.py.
"""

from __future__ import annotations

import io
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyvips
from PIL import Image

from imaging.render import parse_options, render_sync
from imgkit.settings import load_settings

WIDTH = 400


def synthetic_photo() -> bytes:
    """6000x4000 JPEG q90 with smooth structure plus sensor-like noise (~9 MB, like a camera's)."""
    w, h = 6000, 4000
    base = pyvips.Image.gaussnoise(w // 8, h // 8, mean=128, sigma=60).resize(8, kernel="linear")
    xy = pyvips.Image.xyz(w, h)
    r = (base + xy[0] / (w / 80)).cast("uchar")
    g = (base.rot180() * 0.7 + xy[1] / (h / 100)).cast("uchar")
    b = pyvips.Image.gaussnoise(w, h, mean=128, sigma=6).cast("uchar")
    return bytes(r.bandjoin([g, b]).copy(interpretation="srgb").jpegsave_buffer(Q=90))


def variants(data: bytes) -> dict[str, Callable[[], bytes]]:
    settings = load_settings()
    options = parse_options({"w": str(WIDTH), "format": "jpeg", "q": "80"})

    def pillow_draft() -> bytes:
        source = Image.open(io.BytesIO(data))
        source.draft("RGB", (WIDTH, WIDTH * source.height // source.width))
        im = source.resize((WIDTH, round(WIDTH * source.height / source.width)), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        im.save(out, "JPEG", quality=80, optimize=True)
        return out.getvalue()

    def vips_thumbnail_default() -> bytes:
        return bytes(pyvips.Image.thumbnail_buffer(data, WIDTH).jpegsave_buffer(Q=80))

    def vips_thumbnail_tuned() -> bytes:
        im = pyvips.Image.thumbnail_buffer(data, WIDTH, height=100_000, size="down", no_rotate=True)
        return bytes(im.jpegsave_buffer(Q=80, optimize_coding=True, keep="icc"))

    def vips_shrink_on_load() -> bytes:
        im = pyvips.Image.new_from_buffer(data, "", access="sequential", shrink=8)
        im = im.resize(WIDTH / im.width, kernel="lanczos3")
        return bytes(im.jpegsave_buffer(Q=80, optimize_coding=True, keep="icc"))

    def imgkit_pipeline() -> bytes:
        return render_sync(data, options, settings).data

    return {f.__name__: f for f in (pillow_draft, vips_thumbnail_default, vips_thumbnail_tuned,
                                     vips_shrink_on_load, imgkit_pipeline)}


def main() -> None:
    pyvips.cache_set_max(0)  # every run decodes, as a real request would
    data = Path(sys.argv[1]).read_bytes() if len(sys.argv) > 1 and sys.argv[1] else synthetic_photo()
    runs = variants(data)
    times: dict[str, list[float]] = {name: [] for name in runs}
    sizes = {name: len(fn()) for name, fn in runs.items()}  # warm up
    order = list(runs)
    for _ in range(int(sys.argv[2]) if len(sys.argv) > 2 else 25):
        random.shuffle(order)
        for name in order:
            start = time.perf_counter()
            runs[name]()
            times[name].append((time.perf_counter() - start) * 1000)
    print(f"source {len(data)} bytes, {WIDTH} px wide JPEG q80, libvips {pyvips.version(0)}."
          f"{pyvips.version(1)}.{pyvips.version(2)}, concurrency {pyvips.concurrency_get()}")
    for name, ts in times.items():
        ts.sort()
        p10, p90 = ts[len(ts) // 10], ts[(len(ts) * 9) // 10]
        print(f"{name:24s} median {statistics.median(ts):6.1f} ms  p10 {p10:6.1f}  p90 {p90:6.1f}  "
              f"{sizes[name]} bytes")


if __name__ == "__main__":
    main()
