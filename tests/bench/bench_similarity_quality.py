"""How far apart do near-duplicates and unrelated images land in pHash / dHash distance?

Sources: the camera JPEGs of the shared corpus (`<repo>/../shared/corpus/cameras`) plus
generated "photo-like" images (blurred random shapes). Each source gets edited copies —
resized, recompressed (q 30-90), centre-cropped (5/10/20 % of each dimension), rotated a
few degrees — and every copy is hashed by the production pipeline (`imaging.extract`),
so orientation handling and the small decode are the ones the service uses. Every pair
of distinct sources is an "unrelated" pair.

Printed: distance percentiles per edit, then the false-negative rate (copies farther
than d) and false-positive rate (unrelated pairs within d) at d = 4..12, pHash alone and
with the dHash cross-check. Run: `.venv/bin/python tests/bench/bench_similarity_quality.py`.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import itertools
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyvips
from PIL import Image, ImageDraw, ImageFilter

from imaging.extract import extract

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "corpus" / "cameras"
DISTANCES = (4, 6, 8, 10, 12)
DHASH_THRESHOLDS = (10, 12, 14)

Edit = Callable[[pyvips.Image], bytes]


def generated(seed: int, width: int = 900, height: int = 640) -> bytes:
    """A photo-like image: a gradient sky, blurred random shapes, some texture."""
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height))
    top = tuple(rng.randrange(256) for _ in range(3))
    bottom = tuple(rng.randrange(256) for _ in range(3))
    draw = ImageDraw.Draw(image)
    for y in range(height):
        t = y / height
        shade = tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        draw.line([(0, y), (width, y)], fill=shade)
    for _ in range(rng.randrange(6, 16)):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1, y1 = x0 + rng.randrange(40, width // 2), y0 + rng.randrange(40, height // 2)
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(1, 6)))
    noise = np.random.default_rng(seed).normal(0, 6, (height, width, 3))
    array = np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def _jpeg(image: pyvips.Image, q: int = 90) -> bytes:
    return bytes(image.jpegsave_buffer(Q=q, strip=True))


def _crop(fraction: float) -> Edit:
    def edit(image: pyvips.Image) -> bytes:
        w, h = image.width, image.height
        cw, ch = round(w * (1 - fraction)), round(h * (1 - fraction))
        return _jpeg(image.crop((w - cw) // 2, (h - ch) // 2, cw, ch))
    return edit


def _rotate(degrees: float) -> Edit:
    def edit(image: pyvips.Image) -> bytes:
        rotated = image.similarity(angle=degrees)  # canvas grows; crop back to the original size
        left, top = (rotated.width - image.width) // 2, (rotated.height - image.height) // 2
        return _jpeg(rotated.crop(left, top, image.width, image.height))
    return edit


EDITS: dict[str, Edit] = {
    "resize 50%": lambda im: _jpeg(im.resize(0.5)),
    "resize 25%": lambda im: _jpeg(im.resize(0.25)),
    "jpeg q90": lambda im: _jpeg(im, 90),
    "jpeg q70": lambda im: _jpeg(im, 70),
    "jpeg q50": lambda im: _jpeg(im, 50),
    "jpeg q30": lambda im: _jpeg(im, 30),
    "crop 5%": _crop(0.05),
    "crop 10%": _crop(0.10),
    "crop 20%": _crop(0.20),
    "rotate 2deg": _rotate(2),
    "rotate 5deg": _rotate(5),
}


def hashes(data: bytes) -> tuple[int, int]:
    ex = extract(data, exif=False, xmp=False, palette=False)
    return int(ex.phash, 16), int(ex.dhash, 16)


def dist(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generated", type=int, default=12, help="generated sources (default 12)")
    parser.add_argument("--limit", type=int, default=0, help="at most this many corpus images")
    args = parser.parse_args()
    started = time.perf_counter()
    sources: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    for path in sorted(CORPUS.iterdir()):
        data = path.read_bytes() if path.suffix.lower() in (".jpg", ".jpeg") else b""
        digest = hashlib.sha256(data).hexdigest()
        if data and digest not in seen:  # the corpus holds a few byte-identical files twice
            seen.add(digest)
            sources.append((path.name, data))
    if args.limit:
        sources = sources[: args.limit]
    sources += [(f"generated-{i}", generated(i)) for i in range(args.generated)]

    originals: list[tuple[int, int]] = []
    pairs: dict[str, list[tuple[int, int]]] = {name: [] for name in EDITS}  # (pHash d, dHash d)
    for name, data in sources:
        try:
            ph, dh = hashes(data)
            # the decoded, upright image (autorot) is what gets edited, as a user would
            image = pyvips.Image.new_from_buffer(data, "").autorot()
            if image.bands > 3:
                image = image.extract_band(0, n=3)
            if image.interpretation not in ("srgb", "b-w"):
                image = image.colourspace("srgb")
        except Exception as exc:  # a corpus file the pipeline cannot read: say so, skip it
            print(f"skipping {name}: {exc}")
            continue
        originals.append((ph, dh))
        for edit_name, edit in EDITS.items():
            eph, edh = hashes(edit(image))
            pairs[edit_name].append((dist(ph, eph), dist(dh, edh)))
    unrelated = [(dist(a[0], b[0]), dist(a[1], b[1])) for a, b in itertools.combinations(originals, 2)]

    print(f"\n{len(originals)} sources ({len(originals) - args.generated} corpus cameras + "
          f"{args.generated} generated), {len(unrelated)} unrelated pairs, "
          f"{time.perf_counter() - started:.0f} s\n")
    print("Distances to the original (median / 90th percentile / max):")
    print(f"| {'edit':<14} | {'pHash':>12} | {'dHash':>12} |")
    print(f"|{'-' * 16}|{'-' * 14}|{'-' * 14}|")

    def stats(values: list[int]) -> str:
        a = np.array(values)
        return f"{int(np.median(a)):>3} /{int(np.percentile(a, 90)):>3} /{a.max():>3}"

    for edit_name, values in pairs.items():
        print(f"| {edit_name:<14} | {stats([p for p, _ in values]):>12} | "
              f"{stats([d for _, d in values]):>12} |")
    print(f"| {'unrelated':<14} | {stats([p for p, _ in unrelated]):>12} | "
          f"{stats([d for _, d in unrelated]):>12} |")
    closest = sorted(p for p, _ in unrelated)[:5]
    print(f"closest unrelated pairs, pHash: {closest}; dHash: {sorted(d for _, d in unrelated)[:5]}; "
          f"pairs with pHash <= 16: {sum(1 for p, _ in unrelated if p <= 16)}, <= 20: "
          f"{sum(1 for p, _ in unrelated if p <= 20)}\n")

    groups = {
        "resize+jpeg": [v for k, vs in pairs.items() if k.startswith(("resize", "jpeg")) for v in vs],
        "crop 5%": pairs["crop 5%"], "crop 10%": pairs["crop 10%"], "crop 20%": pairs["crop 20%"],
        "rotate 2-5deg": pairs["rotate 2deg"] + pairs["rotate 5deg"],
    }

    def rate(values: list[tuple[int, int]], keep: Callable[[int, int], bool]) -> str:
        return f"{100 * sum(1 for p, d in values if keep(p, d)) / len(values):5.1f}%"

    header = "| rule            | " + " | ".join(f"FN {g:<13}" for g in groups) + " | FP unrelated |"
    print("False negatives (copies not found) and false positives (unrelated found), by rule:")
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.strip("|").split("|")) + "|")
    # (label, pHash radius, dHash threshold or None)
    rules: list[tuple[str, int, int | None]] = [(f"pHash <= {d}", d, None) for d in DISTANCES]
    rules += [(f"p<={d} & d<={t}", d, t) for d in DISTANCES for t in DHASH_THRESHOLDS]
    for label, radius, threshold in rules:
        def keep(p: int, dh: int, radius: int = radius, threshold: int | None = threshold) -> bool:
            return p <= radius and (threshold is None or dh <= threshold)

        def miss(p: int, dh: int, keep: Callable[[int, int], bool] = keep) -> bool:
            return not keep(p, dh)

        misses = " | ".join(f"{rate(vs, miss):>16}" for vs in groups.values())
        print(f"| {label:<15} | {misses} | {rate(unrelated, keep):>12} |")

if __name__ == "__main__":
    main()
