"""Debian's real nginx with deploy/nginx/ in front of a real uvicorn: renders are cached.

nginx runs from a temporary prefix on a free port and is stopped after the
module; the upstream counts every request it receives, so a HIT is proven by
the upstream never seeing the second request.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from string import Template
from urllib.parse import quote

import httpx
import pytest

from imgkit.settings import load_settings
from imgkit.signing import sign_url
from tests.integration._render_server import DictDeps, RenderServer
from tests.unit._render_images import jpeg, marked

REPO = Path(__file__).resolve().parents[2]
NGINX_DIR = REPO / "deploy" / "nginx"
PHOTO = "https://images.example/photo.jpg"
ACCOUNT, SECRET = "acc_nginx", "nginx-secret"
CHROME = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
FIREFOX = "image/avif,image/webp,*/*"


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if not found:
        pytest.fail("nginx is not installed; the cache test needs Debian's nginx: apt-get install nginx")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def render_config(prefix: Path, upstream_port: int, listen_port: int) -> Path:
    """deploy/nginx/ with its ${IMGKIT_*} placeholders filled, in `prefix` (like envsubst would)."""
    for name in ("conf", "logs", "temp", "cache"):
        (prefix / name).mkdir(parents=True, exist_ok=True)
    values = {"IMGKIT_UPSTREAM": f"127.0.0.1:{upstream_port}", "IMGKIT_CACHE_DIR": str(prefix / "cache"),
              "IMGKIT_LISTEN_PORT": f"127.0.0.1:{listen_port}"}
    text = Template((NGINX_DIR / "imgkit.conf").read_text()).safe_substitute(values)
    assert "${IMGKIT_" not in text, "a placeholder of imgkit.conf was not filled"
    (prefix / "conf" / "imgkit.conf").write_text(text)
    shutil.copy(NGINX_DIR / "nginx.conf", prefix / "conf" / "nginx.conf")
    return prefix / "conf" / "nginx.conf"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RenderServer]:
    deps = DictDeps(directory=tmp_path_factory.mktemp("sources"))
    deps.images[PHOTO] = jpeg(marked(640, 480))
    deps.secrets[ACCOUNT] = [SECRET]
    server = RenderServer(deps, load_settings(data_dir=str(tmp_path_factory.mktemp("data")))).start()
    yield server
    server.stop()


@contextmanager
def run_nginx(prefix: Path, upstream_port: int) -> Iterator[str]:
    """Debian's nginx with deploy/nginx/ in front of 127.0.0.1:`upstream_port`; yields its base URL.

    Also used by tests/e2e/test_render.py in front of the whole app.
    """
    binary = nginx_binary()
    port = free_port()
    conf = render_config(prefix, upstream_port, port)
    # as root the workers would run as `nobody`, who cannot write into pytest's private temp dirs
    globals_ = "daemon off; master_process on;" + (" user root;" if os.geteuid() == 0 else "")
    command = [binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "logs" / "error.log"),
               "-g", globals_]
    check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, f"nginx -t rejected the config:\n{check.stderr}"
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (prefix / "logs" / "error.log").read_text() if (prefix / "logs" /
                                                                          "error.log").exists() else ""
                    pytest.fail(f"nginx did not start (exit {process.poll()}):\n{log}")
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGQUIT)  # graceful stop of the master and its worker
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="module")
def nginx(upstream: RenderServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_nginx(tmp_path_factory.mktemp("nginx"), upstream.port) as url:
        yield url


def signed(path: str, **params: str) -> str:
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
    return sign_url(f"{path}?{query}", ACCOUNT, SECRET)


def upstream_hits(upstream: RenderServer, path: str) -> int:
    return sum(1 for seen in upstream.requests if seen.split("?")[0] == path.split("?")[0]
               and seen.split("?")[1] == httpx.URL(path).query.decode())


def test_second_identical_request_is_a_hit_that_never_reaches_the_upstream(
        nginx: str, upstream: RenderServer) -> None:
    url = signed("/thumbnail", url=PHOTO, w="160", format="jpeg")
    with httpx.Client(base_url=nginx, timeout=30) as client:
        first = client.get(url)
        second = client.get(url)
    assert first.status_code == second.status_code == 200
    assert first.headers["x-cache-status"] == "MISS"
    assert second.headers["x-cache-status"] == "HIT"
    assert second.content == first.content and second.headers["content-type"] == "image/jpeg"
    assert second.headers["etag"] == first.headers["etag"]
    assert upstream_hits(upstream, url) == 1


def test_format_auto_is_cached_per_accept_class(nginx: str, upstream: RenderServer) -> None:
    url = signed("/thumbnail", url=PHOTO, w="96")
    with httpx.Client(base_url=nginx, timeout=30) as client:
        chrome = client.get(url, headers={"Accept": CHROME})
        firefox = client.get(url, headers={"Accept": FIREFOX})  # other header, same class
        webp = client.get(url, headers={"Accept": "image/webp,*/*"})
        plain = client.get(url, headers={"Accept": "*/*"})
        plain_again = client.get(url, headers={"Accept": "image/png,*/*"})
    assert [r.headers["x-cache-status"] for r in (chrome, firefox, webp, plain, plain_again)] == [
        "MISS", "HIT", "MISS", "MISS", "HIT"]
    assert [r.headers["content-type"] for r in (chrome, firefox, webp, plain)] == [
        "image/avif", "image/avif", "image/webp", "image/jpeg"]
    assert plain_again.headers["content-type"] == "image/jpeg"
    assert all(r.headers["vary"] == "Accept" for r in (chrome, firefox, webp, plain))
    assert upstream_hits(upstream, url) == 3


def test_if_none_match_is_answered_by_the_cache(nginx: str, upstream: RenderServer) -> None:
    url = signed("/proxy", url=PHOTO)
    with httpx.Client(base_url=nginx, timeout=30) as client:
        first = client.get(url)
        revalidated = client.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    assert revalidated.status_code == 304
    assert revalidated.headers["x-cache-status"] == "HIT"
    assert upstream_hits(upstream, url) == 1


def test_errors_are_not_cached(nginx: str, upstream: RenderServer) -> None:
    path = f"/thumbnail?url={quote(PHOTO, safe='')}&w=10&a={ACCOUNT}"
    with httpx.Client(base_url=nginx, timeout=30) as client:
        answers = [client.get(path) for _ in range(2)]
    assert [r.status_code for r in answers] == [403, 403]
    assert answers[1].headers["x-cache-status"] != "HIT"
    assert upstream_hits(upstream, path) == 2
