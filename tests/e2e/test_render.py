"""Signed thumbnails, proxied originals, screenshots and cards through the whole app (embedded mode).

Everything is real and on loopback: the app (`create_app`, chDB, the source cache,
the guarded downloader) on uvicorn, an HTTP server serving the source images
(which counts downloads), the screenshot service with its headless Chromium,
and Debian's nginx with deploy/nginx/ in front of the app. The app counts every
request that reaches it, so a cache HIT is proven by the app never seeing it.

chDB allows one app per process, so one app (and one Chromium) serves the module.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast
from urllib.parse import quote

import httpx
import pytest
import pyvips
from fastapi import FastAPI, Request, Response
from PIL import Image

from api.screenshot import create_screenshot_app
from imgkit.accounts import Account
from imgkit.runtime import Mode, Runtime
from imgkit.settings import load_settings
from imgkit.signing import sign_url
from tests.integration.test_nginx_cache import run_nginx
from tests.integration.test_screenshot import RED_PAGE, UvicornThread, close_to, decode
from tests.support.app_server import AppServer, free_port
from tests.support.http_server import HTTPTestServer
from tests.support.images import jpeg

PHOTO_SIZE = (2000, 1500)
MAX_PIXELS = 10_000_000


@dataclass
class Stack:
    app: AppServer
    web: HTTPTestServer
    main: Account
    rotating: Account
    seen: Counter[str]  # path?query of every request that reached the app

    def signed(self, path: str, account: Account | None = None, secret: str | None = None,
               **params: str) -> str:
        account = account or self.main
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
        return sign_url(f"{path}?{query}", account.id, secret or account.signing_secret)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.app.base_url, timeout=60)


def too_many_pixels_png() -> bytes:
    """4000x3000 (12 MP, over MAX_PIXELS) of one colour: a few kB on the wire."""
    return bytes(pyvips.Image.black(4000, 3000, bands=3).pngsave_buffer(compression=9))


@pytest.fixture(scope="module")
def web() -> Iterator[HTTPTestServer]:
    with HTTPTestServer() as server:
        server.image("/photo.jpg", jpeg(*PHOTO_SIZE), content_type="image/jpeg")
        server.image("/nginx.jpg", jpeg(1200, 800, colour=(10, 120, 10)), content_type="image/jpeg")
        server.image("/bomb.png", too_many_pixels_png())
        server.status("/missing.jpg", 404, b"no such image")
        server.html("/red", RED_PAGE)
        yield server


@pytest.fixture(scope="module")
def screenshot_service() -> Iterator[UvicornThread]:
    configured = load_settings().chromium_path
    chromium = configured if configured.exists() else Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.fail(f"Chromium not found at {configured}: the screenshot tests need a real browser; "
                    "run `apt-get install chromium` (or set IMGKIT_CHROMIUM_PATH)")
    settings = load_settings(fetch_allow_private=True, chromium_path=chromium, screenshot_timeout=10.0,
                             screenshot_concurrency=2)
    service = UvicornThread(create_screenshot_app(settings)).start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, web: HTTPTestServer,
          screenshot_service: UvicornThread) -> Iterator[Stack]:
    accounts: dict[str, Account] = {}

    async def create_accounts(runtime: Runtime) -> None:
        for name in ("main", "rotating"):
            accounts[name] = (await runtime.accounts.create(name)).account

    settings = load_settings(data_dir=tmp_path_factory.mktemp("data"), port=free_port(),
                             fetch_allow_private=True, screenshot_url=screenshot_service.url,
                             max_pixels=MAX_PIXELS, log_format="console")
    app = AppServer(settings, Mode.dev, create_accounts)
    seen: Counter[str] = Counter()
    fastapi_app = cast(FastAPI, app.server.config.app)

    @fastapi_app.middleware("http")
    async def count(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        seen[request.url.path + "?" + request.url.query] += 1
        return await call_next(request)

    app.start(timeout=120)
    try:
        yield Stack(app, web, accounts["main"], accounts["rotating"], seen)
    finally:
        app.stop()


def image_of(answer: httpx.Response) -> Image.Image:
    return Image.open(io.BytesIO(answer.content))


def error_code(answer: httpx.Response) -> str:
    return str(answer.json()["error"]["code"])


# --- /thumbnail ---------------------------------------------------------------------------
def test_thumbnail_variants_share_one_download_and_revalidate(stack: Stack) -> None:
    source = stack.web.url("/photo.jpg")
    webp_url = stack.signed("/thumbnail", url=source, w="400", format="webp")
    jpeg_url = stack.signed("/thumbnail", url=source, w="200", format="jpeg")
    with stack.client() as client:
        webp = client.get(webp_url)
        assert webp.status_code == 200, webp.text
        assert webp.headers["content-type"] == "image/webp"
        assert webp.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert image_of(webp).format == "WEBP" and image_of(webp).size == (400, 300)

        small = client.get(jpeg_url)
        assert small.status_code == 200, small.text
        assert small.headers["content-type"] == "image/jpeg"
        assert image_of(small).format == "JPEG" and image_of(small).size == (200, 150)
        assert stack.web.hits("/photo.jpg") == 1  # the second variant came from the source cache

        etag = webp.headers["etag"]
        assert etag.startswith('"') and etag != small.headers["etag"]
        again = client.get(webp_url, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == etag
        other = client.get(webp_url, headers={"If-None-Match": '"something-else"'})
        assert other.status_code == 200 and other.content == webp.content
    assert stack.web.hits("/photo.jpg") == 1


def test_unsigned_altered_and_unknown_account_are_403(stack: Stack) -> None:
    source = stack.web.url("/photo.jpg")
    good = stack.signed("/thumbnail", url=source, w="400", format="webp")
    unsigned = good.split("&s=")[0]
    altered = good.replace("w=400", "w=401")
    assert altered != good
    nobody = sign_url(f"/thumbnail?url={quote(source, safe='')}&w=400", "acc_nobody",
                      stack.main.signing_secret)
    with stack.client() as client:
        assert client.get(good).status_code == 200
        answers = {"unsigned": client.get(unsigned), "altered": client.get(altered),
                   "unknown account": client.get(nobody),
                   "no account": client.get(good.replace(f"a={stack.main.id}&", ""))}
    for name, answer in answers.items():
        assert answer.status_code == 403, (name, answer.text)
        assert answer.headers["cache-control"] == "no-store"
        assert error_code(answer).startswith("signature_"), name
    assert error_code(answers["unsigned"]) == "signature_missing"
    assert error_code(answers["altered"]) == error_code(answers["unknown account"]) == "signature_invalid"


def test_rotated_secret_keeps_old_urls_working(stack: Stack) -> None:
    account = stack.rotating
    source = stack.web.url("/photo.jpg")
    first_secret = account.signing_secret
    old = stack.signed("/thumbnail", account, url=source, w="120", format="jpeg")
    never = stack.signed("/thumbnail", account, secret="whsec_" + "A" * 44, url=source, w="120",
                         format="jpeg")

    async def rotate(runtime: Runtime) -> Account:
        return await runtime.accounts.rotate_secret(account.id)

    with stack.client() as client:
        assert client.get(old).status_code == 200
        rotated: Account = stack.app.call(rotate)
        assert rotated.signing_secrets == (rotated.signing_secret, first_secret)
        new = stack.signed("/thumbnail", rotated, url=source, w="120", format="jpeg")
        assert new != old
        assert client.get(old).status_code == 200, "a URL signed with the previous secret must still work"
        assert client.get(new).status_code == 200
        assert client.get(never).status_code == 403
        # a second rotation retires the first secret: at most two are active
        stack.app.call(rotate)
        assert client.get(old).status_code == 403
        assert client.get(new).status_code == 200


def test_proxy_returns_the_original_bytes(stack: Stack) -> None:
    url = stack.signed("/proxy", url=stack.web.url("/photo.jpg"))
    with stack.client() as client:
        answer = client.get(url)
        unsigned = client.get(url.split("&s=")[0])
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/jpeg"
    assert answer.content == jpeg(*PHOTO_SIZE)
    assert answer.headers["etag"]
    assert unsigned.status_code == 403


def test_missing_source_is_a_json_4xx(stack: Stack) -> None:
    with stack.client() as client:
        answer = client.get(stack.signed("/thumbnail", url=stack.web.url("/missing.jpg"), w="100"))
        proxied = client.get(stack.signed("/proxy", url=stack.web.url("/missing.jpg")))
    for one in (answer, proxied):
        assert 400 <= one.status_code < 500, one.text
        assert one.headers["content-type"].startswith("application/json")
        assert one.headers["cache-control"] == "no-store"
        error = one.json()["error"]
        assert error["code"] and "404" in error["message"]


def test_source_over_the_pixel_limit_is_422(stack: Stack) -> None:
    with stack.client() as client:
        answer = client.get(stack.signed("/thumbnail", url=stack.web.url("/bomb.png"), w="100"))
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert error["code"] == "too_many_pixels", error
    assert str(MAX_PIXELS) in error["message"]


# --- /screenshot and /card through the app to the screenshot service --------------------------
def test_screenshot_through_the_app(stack: Stack) -> None:
    url = stack.signed("/screenshot", url=stack.web.url("/red"), w="800", h="600", format="png")
    with stack.client() as client:
        answer = client.get(url)
        unsigned = client.get(url.split("&s=")[0])
        altered = client.get(url.replace("w=800", "w=801"))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/png"
    assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
    image = decode(answer.content)
    assert image.size == (800, 600)
    assert close_to(image.getpixel((150, 100)), (255, 0, 0))   # inside RED_PAGE's block
    assert close_to(image.getpixel((400, 400)), (255, 255, 255))
    assert unsigned.status_code == 403 and error_code(unsigned) == "signature_missing"
    assert altered.status_code == 403 and error_code(altered) == "signature_invalid"


def test_card_through_the_app(stack: Stack) -> None:
    url = stack.signed("/card/og", title="Hello from ImgKit", subtitle="end to end")
    with stack.client() as client:
        answer = client.get(url)
        unsigned = client.get(url.split("&s=")[0])
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/png"
    assert decode(answer.content).size == (1200, 630)
    assert unsigned.status_code == 403


# --- nginx in front of the app ----------------------------------------------------------------
def test_nginx_serves_the_second_request_from_its_cache(stack: Stack,
                                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    url = stack.signed("/thumbnail", url=stack.web.url("/nginx.jpg"), w="240", format="jpeg")
    path, query = url.split("?", 1)
    with run_nginx(tmp_path_factory.mktemp("nginx"), stack.app.settings.port) as front, \
            httpx.Client(base_url=front, timeout=60) as client:
        first = client.get(url)
        second = client.get(url)
    assert first.status_code == second.status_code == 200, first.text
    assert first.headers["x-cache-status"] == "MISS"
    assert second.headers["x-cache-status"] == "HIT"
    assert second.content == first.content and second.headers["etag"] == first.headers["etag"]
    assert image_of(second).size == (240, 160)
    assert stack.seen[f"{path}?{query}"] == 1, "the HIT must not reach ImgKit"
    assert stack.web.hits("/nginx.jpg") == 1

