"""The screenshot service for real: uvicorn, a real Chromium, a real page server on loopback.

One service (and so one Chromium) is started for the whole module, because
Chromium is heavy on a 2-core machine; checks that need private addresses
*refused* run against apps whose browser never starts (the URL check refuses
before a page is borrowed) or drive the interception code directly with a
resolver that says which hosts are private.
"""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from PIL import Image

from api.screenshot import create_screenshot_app
from api.screenshot.egress import EgressProxy
from api.screenshot.netguard import BlockLog, blocked_reason, make_route_handler
from api.screenshot_proxy import build_screenshot_router
from imgkit.errors import Forbidden
from imgkit.settings import Settings, load_settings
from tests.support.http_server import HTTPTestServer, Reply

RED_PAGE = """<!doctype html><html><head><style>
html, body { margin: 0; background: #ffffff; }
#block { position: absolute; left: 50px; top: 50px; width: 200px; height: 100px; background: #ff0000; }
</style></head><body><div id="block"></div></body></html>"""

GREEN = (0, 200, 0)


# --- helpers ------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class UvicornThread:
    """A real uvicorn server on 127.0.0.1 in a thread with its own event loop."""

    def __init__(self, app: FastAPI, port: int | None = None) -> None:
        self.port = port or free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="on"))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"uvicorn-{self.port}")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> UvicornThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server stopped during startup (see the log above)")
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start in time")
            time.sleep(0.05)
        return self

    def run(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the server's loop (to poke at the live service)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def png_bytes(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def close_to(pixel: Any, expected: tuple[int, int, int], tol: int = 0) -> bool:
    """Pillow types `getpixel` loosely; an RGB image gives a 3-tuple."""
    return all(abs(a - b) <= tol for a, b in zip(tuple(pixel)[:3], expected, strict=True))


# --- fixtures -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pages() -> Iterator[HTTPTestServer]:
    with HTTPTestServer() as server:
        server.html("/red", RED_PAGE)
        server.image("/green.png", png_bytes((64, 64), GREEN))
        server.route("/slow", Reply(status=200, body=b"<html>late</html>", content_type="text/html",
                                    delay=30.0))
        server.status("/missing", 404, b"nope")
        yield server


@pytest.fixture(scope="module")
def settings() -> Settings:
    chromium = Path("/usr/bin/chromium")
    configured = load_settings().chromium_path
    chromium = configured if configured.exists() else chromium
    if not chromium.exists():
        pytest.fail(f"Chromium not found at {configured}: the screenshot tests need a real browser; "
                    "run `apt-get install chromium` (or set IMGKIT_CHROMIUM_PATH)")
    return load_settings(fetch_allow_private=True, chromium_path=chromium, screenshot_timeout=4.0,
                         screenshot_concurrency=2)


@pytest.fixture(scope="module")
def service(settings: Settings) -> Iterator[UvicornThread]:
    server = UvicornThread(create_screenshot_app(settings)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def client(service: UvicornThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=30) as c:
        yield c


@dataclass
class Deps:
    settings: Settings
    checked: list[str] = field(default_factory=list)

    def verify_signature(self, request: Request) -> None:
        self.checked.append(str(request.url))
        if request.query_params.get("s") != "good":
            raise Forbidden("bad signature", code="bad_signature")


def proxy_app(screenshot_url: str) -> tuple[FastAPI, Deps]:
    deps = Deps(load_settings(screenshot_url=screenshot_url, screenshot_timeout=4.0))
    app = FastAPI()
    app.include_router(build_screenshot_router(deps))
    return app, deps


# --- the service --------------------------------------------------------------------------
def test_healthz(client: httpx.Client) -> None:
    answer = client.get("/healthz")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "ok"


def test_png_screenshot_has_the_block_where_the_page_puts_it(client: httpx.Client,
                                                             pages: HTTPTestServer) -> None:
    timings = []
    for _ in range(2):
        start = time.monotonic()
        answer = client.get("/render", params={"url": pages.url("/red"), "w": 800, "h": 600,
                                               "format": "png"})
        timings.append(time.monotonic() - start)
        assert answer.status_code == 200, answer.text
    print(f"screenshot latency: first {timings[0]:.3f}s, warm {timings[1]:.3f}s")
    assert answer.headers["content-type"] == "image/png"
    assert answer.headers["etag"].startswith('"')
    image = decode(answer.content)
    assert image.size == (800, 600)
    assert close_to(image.getpixel((150, 100)), (255, 0, 0))      # centre of the block
    assert close_to(image.getpixel((51, 51)), (255, 0, 0))        # just inside its corner
    assert close_to(image.getpixel((248, 148)), (255, 0, 0))
    for outside in [(10, 10), (48, 100), (252, 100), (150, 152), (700, 500)]:
        assert close_to(image.getpixel(outside), (255, 255, 255)), outside


def test_jpeg_screenshot(client: httpx.Client, pages: HTTPTestServer) -> None:
    answer = client.get("/render", params={"url": pages.url("/red"), "w": 640, "h": 480,
                                           "format": "jpeg", "q": 90})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/jpeg"
    assert answer.content[:3] == b"\xff\xd8\xff"
    image = decode(answer.content)
    assert image.size == (640, 480)
    assert close_to(image.getpixel((150, 100)), (255, 0, 0), tol=12)
    assert close_to(image.getpixel((400, 300)), (255, 255, 255), tol=12)


def test_full_page_is_as_tall_as_the_page(client: httpx.Client, pages: HTTPTestServer) -> None:
    pages.html("/tall", '<body style="margin:0"><div style="height:1500px;background:#00f"></div></body>')
    answer = client.get("/render", params={"url": pages.url("/tall"), "w": 400, "h": 300,
                                           "full_page": "true"})
    assert answer.status_code == 200, answer.text
    image = decode(answer.content)
    assert image.size == (400, 1500)
    assert close_to(image.getpixel((200, 1400)), (0, 0, 255))


def test_card_shows_title_and_image(client: httpx.Client, pages: HTTPTestServer) -> None:
    answer = client.get("/card/og", params={"title": "Hello <script>alert(1)</script>",
                                            "subtitle": "a subtitle", "image": pages.url("/green.png")})
    assert answer.status_code == 200, answer.text
    image = decode(answer.content)
    assert image.size == (1200, 630)
    # og.html puts the image in a box x 696..1140, y 95..535 (object-fit: cover)
    for point in [(918, 315), (720, 120), (1120, 515)]:
        assert close_to(image.getpixel(point), GREEN, tol=2), point
    # the title is drawn (dark pixels) in the text column, and nothing green leaks there
    text_area = image.crop((80, 100, 640, 530))
    dark = sum(text_area.convert("L").histogram()[:70])
    assert dark > 500
    assert pages.hits("/green.png") >= 1


def test_card_without_image_and_bad_inputs(client: httpx.Client) -> None:
    answer = client.get("/card/og", params={"title": "Only a title", "w": 600, "h": 315})
    assert answer.status_code == 200, answer.text
    assert decode(answer.content).size == (600, 315)
    unknown = client.get("/card/../../etc/passwd", params={"title": "x"})
    assert unknown.status_code == 404
    missing = client.get("/card/nope", params={"title": "x"})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "unknown_template"
    bad_image = client.get("/card/og", params={"title": "x", "image": "javascript:alert(1)"})
    assert bad_image.status_code == 422
    assert bad_image.json()["error"]["code"] == "bad_image_url"


@pytest.mark.parametrize("params", [
    {"w": 8, "h": 600}, {"w": 5000, "h": 600}, {"w": 800, "h": 4097}, {"format": "gif"}, {"q": 0},
    {"wait": 60_000},
])
def test_limits_are_clear_4xx(client: httpx.Client, pages: HTTPTestServer, params: dict[str, Any]) -> None:
    answer = client.get("/render", params={"url": pages.url("/red"), **params})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "bad_request" and error["message"]


def test_non_http_page_is_refused(client: httpx.Client) -> None:
    answer = client.get("/render", params={"url": "file:///etc/passwd"})
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "fetch_bad_url"


def test_http_error_page_is_an_error_not_a_picture(client: httpx.Client, pages: HTTPTestServer) -> None:
    answer = client.get("/render", params={"url": pages.url("/missing")})
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "page_load_failed"
    assert "404" in answer.json()["error"]["message"]


def test_slow_page_times_out_with_504_and_the_service_recovers(client: httpx.Client,
                                                               pages: HTTPTestServer) -> None:
    start = time.monotonic()
    answer = client.get("/render", params={"url": pages.url("/slow")})
    elapsed = time.monotonic() - start
    assert answer.status_code == 504, answer.text
    assert answer.json()["error"]["code"] == "screenshot_timeout"
    assert "4 s" in answer.json()["error"]["message"]
    assert elapsed < 10
    after = client.get("/render", params={"url": pages.url("/red"), "w": 320, "h": 240})
    assert after.status_code == 200


def test_a_burst_queues_and_all_succeed(service: UvicornThread, pages: HTTPTestServer) -> None:
    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as c:
            answers = await asyncio.gather(*[
                c.get("/render", params={"url": pages.url("/red"), "w": 300 + i, "h": 200})
                for i in range(5)])
        return [a.status_code for a in answers]

    assert asyncio.run(burst()) == [200] * 5


def test_browser_is_relaunched_after_it_died(service: UvicornThread, client: httpx.Client,
                                             pages: HTTPTestServer) -> None:
    pool = service.server.config.app.state.service.pool  # type: ignore[union-attr]
    launches = pool.launches
    service.run(pool._browser.close())
    assert not pool.healthy
    answer = client.get("/render", params={"url": pages.url("/red"), "w": 320, "h": 240})
    assert answer.status_code == 200, answer.text
    assert pool.launches == launches + 1
    assert client.get("/healthz").status_code == 200


# --- SSRF ---------------------------------------------------------------------------------
def test_browser_traffic_goes_through_the_egress_proxy(service: UvicornThread, client: httpx.Client,
                                                      pages: HTTPTestServer) -> None:
    """Loopback included (`<-loopback>`): the proxy is where redirect hops get checked.

    Turning the live proxy's policy to "refuse private" while `page.route` still allows
    shows that a request refused only by the proxy (as a redirect hop would be) ends as 403.
    """
    proxy = service.server.config.app.state.service.pool.proxy  # type: ignore[union-attr]
    before = proxy.forwarded
    assert client.get("/render", params={"url": pages.url("/red"), "w": 320, "h": 240}).status_code == 200
    assert proxy.forwarded > before
    proxy.allow_private = False
    try:
        answer = client.get("/render", params={"url": pages.url("/red"), "w": 320, "h": 240})
    finally:
        proxy.allow_private = True
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"]["code"] == "fetch_blocked_address"
    assert any(pages.url("/red") in target for target in proxy.blocked)


def private_refusing_app() -> FastAPI:
    """A service that refuses private addresses; its browser never starts (lifespan not run)."""
    return create_screenshot_app(load_settings(fetch_allow_private=False))


async def test_private_page_is_refused_when_not_allowed(pages: HTTPTestServer) -> None:
    transport = httpx.ASGITransport(app=private_refusing_app())
    before = pages.hits("/red")
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as c:
        for url in (pages.url("/red"), "http://localhost:1/", "http://169.254.169.254/latest/meta-data/",
                    "http://[::1]/", "http://10.1.2.3/"):
            answer = await c.get("/render", params={"url": url})
            assert answer.status_code == 403, (url, answer.text)
            assert answer.json()["error"]["code"] == "fetch_blocked_address"
        card = await c.get("/card/og", params={"title": "t", "image": pages.url("/green.png")})
        assert card.status_code == 403
    assert pages.hits("/red") == before  # refused before any request was made


class FakeRequest:
    def __init__(self, url: str, navigation: bool = False) -> None:
        self.url = url
        self._navigation = navigation

    def is_navigation_request(self) -> bool:
        return self._navigation


class FakeRoute:
    def __init__(self, url: str, navigation: bool = False) -> None:
        self.request = FakeRequest(url, navigation)
        self.outcome: str | None = None

    async def continue_(self) -> None:
        self.outcome = "continue"

    async def abort(self, error_code: str | None = None) -> None:
        self.outcome = f"abort:{error_code}"


async def fake_resolver(host: str, port: int) -> list[str]:
    table = {"public.example": ["93.184.216.34"], "internal.example": ["10.0.0.5"],
             "rebind.example": ["93.184.216.34", "127.0.0.1"], "metadata.example": ["169.254.169.254"]}
    if host not in table:
        raise OSError(f"no such host {host}")
    return table[host]


async def test_subresources_to_private_hosts_are_aborted() -> None:
    """A public page's `<img src=http://internal.example/>` must not be fetched by the browser."""
    blocks = BlockLog()
    handler = make_route_handler(allow_private=False, resolver=fake_resolver, block_log=blocks)
    cases = {
        "https://public.example/page.html": "continue",
        "https://public.example/app.js": "continue",
        "http://internal.example/admin": "abort:blockedbyclient",
        "http://rebind.example/x.png": "abort:blockedbyclient",      # any private answer refuses
        "http://metadata.example/latest": "abort:blockedbyclient",
        "http://127.0.0.1:8300/render": "abort:blockedbyclient",
        "http://[::ffff:10.0.0.1]/": "abort:blockedbyclient",
        "ftp://public.example/file": "abort:blockedbyclient",
        "http://unknown.example/": "abort:blockedbyclient",
    }
    for url, expected in cases.items():
        route = FakeRoute(url)
        await handler(route)
        assert route.outcome == expected, url
    assert blocks.navigation_block() is None
    nav = FakeRoute("http://internal.example/", navigation=True)
    await handler(nav)
    assert blocks.navigation_block() is not None
    # with private addresses allowed (tests, private deployments) they go through
    allowing = make_route_handler(allow_private=True, resolver=fake_resolver)
    route = FakeRoute("http://internal.example/admin")
    await allowing(route)
    assert route.outcome == "continue"
    assert await blocked_reason("http://internal.example/", allow_private=False,
                                resolver=fake_resolver) is not None


async def _raw_proxy_request(port: int, head: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    return data


async def test_egress_proxy_refuses_private_targets_and_redirect_hops(pages: HTTPTestServer) -> None:
    """The proxy is what stops redirect hops, which `page.route` never sees."""
    proxy = EgressProxy(allow_private=False, resolver=fake_resolver)
    await proxy.start()
    try:
        for head in (b"GET http://internal.example/admin HTTP/1.1\r\nHost: internal.example\r\n\r\n",
                     f"GET {pages.url('/red')} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
                     b"CONNECT metadata.example:443 HTTP/1.1\r\nHost: metadata.example:443\r\n\r\n",
                     b"CONNECT 10.0.0.1:443 HTTP/1.1\r\n\r\n"):
            answer = await _raw_proxy_request(proxy.port, head)
            assert answer.startswith(b"HTTP/1.1 403"), (head, answer)
            assert b"X-ImgKit-Blocked: 1" in answer
    finally:
        await proxy.stop()
    allowing = EgressProxy(allow_private=True)
    await allowing.start()
    try:
        answer = await _raw_proxy_request(
            allowing.port, f"GET {pages.url('/green.png')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.")
        assert b" 200 " in answer.split(b"\r\n", 1)[0]
    finally:
        await allowing.stop()


# --- the public proxy router --------------------------------------------------------------
def test_proxy_router_streams_the_png_with_cache_headers(service: UvicornThread,
                                                         pages: HTTPTestServer) -> None:
    app, deps = proxy_app(service.url)
    front = UvicornThread(app).start()
    try:
        with httpx.Client(base_url=front.url, timeout=30) as c:
            params: dict[str, Any] = {"url": pages.url("/red"), "w": 800, "h": 600, "format": "png",
                                      "a": "acc_1"}
            answer = c.get("/screenshot", params={**params, "s": "good"})
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"] == "image/png"
            assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert answer.headers["etag"]
            image = decode(answer.content)
            assert image.size == (800, 600)
            assert close_to(image.getpixel((150, 100)), (255, 0, 0))

            forbidden = c.get("/screenshot", params={**params, "s": "bad"})
            assert forbidden.status_code == 403
            assert forbidden.json()["error"]["code"] == "bad_signature"

            card = c.get("/card/og", params={"title": "Hi", "image": pages.url("/green.png"), "s": "good"})
            assert card.status_code == 200
            assert decode(card.content).size == (1200, 630)

            error = c.get("/screenshot", params={"url": pages.url("/red"), "w": 1, "s": "good"})
            assert error.status_code == 422
            assert error.headers["cache-control"] == "no-store"
            assert error.json()["error"]["code"] == "bad_request"
        assert len(deps.checked) == 4
    finally:
        front.stop()


def test_proxy_router_answers_503_when_the_service_is_down() -> None:
    app, _ = proxy_app(f"http://127.0.0.1:{free_port()}")
    front = UvicornThread(app).start()
    try:
        answer = httpx.get(f"{front.url}/screenshot", params={"url": "http://example.com/", "s": "good"},
                           timeout=30)
        assert answer.status_code == 503
        error = answer.json()["error"]
        assert error["code"] == "service_unavailable"
        assert "not reachable" in error["message"]
    finally:
        front.stop()
