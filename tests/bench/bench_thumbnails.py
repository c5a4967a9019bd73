"""Thumbnail serving: ImgKit (`imgkit dev`) vs the bare library call vs thumbor, one markdown table.

    .venv/bin/python -m tests.bench.bench_thumbnails [--requests 64] [--clients 1,4,16]
                                                     [--max-seconds 60] [--no-thumbor]

What is measured, for a 400 px wide WebP and JPEG (q 80) of one 24-megapixel
JPEG (6000x4000, textured, q 90, ~9 MB; tests/bench/bench_render.py makes it):

- bare: the library call on N threads in this process, the source already in
  memory: pyvips (shrink-on-load, Lanczos3, ImgKit's encoder settings) and
  Pillow (`draft`, LANCZOS, same quality); the faster of the two is the bare figure.
  ImgKit's own pipeline (`render_sync`) in-process is shown beside it.
- ImgKit: `imgkit dev` as a subprocess (IMGKIT_FETCH_ALLOW_PRIVATE=true, default
  IMGKIT_RENDER_CONCURRENCY=2), requests straight to it (no nginx: every request renders).
  Twice: as configured by default, and with IMGKIT_RENDER_DECODED_CACHE_BYTES=0, which
  turns off the decoded cache (imaging/render/decoded.py) so that every request decodes
  the source, like the bare call does.
- thumbor (PyPI, in its own venv under <repo>/.cache/thumbor-venv, installed on
  first run): `/unsafe/400x0/filters:format(...):quality(80)/<source>`, PIL engine,
  ENGINE_THREADPOOL_SIZE=2 (one thread per core, like ImgKit's render concurrency),
  RESULT_STORAGE off; STORAGE is thumbor's file storage, which keeps downloaded
  originals on disk by URL: its equivalent of ImgKit's source cache.

The source is served by Debian's nginx (a separate process, sendfile) on
loopback, which answers any path with the photo and logs every request, so the
number of downloads is counted, not assumed.

- cold: every request names a distinct source URL (`/cold/<uuid>.jpg`), and nginx
  appends that path after the JPEG's end-of-image marker (decoders ignore it), so
  every request downloads, stores and decodes a source never seen before: distinct
  bytes, so no content-addressed cache can help.
- warm: one source URL, fetched once before the cell; every timed request renders
  from the cached source, at one of 32 widths (384..415 px, mean 400) so that most
  requests ask for a thumbnail not asked for before.

Load: httpx.AsyncClient from this process, C concurrent clients each sending
the next request as soon as the previous one is answered, a fixed number of
requests per cell (bounded by --max-seconds). Peak RSS: VmHWM of the server
process, reset before each cell through /proc/<pid>/clear_refs (so it is the
cell's peak, not the lifetime's). The load average of the machine is printed
with the table: other processes share the 2 cores. The environment is passed on
to `imgkit dev`, so `IMGKIT_RENDER_CONCURRENCY=4 python -m tests.bench.bench_thumbnails`
measures another setting.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import quote

import httpx
import pyvips
from PIL import Image

from imaging.render import parse_options, render_sync
from imaging.render.encode import _SAVERS
from imgkit.settings import load_settings
from imgkit.signing import sign_url
from tests.bench.bench_render import synthetic_photo
from tests.integration.test_nginx_cache import nginx_binary
from tests.support.app_server import free_port

REPO = Path(__file__).resolve().parents[2]
THUMBOR_VENV = REPO / ".cache" / "thumbor-venv"
IMGKIT = "ImgKit (`imgkit dev`)"
IMGKIT_NO_DECODED = "ImgKit, decoded cache off"
IMGKIT_CONFIGS: tuple[tuple[str, dict[str, str]], ...] = (
    (IMGKIT, {}), (IMGKIT_NO_DECODED, {"IMGKIT_RENDER_DECODED_CACHE_BYTES": "0"}))
"""The ImgKit servers measured: as configured by default, and decoding on every request."""
WIDTH = 400
WARM_WIDTHS = tuple(range(384, 416))
"""Widths of the warm requests, in turn: distinct thumbnails of one source, mean 400 px."""
QUALITY = 80
FORMATS = ("webp", "jpeg")
CONTENT_TYPES = {"webp": "image/webp", "jpeg": "image/jpeg"}


# --- measurements ---------------------------------------------------------------------------
@dataclass
class Cell:
    rps: float
    p50: float | None = None   # ms
    p99: float | None = None   # ms
    rss_mb: float | None = None
    errors: int = 0
    note: str = ""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with suppress(OSError):
                todo += [int(p) for p in (task / "children").read_text().split()]
    return pids


def reset_peak_rss(pid: int) -> None:
    for one in process_tree(pid):
        with suppress(OSError):
            Path(f"/proc/{one}/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def peak_rss_mb(pid: int) -> float:
    total = 0
    for one in process_tree(pid):
        for line in Path(f"/proc/{one}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1])
    return total / 1024


async def _load(base: str, paths: list[str], clients: int, content_type: str,
                max_seconds: float) -> tuple[list[float], Counter[str], float]:
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    queue = iter(paths)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        deadline = started + max_seconds

        async def worker() -> None:
            for path in queue:
                if time.perf_counter() > deadline:
                    return
                sent = time.perf_counter()
                try:
                    answer = await client.get(path)
                except httpx.HTTPError as exc:
                    outcomes[type(exc).__name__] += 1
                    continue
                if answer.status_code == 200 and answer.headers.get("content-type") == content_type:
                    latencies.append((time.perf_counter() - sent) * 1000)
                    outcomes["ok"] += 1
                else:
                    outcomes[f"{answer.status_code} {answer.text[:80]}"] += 1

        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return latencies, outcomes, elapsed


def load(base: str, paths: list[str], clients: int, fmt: str, pid: int, max_seconds: float) -> Cell:
    reset_peak_rss(pid)
    latencies, outcomes, elapsed = asyncio.run(_load(base, paths, clients, CONTENT_TYPES[fmt],
                                                     max_seconds))
    errors = sum(n for k, n in outcomes.items() if k != "ok")
    note = "; ".join(f"{n}x {k}" for k, n in outcomes.items() if k != "ok")
    if not latencies:
        return Cell(0.0, errors=errors, note=note)
    return Cell(len(latencies) / elapsed, statistics.median(latencies), percentile(latencies, 0.99),
                peak_rss_mb(pid), errors, note)


# --- the bare call --------------------------------------------------------------------------
def bare_variants(fmt: str) -> dict[str, Callable[[bytes], bytes]]:
    saver, vips_options = _SAVERS[fmt]

    def pyvips_shrink_on_load(data: bytes) -> bytes:
        probe = pyvips.Image.new_from_buffer(data, "")
        factor = probe.width / WIDTH
        shrink = next((s for s in (8, 4, 2) if factor >= s), 1)
        image = pyvips.Image.new_from_buffer(data, "", access="sequential", shrink=shrink)
        image = image.resize(WIDTH / image.width, kernel="lanczos3")
        return bytes(getattr(image, saver)(**vips_options, keep="icc", Q=QUALITY))

    def pillow_draft(data: bytes) -> bytes:
        source = Image.open(io.BytesIO(data))
        height = round(WIDTH * source.height / source.width)
        source.draft("RGB", (WIDTH, height))
        image = source.convert("RGB").resize((WIDTH, height), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        if fmt == "jpeg":
            image.save(out, "JPEG", quality=QUALITY, optimize=True)
        else:
            image.save(out, "WEBP", quality=QUALITY, method=4)
        return out.getvalue()

    settings = load_settings()
    options = parse_options({"w": str(WIDTH), "format": fmt, "q": str(QUALITY)})

    def imgkit_render_sync(data: bytes) -> bytes:
        return render_sync(data, options, settings).data

    return {"pyvips": pyvips_shrink_on_load, "Pillow+draft": pillow_draft,
            "imgkit render_sync": imgkit_render_sync}


def bare(fn: Callable[[bytes], bytes], data: bytes, clients: int, requests: int) -> Cell:
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda _: fn(data), range(clients)))  # warm every thread
        started = time.perf_counter()
        list(pool.map(lambda _: fn(data), range(requests)))
        return Cell(requests / (time.perf_counter() - started))


# --- the servers ------------------------------------------------------------------------------
class Source:
    """Debian's nginx answering every path with the photo, logging each request."""

    def __init__(self, photo: bytes, directory: Path) -> None:
        self.directory = directory
        for name in ("logs", "temp", "www"):
            (directory / name).mkdir(parents=True, exist_ok=True)
        (directory / "www" / "photo.jpg").write_bytes(photo)
        self.port = free_port()
        self.access_log = directory / "logs" / "access.log"
        user = "user root;" if os.geteuid() == 0 else ""
        conf = directory / "nginx.conf"
        conf.write_text(f"""
{user} worker_processes 1; daemon off; pid {directory}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
  access_log {self.access_log}; default_type image/jpeg; sendfile on; keepalive_requests 100000;
  client_body_temp_path {directory}/temp; proxy_temp_path {directory}/temp;
  fastcgi_temp_path {directory}/temp; uwsgi_temp_path {directory}/temp; scgi_temp_path {directory}/temp;
  server {{
    listen 127.0.0.1:{self.port}; root {directory}/www;
    location = /tag {{ internal; default_type text/plain; return 200 "$request_uri"; }}
    location /cold/ {{ addition_types image/jpeg; add_after_body /tag; try_files /photo.jpg =404; }}
    location / {{ try_files /photo.jpg =404; }}
  }}
}}""")
        self.process = subprocess.Popen([nginx_binary(), "-p", str(directory), "-c", str(conf), "-e",
                                         str(directory / "logs" / "error.log")])
        wait_http(f"http://127.0.0.1:{self.port}/ready", self.process, 15)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def downloads(self) -> int:
        return len(self.access_log.read_text().splitlines()) if self.access_log.exists() else 0

    def stop(self) -> None:
        stop_process(self.process, signal.SIGQUIT)


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def imgkit_server(data_dir: Path, log: Path, extra_env: dict[str, str] | None = None
                  ) -> Iterator[tuple[str, int, dict[str, str]]]:
    port = free_port()
    env = {**os.environ, "IMGKIT_FETCH_ALLOW_PRIVATE": "true", "IMGKIT_LOG_LEVEL": "WARNING",
           **(extra_env or {})}
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "imgkit.cli", "dev", "--port", str(port),
                                    "--data-dir", str(data_dir)], env=env, cwd=REPO, stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", process, 90)
        creds = json.loads((data_dir / "dev-account.json").read_text())
        yield base, process.pid, creds
    finally:
        stop_process(process)


