"""Decoded sources kept in memory, so that the variants of one source share one decode.

Decoding is most of a thumbnail's cost: for a 400 px thumbnail of a 24 MP JPEG,
the shrink-on-load decode takes ~80 ms of a ~100 ms render, and the resize and
encode that follow take ~15-20 ms (tests/bench/bench_thumbnails.py). A page
asks for one picture in several widths (srcset), densities and formats, and
every CDN location that misses asks again; all of those that load the source
at the same scale (JPEG's 1/8, 1/4, 1/2 DCT scaling, WebP's scale) start from
the same decoded pixels. This cache keeps those pixels, keyed by the source's
sha256 and the loader options, so only the first of them decodes.

Why in memory and not on disk: the entries are derived and cheap to rebuild,
hot for minutes rather than days, and a memory image is shared by concurrent
renders with no read and no copy; on disk they would need crash consistency
(a torn file would become a thumbnail that CDNs cache for a year).

The output does not change: an entry is exactly what `scale_on_load` would
decode (materialised with `copy_memory`), metadata included, and every later
step runs as before; tests/unit/test_render_decoded.py checks the bytes are
equal. The header facts `probe` reads are kept too (tiny), so a render that
hits the cache never reads the source file. Bounded in bytes
(`IMGKIT_RENDER_DECODED_CACHE_BYTES`, 0 turns it off), least recently used out;
one entry may take at most a quarter of the bound, so a few huge full-size
decodes cannot flush everything else.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import pyvips

#: Bytes per band sample of libvips band formats (what a memory image costs).
_SAMPLE_BYTES = {"uchar": 1, "char": 1, "ushort": 2, "short": 2, "uint": 4, "int": 4, "float": 4,
                 "complex": 8, "double": 8, "dpcomplex": 16}
_PROBES_MAX = 100_000
"""Header facts kept (about 200 bytes each): far more than the decoded entries."""


@dataclass(frozen=True)
class Header:
    """What `probe` learns from a source's header: all the later steps need before decoding."""

    loader: str          # libvips loader, e.g. "jpegload_buffer"
    width: int           # first frame, as stored (orientation not applied)
    height: int
    orientation: int     # EXIF orientation, 1..8 (1 when absent or invalid)
    had_icc: bool        # an ICC profile is embedded
    has_alpha: bool      # there is an alpha band


def image_bytes(image: pyvips.Image) -> int:
    """Memory an uncompressed copy of `image` takes."""
    return int(image.width * image.height * image.bands * _SAMPLE_BYTES.get(image.format, 8))


LevelKey = tuple[str, tuple[tuple[str, Any], ...]]
"""(sha256 of the source, sorted loader options): what decides a decoded image."""


class DecodedCache:
    """Thread-safe LRU of decoded source levels (bounded in bytes) and source headers."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_bytes // 4
        self._lock = threading.Lock()
        self._levels: OrderedDict[LevelKey, tuple[pyvips.Image, int]] = OrderedDict()
        self._headers: OrderedDict[str, Header] = OrderedDict()
        self._total = 0
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @property
    def total_bytes(self) -> int:
        return self._total

    def __len__(self) -> int:
        return len(self._levels)

    @staticmethod
    def key(sha256: str, load_options: dict[str, Any]) -> LevelKey:
        return sha256, tuple(sorted(load_options.items()))

    # --- headers --------------------------------------------------------------------------
    def header(self, sha256: str) -> Header | None:
        with self._lock:
            found = self._headers.get(sha256)
            if found is not None:
                self._headers.move_to_end(sha256)
            return found

    def put_header(self, sha256: str, header: Header) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._headers[sha256] = header
            self._headers.move_to_end(sha256)
            while len(self._headers) > _PROBES_MAX:
                self._headers.popitem(last=False)

    # --- decoded levels -------------------------------------------------------------------
    def get(self, key: LevelKey) -> pyvips.Image | None:
        with self._lock:
            entry = self._levels.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._levels.move_to_end(key)
            self.hits += 1
            return entry[0]

    def fits(self, image: pyvips.Image) -> bool:
        """Whether `image` (not yet decoded) is small enough to be kept."""
        return self.enabled and image_bytes(image) <= self.max_entry_bytes

    def put(self, key: LevelKey, image: pyvips.Image) -> None:
        """Keep `image`, a memory image (`copy_memory()`), evicting the least recently used."""
        size = image_bytes(image)
        if not self.enabled or size > self.max_entry_bytes:
            return
        with self._lock:
            old = self._levels.pop(key, None)
            if old is not None:
                self._total -= old[1]
            self._levels[key] = (image, size)
            self._total += size
            while self._total > self.max_bytes and self._levels:
                _, (_, evicted) = self._levels.popitem(last=False)
                self._total -= evicted
