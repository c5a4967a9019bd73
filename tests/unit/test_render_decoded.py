"""The decoded cache: renders of one source share its decode, and never change a byte of output."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from imaging.render import parse_options, render_sync
from imaging.render.decoded import DecodedCache, image_bytes
from imgkit.errors import ImageError
from imgkit.settings import Settings, load_settings
from tests.unit._render_images import animated_gif, jpeg, marked, p3_jpeg, rgba_png, solid


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=str(tmp_path))


class CountingSource:
    """A source that counts how often the renderer reads it."""

    def __init__(self, data: bytes) -> None:
        self.data, self.reads = data, 0
        self.sha256 = hashlib.sha256(data).hexdigest()

    def __call__(self) -> bytes:
        self.reads += 1
        return self.data


SOURCES = {
    "jpeg rotated": jpeg(marked(1600, 800), orientation=6),
    "jpeg p3 profile": p3_jpeg(size=900),
    "png alpha": rgba_png(640, 480),
    "gif animated": animated_gif(),
}
REQUESTS = [
    {"w": "100", "format": "jpeg"},
    {"w": "90", "format": "webp", "q": "60"},
    {"w": "120", "h": "120", "fit": "cover", "gravity": "attention", "format": "png"},
    {"w": "300", "h": "100", "fit": "contain", "background": "00ff00", "format": "jpeg"},
    {"w": "64", "dpr": "2", "fit": "fill", "h": "20", "format": "avif"},
]


@pytest.mark.parametrize("name", SOURCES)
def test_output_is_byte_identical_with_and_without_the_cache(name: str, settings: Settings) -> None:
    source = CountingSource(SOURCES[name])
    cache = DecodedCache(64 * 2**20)
    for params in REQUESTS:
        options = parse_options(params)
        plain = render_sync(source.data, options, settings)
        first = render_sync(source, options, settings, source_key=source.sha256, decoded=cache)
        again = render_sync(source, options, settings, source_key=source.sha256, decoded=cache)
        assert first.data == plain.data == again.data, params
        assert (again.width, again.height, again.content_type) == (plain.width, plain.height,
                                                                  plain.content_type)
    assert cache.hits > 0 and len(cache) >= 1


def test_a_hit_never_reads_the_source_and_variants_at_one_scale_share_a_decode(
        settings: Settings) -> None:
    source = CountingSource(jpeg(solid(1600, 1200)))
    cache = DecodedCache(64 * 2**20)
    render_sync(source, parse_options({"w": "200", "format": "jpeg"}), settings,
                source_key=source.sha256, decoded=cache)
    assert source.reads == 1 and (cache.hits, cache.misses, len(cache)) == (0, 1, 1)
    # 1600 / 190 and 1600 / 200 both decode at 1/8; any format: the same decoded level
    for params in ({"w": "190", "format": "webp"}, {"w": "200", "format": "png"},
                   {"w": "100", "h": "100", "fit": "cover", "format": "jpeg"}):
        render_sync(source, parse_options(params), settings, source_key=source.sha256, decoded=cache)
    assert source.reads == 1 and cache.hits == 3 and len(cache) == 1
    # 1600 / 500 decodes at 1/2: another level, so the source is read once more
    render_sync(source, parse_options({"w": "500"}), settings, source_key=source.sha256, decoded=cache)
    assert source.reads == 2 and len(cache) == 2


def test_limits_are_checked_on_every_request_even_when_the_header_is_cached(
        settings: Settings, tmp_path: Path) -> None:
    source = CountingSource(jpeg(solid(800, 600)))
    cache = DecodedCache(64 * 2**20)
    render_sync(source, parse_options({"w": "100"}), settings, source_key=source.sha256, decoded=cache)
    strict = load_settings(data_dir=str(tmp_path), max_pixels=1000)
    with pytest.raises(ImageError, match="over the limit") as info:
        render_sync(source, parse_options({"w": "100"}), strict, source_key=source.sha256, decoded=cache)
    assert info.value.code == "too_many_pixels" and source.reads == 1


def test_without_a_key_or_with_size_zero_nothing_is_kept(settings: Settings) -> None:
    source = CountingSource(jpeg(solid(400, 300)))
    off = DecodedCache(0)
    for _ in range(2):
        render_sync(source, parse_options({"w": "50"}), settings, source_key=source.sha256, decoded=off)
    on = DecodedCache(2**20)
    render_sync(source, parse_options({"w": "50"}), settings, decoded=on)  # no source_key: not cacheable
    assert source.reads == 3 and len(off) == 0 and len(on) == 0 and on.misses == 0


def test_a_corrupt_source_fails_and_leaves_nothing(settings: Settings) -> None:
    data = jpeg(solid(800, 600))
    broken = CountingSource(data[:300] + b"\x00" * 40)
    cache = DecodedCache(64 * 2**20)
    for _ in range(2):
        with pytest.raises(ImageError):
            render_sync(broken, parse_options({"w": "100", "format": "jpeg"}), settings,
                        source_key=broken.sha256, decoded=cache)
    assert len(cache) == 0


def test_bounded_in_bytes_least_recently_used_out_and_no_entry_over_a_quarter(
        settings: Settings) -> None:
    sources = [CountingSource(jpeg(solid(256, 256, (i * 40, 10, 10)))) for i in range(5)]
    level = image_bytes(solid(256, 256))                       # w=256: decoded at full size
    cache = DecodedCache(level * 4)                            # room for exactly four
    for source in sources:
        render_sync(source, parse_options({"w": "256"}), settings, source_key=source.sha256, decoded=cache)
    assert len(cache) == 4 and cache.total_bytes == 4 * level
    render_sync(sources[1], parse_options({"w": "256"}), settings, source_key=sources[1].sha256,
                decoded=cache)
    assert sources[1].reads == 1                               # still cached; now the most recent
    render_sync(sources[0], parse_options({"w": "256"}), settings, source_key=sources[0].sha256,
                decoded=cache)
    assert sources[0].reads == 2                               # the first was evicted by the fifth
    big = CountingSource(jpeg(solid(300, 300)))                # 270 kB > a quarter of 4 x 196 kB
    render_sync(big, parse_options({"w": "300"}), settings, source_key=big.sha256, decoded=cache)
    assert len(cache) == 4 and cache.total_bytes <= cache.max_bytes


def test_concurrent_renders_of_one_source_agree(settings: Settings) -> None:
    source = CountingSource(jpeg(marked(1200, 900)))
    cache = DecodedCache(64 * 2**20)
    expected = render_sync(source.data, parse_options({"w": "150", "format": "webp"}), settings).data
    start = threading.Barrier(8)

    def one(_: int) -> bytes:
        start.wait()
        return render_sync(source, parse_options({"w": "150", "format": "webp"}), settings,
                           source_key=source.sha256, decoded=cache).data

    with ThreadPoolExecutor(8) as pool:
        outputs = list(pool.map(one, range(32)))
    assert all(out == expected for out in outputs) and len(cache) == 1
