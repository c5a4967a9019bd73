"""End-to-end images/s through `imgkit dev` beside the bare extraction, same files, same run.

    .venv/bin/python -m tests.bench.bench_pipeline [--images 96] [--megapixels 12] [--threads N]
                                                   [--repeat 3]

Bare extraction = what the process agent does to the bytes (identify, decode
with shrink-on-load, sha256, pHash/dHash, palette, EXIF, XMP), on as many
threads as the service extracts with (IMGKIT_PROCESS_CONCURRENCY; by default
cores + 1 for both). The service run goes through a real `imgkit dev`
subprocess: POST /images for every file served from a loopback HTTP server,
timed until the last signed webhook arrives (so download, extraction,
ClickHouse writes and webhooks are all inside the figure). CPU per image is
read from /proc for the service and for this process (source server, receiver).
The bare and service runs alternate `--repeat` times and the median ratio is the
figure: on a shared VM a noisy minute otherwise lands on one side only.
"""

from __future__ import annotations

import argparse
import array
import fcntl
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pyvips

from imaging.extract import extract
from imgkit.settings import load_settings
from tests.support.app_server import free_port
from tests.support.http_server import HTTPTestServer
from tests.support.webhooks import WebhookReceiver

REPO = Path(__file__).resolve().parents[2]
WARMUP = 4  # images through the service before timing (imports, libvips and chDB caches)


def make_jpegs(count: int, megapixels: float) -> list[bytes]:
    width = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    height = int(width * 3 / 4)
    rng = np.random.default_rng(7)
    images = []
    for i in range(count):
        base = pyvips.Image.gaussnoise(width // 8, height // 8, sigma=60, mean=128 + i)
        rgb = base.bandjoin([base.rot180(), base.flip("horizontal")]).resize(8, kernel="linear")
        tint = [float(x) for x in rng.uniform(0.6, 1.4, 3)]
        images.append(bytes((rgb * tint).cast("uchar").jpegsave_buffer(Q=85)))
    return images


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), to split where cores went."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bare(images: list[bytes], threads: int) -> tuple[float, float]:
    """Images/s and CPU-seconds per image (this process does nothing else meanwhile)."""
    cpu = cpu_seconds(os.getpid())
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda data: extract(data), images))
    rate = len(images) / (time.perf_counter() - started)
    return rate, (cpu_seconds(os.getpid()) - cpu) / len(images)


def spread_directories(scratch: Path) -> None:
    """Mark `scratch` as a top directory (ext4's `chattr +T`), so that ext4 puts every data
    directory made in it in a block group of its own, away from the temp dir's group.

    Why: on an ext4 without a journal, as on the VM these figures come from, creating a
    file skips the group's recently freed inodes one by one (`recently_deleted` in perf).
    After a mass deletion in /tmp (a previous benchmark's or test run's cleanup), every
    file cost up to 0.65 ms, ~11 files per chDB insert: 1.6 to 4.3 ms of the service's CPU
    per image from one run to the next, the largest source of spread in this benchmark.
    Best effort: other file systems ignore or refuse the flag, and then nothing changes."""
    get_flags, set_flags, topdir = 0x80086601, 0x40086602, 0x00020000  # linux/fs.h
    fd = os.open(scratch, os.O_RDONLY)
    try:
        flags = array.array("l", [0])
        fcntl.ioctl(fd, get_flags, flags, True)
        flags[0] |= topdir
        fcntl.ioctl(fd, set_flags, flags)
    except OSError:
        pass
    finally:
        os.close(fd)


