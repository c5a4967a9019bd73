"""Near-duplicate engines at 1M and 10M 64-bit hashes: build time, memory, query latency.

Run: `.venv/bin/python -m tests.bench.bench_index [--sizes 1000000,10000000] [--quick]`
(or `.venv/bin/python tests/bench/bench_index.py`). Prints one markdown table.

- data: `random` (uniform 64-bit hashes) and `clustered` (n/32 centres, each hash 0-6
  random bit flips from its centre, like collections of near-duplicate photos);
  ids are 31-byte KSUID-shaped strings (`img_` + 27 base-62 characters) in sorted order,
  as ids minted by time arrive;
- queries: existing hashes with 0-3 random bit flips (a re-encoded copy of a photo);
  each (engine, query kind) runs up to `--queries` queries or `--budget` seconds;
- single-threaded: numpy's bitwise ops are, and faiss gets `omp_set_num_threads(1)`;
- memory: our engines' `memory_bytes()` = numpy `nbytes` + `sys.getsizeof` of every Python
  object they hold (ids included); "excl. ids" leaves out the id storage. faiss: resident
  set growth during the build or the serialized size, whichever is larger (C++ allocations
  are invisible to tracemalloc; faiss runs first so that freed Python memory is not reused),
  ids excluded since faiss stores none;
- our latencies include making the sorted `Match` lists with id strings; faiss returns
  int labels and its results are not sorted by (distance, id);
- `vptree_pkg` (the PyPI package) builds one Python object per point: it runs on the first
  `--pkg-size` hashes (200k by default) of the 1M data set only;
- faiss `IndexBinaryMultiHash` range search is exact with nflip = r // nhash (used); its
  k-NN is approximate (nflip = 2 here).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from index.brute import BruteForceIndex
from index.engine import HashIndex, make_index
from index.mih import choose_substrings
from index.store import StoreIndex

RADII = (4, 8, 12)
K = 10
ALPHABET = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8)


def make_ids(n: int) -> np.ndarray:
    """n sorted, distinct 31-byte ids shaped like `img_` + KSUID, as one bytes array."""
    chars = np.empty((n, 31), dtype=np.uint8)
    chars[:, :4] = np.frombuffer(b"img_", dtype=np.uint8)
    value = np.arange(n, dtype=np.int64) * 7919 + 10**12  # spread, still increasing
    for column in range(30, 3, -1):
        chars[:, column] = ALPHABET[value % 62]
        value //= 62
    return chars.view("S31").ravel()


def make_hashes(n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "random":
        return rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    centres = rng.integers(0, 2**64, max(n // 32, 1), dtype=np.uint64, endpoint=False)
    hashes = centres[rng.integers(0, len(centres), n)]
    flips = rng.integers(0, 7, n)
    for i in range(6):
        bits = rng.integers(0, 64, n).astype(np.uint64)
        hashes ^= (flips > i).astype(np.uint64) << bits
    return hashes


def make_queries(hashes: np.ndarray, count: int, rng: np.random.Generator) -> list[int]:
    queries = hashes[rng.integers(0, len(hashes), count)].copy()
    for i in range(3):
        flip = rng.random(count) < 0.5 if i else np.ones(count, dtype=bool)
        queries ^= flip.astype(np.uint64) << rng.integers(0, 64, count).astype(np.uint64)
    return [int(q) for q in queries]


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Row:
    size: str
    data: str
    engine: str
    build_s: float = 0.0
    bytes_all: float | None = None
    bytes_index: float | None = None
    cells: dict[str, tuple[float, float, int]] = field(default_factory=dict)
    note: str = ""


@dataclass
class Candidate:
    """A built engine as the bench sees it: two query callables and its memory."""

    within: Callable[[int, int], Any]
    nearest: Callable[[int, int], Any]
    bytes_all: float | None
    bytes_index: float | None
    note: str = ""


def ours(name: str, ids: np.ndarray, hashes: np.ndarray) -> tuple[Candidate, float]:
    index: HashIndex = make_index(name)
    started = time.perf_counter()
    index.add_many(ids, hashes)
    build = time.perf_counter() - started
    n = len(hashes)
    total = index.memory_bytes()
    if isinstance(index, StoreIndex):
        excl = total - index._ids.nbytes
    elif isinstance(index, BruteForceIndex):
        excl = index._hashes.nbytes
    else:  # pragma: no cover - every engine is one of the two
        excl = total
    note = ""
    if name == "mih":
        note = f"m={choose_substrings(n)}"
    return Candidate(index.within, index.nearest, total / n, excl / n, note), build


def faiss_engine(kind: str, hashes: np.ndarray) -> tuple[Candidate, float]:
    import faiss

    faiss.omp_set_num_threads(1)
    codes = np.ascontiguousarray(hashes).view(np.uint8).reshape(-1, 8)
    n = len(hashes)
    before = rss_bytes()
    started = time.perf_counter()
    index: Any
    if kind == "flat":
        index = faiss.IndexBinaryFlat(64)
        note = ""
    else:
        nhash = choose_substrings(n)
        index = faiss.IndexBinaryMultiHash(64, nhash, 64 // nhash)
        note = f"nhash={nhash}, b={64 // nhash}"
    index.add(codes)
    build = time.perf_counter() - started
    grown = rss_bytes() - before
    serialized = len(faiss.serialize_index_binary(index))
    memory = max(grown, serialized) / n

    def as_code(query: int) -> np.ndarray:
        return np.array([query], dtype=np.uint64).view(np.uint8).reshape(1, 8)

    def within(query: int, radius: int) -> Any:
        if kind != "flat":
            index.nflip = radius // index.nhash  # exact by pigeonhole
        return index.range_search(as_code(query), radius + 1)[2]  # keeps d < radius + 1

    def nearest(query: int, k: int) -> Any:
        if kind != "flat":
            index.nflip = 2
        return index.search(as_code(query), k)[1][0]

    return Candidate(within, nearest, None, memory, note), build


def measure(fn: Callable[[], Any], budget: float, limit: int) -> tuple[float, float, int]:
    times: list[float] = []
    deadline = time.perf_counter() + budget
    while len(times) < limit and (len(times) < 5 or time.perf_counter() < deadline):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    ms = np.array(times) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), len(times)


def run_queries(row: Row, candidate: Candidate, queries: list[int], budget: float,
                check: dict[str, list[int]] | None) -> None:
    for radius in RADII:
        stream = iter(queries * 100)

        def one(r: int = radius, it: Any = stream) -> Any:
            return candidate.within(next(it), r)

        row.cells[f"within({radius})"] = measure(one, budget, len(queries))
        if check is not None:  # same answer sizes as brute force on the first queries
            sizes = [len(candidate.within(q, radius)) for q in queries[:3]]
            assert sizes == check[f"within({radius})"], (row.engine, radius, sizes)
    it = iter(queries * 100)
    row.cells[f"nearest({K})"] = measure(lambda: candidate.nearest(next(it), K), budget, len(queries))


def reference_sizes(hashes: np.ndarray, queries: list[int]) -> dict[str, list[int]]:
    """Answer sizes of the first queries, by a plain scan: every engine must agree."""
    dists = [np.bitwise_count(hashes ^ np.uint64(q)) for q in queries[:3]]
    return {f"within({r})": [int((d <= r).sum()) for d in dists] for r in RADII}


def bench(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    rng = np.random.default_rng(20240601)
    engines = args.engines.split(",")
    for size in args.sizes:
        ids = make_ids(size)
        for data in args.data.split(","):
            hashes = make_hashes(size, data, rng)
            queries = make_queries(hashes, args.queries, rng)
            label = f"{size / 1e6:g}M" if size >= 1_000_000 else f"{size / 1e3:g}k"
            check = reference_sizes(hashes, queries)
            for engine in engines:
                gc.collect()
                row = Row(label, data, engine)
                print(f"# {label} {data} {engine} ...", file=sys.stderr, flush=True)
                if engine == "vptree_pkg":
                    if size != min(args.sizes):
                        continue
                    subset = min(args.pkg_size, size)
                    row.engine = f"vptree_pkg ({subset // 1000}k)"
                    candidate, row.build_s = ours(engine, ids[:subset], hashes[:subset])
                    pkg_queries = make_queries(hashes[:subset], args.queries, rng)
                    row.bytes_all, row.bytes_index = candidate.bytes_all, candidate.bytes_index
                    run_queries(row, candidate, pkg_queries, args.budget, None)
                    rows.append(row)
                    del candidate
                    continue
                if engine.startswith("faiss_"):
                    candidate, row.build_s = faiss_engine(engine.removeprefix("faiss_"), hashes)
                else:
                    candidate, row.build_s = ours(engine, ids, hashes)
                row.bytes_all, row.bytes_index, row.note = (candidate.bytes_all, candidate.bytes_index,
                                                            candidate.note)
                run_queries(row, candidate, queries, args.budget, check)
                rows.append(row)
                del candidate
            del hashes
    return rows


def table(rows: list[Row]) -> str:
    kinds = [f"within({r})" for r in RADII] + [f"nearest({K})"]
    head = ["size", "data", "engine", "build s", "B/hash all", "B/hash excl. ids",
            *[f"{k} p50/p99 ms" for k in kinds], "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        def fmt(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}"
        cells = []
        for kind in kinds:
            p50, p99, count = row.cells[kind]
            cells.append(f"{p50:.3g} / {p99:.3g}" + ("" if count >= 50 else f" (n={count})"))
        lines.append("| " + " | ".join([row.size, row.data, row.engine, f"{row.build_s:.2f}",
                                          fmt(row.bytes_all), fmt(row.bytes_index), *cells, row.note])
                     + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1000000,10000000",
                        type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--data", default="random,clustered")
    parser.add_argument("--engines", default="faiss_flat,faiss_mih,brute,mih,vptree,vptree_pkg")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--budget", type=float, default=3.0, help="seconds per engine and query kind")
    parser.add_argument("--pkg-size", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="100k hashes, 50 queries, 0.5 s budgets")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.queries, args.budget, args.pkg_size = [100_000], 50, 0.5, 20_000
    started = time.perf_counter()
    rows = bench(args)
    print(table(rows))
    print(f"\n{len(rows)} rows in {time.perf_counter() - started:.0f} s; numpy {np.__version__}, "
          f"python {sys.version.split()[0]}, {os.cpu_count()} cpus (shared)")


if __name__ == "__main__":
    main()