def install_thumbor() -> str | None:
    """thumbor's server executable, installing it into its own venv if missing; None + message on failure."""
    executable = THUMBOR_VENV / "bin" / "thumbor"
    if executable.exists():
        return str(executable)
    print(f"installing thumbor into {THUMBOR_VENV} (benchmark only) ...", file=sys.stderr)
    python = shutil.which("python3") or sys.executable
    steps = [[python, "-m", "venv", str(THUMBOR_VENV)],
             [str(THUMBOR_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "thumbor"]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"`{' '.join(step)}` failed ({done.returncode}):\n"
                               f"{(done.stderr or done.stdout)[-3000:]}")
    return str(executable)


@contextmanager
def thumbor_server(executable: str, directory: Path, log: Path) -> Iterator[tuple[str, int]]:
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "thumbor.conf"
    conf.write_text(f"""
LOADER = 'thumbor.loaders.http_loader'
STORAGE = 'thumbor.storages.file_storage'     # originals, on disk, by URL: the source cache
FILE_STORAGE_ROOT_PATH = '{directory / "storage"}'
RESULT_STORAGE = None                          # no cache of results: every request renders
ALLOW_UNSAFE_URL = True
ENGINE = 'thumbor.engines.pil'
ENGINE_THREADPOOL_SIZE = 2
QUALITY = {QUALITY}
WEBP_QUALITY = {QUALITY}
AUTO_WEBP = False
MAX_PIXELS = 100000000
HTTP_LOADER_MAX_CLIENTS = 64
""")
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen([executable, "-p", str(port), "-i", "127.0.0.1", "-c", str(conf),
                                    "-l", "warning"], stdout=out, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthcheck", process, 60)
        yield base, process.pid
    finally:
        stop_process(process)


def imgkit_path(creds: dict[str, str], source: str, fmt: str, width: int = WIDTH) -> str:
    query = f"url={quote(source, safe='')}&w={width}&format={fmt}&q={QUALITY}"
    return sign_url(f"/thumbnail?{query}", creds["account_id"], creds["signing_secret"])


def thumbor_path(source: str, fmt: str, width: int = WIDTH) -> str:
    return f"/unsafe/{width}x0/filters:format({fmt}):quality({QUALITY})/{source.removeprefix('http://')}"


def check_output(base: str, path: str, fmt: str) -> str:
    """Fetch once (warming the source) and check the picture is the asked thumbnail."""
    answer = httpx.get(base + path, timeout=120)
    if answer.status_code != 200:
        raise RuntimeError(f"{base}{path[:120]} -> {answer.status_code} {answer.text[:300]}")
    image = Image.open(io.BytesIO(answer.content))
    if image.format != fmt.upper() or image.width != WIDTH:
        raise RuntimeError(f"{base}: expected a {WIDTH} px wide {fmt}, got {image.format} {image.size}")
    return f"{image.size[0]}x{image.size[1]} {len(answer.content) // 1024} kB"


# --- the run ----------------------------------------------------------------------------------
def loadavg() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=64, help="requests per cell")
    parser.add_argument("--clients", default="1,4,16", help="concurrencies, comma-separated")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="bound of one cell")
    parser.add_argument("--no-thumbor", action="store_true")
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.clients.split(",")]
    pyvips.cache_set_max(0)  # the bare call decodes every time, as a request does

    photo = synthetic_photo()
    print(f"source: 6000x4000 JPEG q90, {len(photo) / 1e6:.1f} MB; load average at start {loadavg()}",
          file=sys.stderr)
    thumbor_error = ""
    thumbor: str | None = None
    if not args.no_thumbor:
        try:
            thumbor = install_thumbor()
        except Exception as exc:  # reported in the output, the rest still runs
            thumbor_error = str(exc)

    rows: list[tuple[str, int, str, str, Cell]] = []
    sizes: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-thumbs-") as tmp_name:
        tmp = Path(tmp_name)
        source = Source(photo, tmp / "source")
        try:
            with ExitStack() as stack:
                imgkits = [(name, *stack.enter_context(
                    imgkit_server(tmp / f"imgkit{i}", tmp / f"imgkit{i}.log", env)))
                    for i, (name, env) in enumerate(IMGKIT_CONFIGS)]
                th = stack.enter_context(thumbor_server(thumbor, tmp / "thumbor", tmp / "thumbor.log")) \
                    if thumbor else None
                for fmt in FORMATS:
                    warm_source = source.url(f"/warm-{fmt}.jpg")
                    for name, base, _pid, creds in imgkits:
                        sizes[f"{name} {fmt}"] = check_output(base, imgkit_path(creds, warm_source, fmt), fmt)
                    if th:
                        sizes[f"thumbor {fmt}"] = check_output(th[0], thumbor_path(warm_source, fmt), fmt)
                    variants = bare_variants(fmt)
                    sizes.update({f"{name} {fmt}": f"{len(fn(photo)) // 1024} kB"
                                  for name, fn in variants.items()})
                    for clients in concurrencies:
                        n = args.requests
                        print(f"{fmt} x{clients} (load {loadavg()})", file=sys.stderr)
                        cells = {name: bare(fn, photo, clients, n) for name, fn in variants.items()}
                        best = max(("pyvips", "Pillow+draft"), key=lambda name: cells[name].rps)
                        rows.append((fmt, clients, f"bare: {best}", "in memory", cells[best]))
                        rows.append((fmt, clients, "ImgKit pipeline in-process (render_sync)", "in memory",
                                     cells["imgkit render_sync"]))
                        servers: list[tuple[str, str, int, Callable[..., str]]] = [
                            (name, base, pid, partial(imgkit_path, creds, fmt=fmt))
                            for name, base, pid, creds in imgkits]
                        if th:
                            servers.append(("thumbor", th[0], th[1], partial(thumbor_path, fmt=fmt)))
                        for name, base, pid, make in servers:
                            before = source.downloads()
                            cold = [make(source.url(f"/cold/{uuid.uuid4().hex}.jpg")) for _ in range(n)]
                            cell = load(base, cold, clients, fmt, pid, args.max_seconds)
                            got = source.downloads() - before
                            cell.note = (cell.note + f" {got} downloads for {n} requests").strip()
                            rows.append((fmt, clients, name, "cold", cell))
                            before = source.downloads()
                            warm = [make(warm_source, width=WARM_WIDTHS[i % len(WARM_WIDTHS)])
                                    for i in range(n)]
                            cell = load(base, warm, clients, fmt, pid, args.max_seconds)
                            if source.downloads() != before:
                                cell.note = (cell.note + f" {source.downloads() - before} downloads!").strip()
                            rows.append((fmt, clients, name, "warm", cell))
        finally:
            source.stop()

    print_report(rows, sizes, thumbor_error, args.requests)