def service(images: list[bytes], threads: int, scratch: Path) -> tuple[float, float, float, list[float]]:
    """Images/s end to end, CPU-seconds per image of the service and of this process, and
    each image's latency (seconds from its POST to its webhook).

    The data directory is made under `scratch` (see `spread_directories`) and left there:
    removing it here would make the next run pay for it."""
    web = HTTPTestServer().start()
    hooks = WebhookReceiver().start()
    for i, data in enumerate(images):
        web.image(f"/img{i}.jpg", data, content_type="image/jpeg")
    port = free_port()
    data_dir = tempfile.mkdtemp(dir=scratch)
    env = {**os.environ, "IMGKIT_FETCH_ALLOW_PRIVATE": "true", "IMGKIT_WEBHOOK_ALLOW_PRIVATE": "true",
           "IMGKIT_LOG_LEVEL": "WARNING"}
    env["IMGKIT_PROCESS_CONCURRENCY"] = str(threads)
    proc = subprocess.Popen([sys.executable, "-m", "imgkit.cli", "dev", "--port", str(port),
                             "--data-dir", data_dir], env=env, cwd=REPO)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("imgkit dev did not start")
            time.sleep(0.2)
        creds = json.loads((Path(data_dir) / "dev-account.json").read_text())
        headers = {"Authorization": f"Bearer {creds['api_key']}"}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as api:  # warm-up, untimed
            for i in range(WARMUP):
                api.post("/images", json={"url": web.url(f"/img{i}.jpg"),
                                          "webhook_url": hooks.url("/warmup")}).raise_for_status()
        hooks.wait_for("/warmup", lambda got: len(got) >= WARMUP, timeout=120)
        hook = hooks.url("/bench")
        posted_at = [0.0] * len(images)
        # The client is made before the clock starts: httpx.Client() loads the CA bundle
        # (40-70 ms here), the client's cost, not the service's.
        with httpx.Client(base_url=base, headers=headers, timeout=30) as api, \
                ThreadPoolExecutor(8) as clients:  # concurrent clients, as `imgkit import` submits
            def post(i: int) -> None:
                posted_at[i] = time.monotonic()
                api.post("/images", json={"url": web.url(f"/img{i}.jpg"), "webhook_url": hook,
                                          "passthrough": {"i": i}}).raise_for_status()

            cpu_service, cpu_here = cpu_seconds(proc.pid), cpu_seconds(os.getpid())
            started = time.perf_counter()
            list(clients.map(post, range(len(images))))
        hooks.wait_for("/bench", lambda got: len(got) >= len(images), timeout=600)
        elapsed = time.perf_counter() - started
        cpu_service = (cpu_seconds(proc.pid) - cpu_service) / len(images)
        cpu_here = (cpu_seconds(os.getpid()) - cpu_here) / len(images)
        failed = [d for d in hooks.deliveries["/bench"] if d.event["type"] != "image.completed"]
        if failed:
            raise RuntimeError(f"{len(failed)} images failed: {failed[0].body[:300]!r}")
        latencies = [d.received_at - posted_at[d.event["data"]["passthrough"]["i"]]
                     for d in hooks.deliveries["/bench"]]
        return len(images) / elapsed, cpu_service, cpu_here, latencies
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        web.stop()
        hooks.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--megapixels", type=float, default=12.0)
    default_threads = load_settings().process_concurrency  # the service's default: cores + 1
    parser.add_argument("--threads", type=int, default=default_threads,
                        help="extraction threads, for the bare run and the service alike")
    parser.add_argument("--repeat", type=int, default=3,
                        help="bare and service runs, alternated; the median ratio is the figure")
    args = parser.parse_args()
    images = make_jpegs(args.images, args.megapixels)
    size = sum(map(len, images)) / len(images) / 1e6
    bare(images[:WARMUP], args.threads)  # warm libvips and imports, as the service is
    runs: list[tuple[float, float, float, float, float, list[float]]] = []
    with tempfile.TemporaryDirectory() as scratch:  # removed once every run is measured
        spread_directories(Path(scratch))
        for _ in range(args.repeat):  # alternated, so a noisy minute weighs on both sides alike
            bare_rate, bare_cpu = bare(images, args.threads)
            service_rate, cpu_service, cpu_here, latencies = service(images, args.threads,
                                                                     Path(scratch))
            runs.append((bare_rate, bare_cpu, service_rate, cpu_service, cpu_here, latencies))
    print(f"\n{args.images} JPEGs of {args.megapixels:g} MP (avg {size:.1f} MB), "
          f"{args.threads} threads, {os.cpu_count()} cores, {args.repeat} alternated runs\n")
    print("| run | bare images/s | bare CPU ms/image | `imgkit dev` images/s | relative | "
          "service CPU ms/image | source server + receiver CPU ms/image | "
          "POST→webhook p50 / p95 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for i, (bare_rate, bare_cpu, service_rate, cpu_service, cpu_here, latencies) in enumerate(runs, 1):
        cuts = statistics.quantiles(latencies, n=20)
        print(f"| {i} | {bare_rate:.2f} | {bare_cpu * 1000:.0f} | {service_rate:.2f} | "
              f"{service_rate / bare_rate:.0%} | {cpu_service * 1000:.0f} | {cpu_here * 1000:.0f} | "
              f"{statistics.median(latencies) * 1000:.0f} / {cuts[18] * 1000:.0f} |")
    ratios = sorted(r[2] / r[0] for r in runs)
    print(f"\nmedian relative throughput: {statistics.median(ratios):.0%} "
          f"(runs: {', '.join(f'{r:.0%}' for r in ratios)})")


if __name__ == "__main__":
    main()