def fmt_ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def print_report(rows: list[tuple[str, int, str, str, Cell]], sizes: dict[str, str], thumbor_error: str,
                 requests: int) -> None:
    index = {(fmt, clients, name.split(":")[0], cache): cell for fmt, clients, name, cache, cell in rows}
    print(f"\n400 px wide thumbnail (q {QUALITY}) of a 6000x4000 JPEG q90; {requests} requests per cell; "
          f"{os.cpu_count()} cores, load average at end {loadavg()}\n")
    print("| format | clients | server | source | req/s | p50 ms | p99 ms | peak RSS MB | vs bare | notes |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|---|")
    for fmt, clients, name, cache, cell in rows:
        bare_cell = index[(fmt, clients, "bare", "in memory")]
        relative = f"{cell.rps / bare_cell.rps:.0%}" if bare_cell.rps else "—"
        rss = "—" if cell.rss_mb is None else f"{cell.rss_mb:.0f}"
        print(f"| {fmt} | {clients} | {name} | {cache} | {cell.rps:.1f} | {fmt_ms(cell.p50)} | "
              f"{fmt_ms(cell.p99)} | {rss} | {relative} | {cell.note} |")
    print("\nTargets (overhead = bare req/s / ImgKit warm req/s - 1, i.e. extra time per request; "
          "negative: faster than the bare call):\n")
    print("| format | clients | ImgKit warm overhead (< 20%) | same, decoded cache off | "
          "ImgKit / thumbor, warm (>= 2x) | same, decoded cache off | ImgKit / thumbor, cold (>= 2x) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for fmt in FORMATS:
        for clients in sorted({c for f, c, *_ in rows if f == fmt}):
            bare_rps = index[(fmt, clients, "bare", "in memory")].rps
            cells: list[str] = []
            for server in (IMGKIT, IMGKIT_NO_DECODED):
                warm = index[(fmt, clients, server, "warm")].rps
                cells.append(f"{bare_rps / warm - 1:+.0%}" if warm else "—")
            for server, cache in ((IMGKIT, "warm"), (IMGKIT_NO_DECODED, "warm"), (IMGKIT, "cold")):
                theirs = index.get((fmt, clients, "thumbor", cache))
                ours = index[(fmt, clients, server, cache)].rps
                cells.append(f"{ours / theirs.rps:.2f}x" if theirs and theirs.rps else "—")
            print(f"| {fmt} | {clients} | " + " | ".join(cells) + " |")
    print("\nOutputs: " + "; ".join(f"{k}: {v}" for k, v in sizes.items()))
    if thumbor_error:
        print(f"\nthumbor could not be installed, so it is not in the table:\n```\n{thumbor_error}\n```")


if __name__ == "__main__":
    main()
