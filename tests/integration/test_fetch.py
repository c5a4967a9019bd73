"""Downloads against a real HTTP server on 127.0.0.1: guard, redirects, limits, HTML discovery."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator
from typing import Any

import pytest

import imaging.guard
from imaging.fetch import (
    fetch,
    filename_from_response,
    find_page_image,
    is_transient,
    make_client,
    request_target,
)
from imaging.guard import CheckedURL, check_url
from imgkit.errors import FetchError
from imgkit.settings import Settings, load_settings
from tests.support.http_server import HTTPTestServer, Reply

PNG = b"\x89PNG\r\n\x1a\n" + b"\0\0\0\rIHDR" + bytes(range(256)) * 4
JPEG = b"\xff\xd8\xff\xe0" + b"\x10" * 3000


@pytest.fixture
def server() -> Iterator[HTTPTestServer]:
    with HTTPTestServer() as s:
        yield s


def settings(**overrides: Any) -> Settings:
    """Test settings: loopback allowed (the test server) unless a test says otherwise."""
    values: dict[str, Any] = {"fetch_allow_private": True, "fetch_timeout": 5.0}
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def loopback_is_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """Treat 127.0.0.1 (our test server) as a public host, everything else as usual.

    Lets a test run with `fetch_allow_private=False` against the local server,
    so a redirect from it to a private address is judged by the real rules.
    """
    real = imaging.guard.is_public_address

    def patched(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return ip == ipaddress.IPv4Address("127.0.0.1") or real(ip)

    monkeypatch.setattr(imaging.guard, "is_public_address", patched)


# --- the basics ---------------------------------------------------------------------------


async def test_downloads_an_image(server: HTTPTestServer) -> None:
    url = server.image("/img/photo.png", PNG)
    got = await fetch(url, settings())
    assert got.data == PNG
    assert got.url == got.final_url == url
    assert got.content_type == "image/png"
    assert got.filename == "photo.png"
    request = server.requests[0]
    assert request.headers["user-agent"].startswith("ImgKit/")


async def test_http_404_and_500(server: HTTPTestServer) -> None:
    server.status("/gone", 404)
    server.status("/broken", 503)
    with pytest.raises(FetchError) as err:
        await fetch(server.url("/gone"), settings())
    assert err.value.code == "fetch_http_404"
    assert err.value.status == 404
    assert err.value.context["http_status"] == 404
    assert not is_transient(err.value)
    with pytest.raises(FetchError) as err:
        await fetch(server.url("/broken"), settings())
    assert err.value.code == "fetch_http_503"
    assert err.value.status == 502
    assert is_transient(err.value)


async def test_empty_body(server: HTTPTestServer) -> None:
    server.image("/empty", b"")
    with pytest.raises(FetchError) as err:
        await fetch(server.url("/empty"), settings())
    assert err.value.code == "fetch_empty"


async def test_connection_refused() -> None:
    with HTTPTestServer() as s:
        url = s.url("/a.png")
    with pytest.raises(FetchError) as err:
        await fetch(url, settings())
    assert err.value.code == "fetch_connect_error"
    assert is_transient(err.value)


async def test_shared_client(server: HTTPTestServer) -> None:
    server.image("/a.png", PNG)
    server.image("/b.png", JPEG, content_type="image/jpeg")
    s = settings()
    async with make_client(s) as client:
        a = await fetch(server.url("/a.png"), s, client)
        b = await fetch(server.url("/b.png"), s, client)
    assert (a.data, b.data) == (PNG, JPEG)


# --- the guard ----------------------------------------------------------------------------


async def test_loopback_refused_by_default(server: HTTPTestServer) -> None:
    url = server.image("/a.png", PNG)
    with pytest.raises(FetchError) as err:
        await fetch(url, settings(fetch_allow_private=False))
    assert err.value.code == "fetch_blocked_address"
    assert server.hits("/a.png") == 0
    assert (await fetch(url, settings(fetch_allow_private=True))).data == PNG


async def test_localhost_name_refused_by_default(server: HTTPTestServer) -> None:
    server.image("/a.png", PNG)
    with pytest.raises(FetchError) as err:
        await fetch(f"http://localhost:{server.port}/a.png", settings(fetch_allow_private=False))
    assert err.value.code == "fetch_blocked_address"
    assert server.requests == []


@pytest.mark.parametrize("target", [
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:{port}/a.png",
    "http://127.0.0.2:{port}/a.png",
    "http://10.0.0.1/a.png",
    "http://[::ffff:169.254.169.254]/",
    "file:///etc/passwd",
])
@pytest.mark.usefixtures("loopback_is_public")
async def test_redirect_to_blocked_address_refused(server: HTTPTestServer, target: str) -> None:
    server.image("/a.png", PNG)
    server.redirect("/r", target.format(port=server.port))
    s = settings(fetch_allow_private=False)
    assert (await fetch(server.url("/a.png"), s)).data == PNG   # the "public" host itself is fine
    with pytest.raises(FetchError) as err:
        await fetch(server.url("/r"), s)
    assert err.value.code in ("fetch_blocked_address", "fetch_bad_url")
    assert server.hits("/r") == 1


async def test_dns_rebinding_is_checked_at_connect_time(server: HTTPTestServer) -> None:
    """The pre-check sees a public address, the connect-time resolution sees loopback: refused."""
    server.image("/a.png", PNG)
    answers = iter([["93.184.216.34"], ["127.0.0.1"], ["127.0.0.1"]])

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    with pytest.raises(FetchError) as err:
        await fetch(f"http://rebind.test:{server.port}/a.png", settings(fetch_allow_private=False),
                    resolver=rebinding)
    assert err.value.code == "fetch_blocked_address"
    assert server.requests == []


@pytest.mark.usefixtures("loopback_is_public")
async def test_connects_to_the_checked_address_with_the_original_host(server: HTTPTestServer) -> None:
    server.image("/a.png", PNG)
    seen: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        seen.append(host)
        return ["127.0.0.1"]

    s = settings(fetch_allow_private=False)
    async with make_client(s, resolver=resolver) as client:
        got = await fetch(f"http://images.example:{server.port}/a.png", s, client, resolver=resolver)
    assert got.data == PNG
    assert seen == ["images.example", "images.example"]          # pre-check, then connect
    assert server.requests[0].headers["host"] == f"images.example:{server.port}"


def test_request_target_refuses_a_host_other_than_the_checked_one() -> None:
    """aiohttp connects to an IP literal without asking the resolver, so the URL it requests
    must name exactly the host the pre-check judged."""
    with pytest.raises(FetchError) as err:
        request_target(CheckedURL(url="http://127.0.0.1/a.png", host="93.184.216.34", port=80))
    assert err.value.code == "fetch_bad_url"


async def test_check_url_returns_the_normalised_url_to_request() -> None:
    checked = await check_url("http://BÜCHER.example/a%20c/ü.png?q=ü", allow_private=False,
                              resolver=_public)
    assert checked.host == "xn--bcher-kva.example"
    target = request_target(checked)
    assert target.raw_host == "xn--bcher-kva.example"
    assert target.raw_path == "/a%20c/%C3%BC.png" and target.raw_query_string == "q=%C3%BC"


async def _public(host: str, port: int) -> list[str]:
    return ["93.184.216.34"]


# --- redirects ----------------------------------------------------------------------------


async def test_follows_redirects_up_to_the_limit(server: HTTPTestServer) -> None:
    server.image("/final.png", PNG)
    server.redirect("/r2", "/final.png", status=301)
    server.redirect("/r1", server.url("/r2"), status=307)
    got = await fetch(server.url("/r1"), settings(fetch_max_redirects=2))
    assert got.data == PNG
    assert got.url == server.url("/r1")
    assert got.final_url == server.url("/final.png")

    server.redirect("/r0", "/r1", status=308)
    with pytest.raises(FetchError) as err:
        await fetch(server.url("/r0"), settings(fetch_max_redirects=2))
    assert err.value.code == "fetch_too_many_redirects"
    with pytest.raises(FetchError) as err:
        await fetch(server.url("/r2"), settings(fetch_max_redirects=0))
    assert err.value.code == "fetch_too_many_redirects"


async def test_redirect_loop(server: HTTPTestServer) -> None:
    server.redirect("/loop", "/loop")
    with pytest.raises(FetchError) as err:
        await fetch(server.url("/loop"), settings())
    assert err.value.code == "fetch_too_many_redirects"
    assert server.hits("/loop") == 6        # the first request and 5 redirects (the default)


# --- limits -------------------------------------------------------------------------------


@pytest.mark.parametrize("content_length", [True, False])
async def test_byte_limit(server: HTTPTestServer, content_length: bool) -> None:
    server.huge("/huge.jpg", 20 * 1024 * 1024, content_length=content_length)
    server.huge("/fits.jpg", 8 * 1024, content_length=content_length)
    s = settings(fetch_max_bytes=64 * 1024)
    started = time.monotonic()
    with pytest.raises(FetchError) as err:
        await fetch(server.url("/huge.jpg"), s)
    assert err.value.code == "fetch_too_large"
    assert err.value.status == 413
    assert time.monotonic() - started < 3
    assert (await fetch(server.url("/fits.jpg"), s)).size == 8 * 1024


async def test_exact_limit_is_allowed(server: HTTPTestServer) -> None:
    server.huge("/exact.jpg", 4096, content_length=False, chunk=1000)
    assert (await fetch(server.url("/exact.jpg"), settings(fetch_max_bytes=4096))).size == 4096


async def test_timeout_before_headers(server: HTTPTestServer) -> None:
    server.route("/slow", Reply(body=JPEG, content_type="image/jpeg", delay=3))
    started = time.monotonic()
    with pytest.raises(FetchError) as err:
        await fetch(server.url("/slow"), settings(fetch_timeout=0.5))
    assert err.value.code == "fetch_timeout"
    assert err.value.status == 504
    assert time.monotonic() - started < 2


async def test_one_deadline_for_the_whole_download(server: HTTPTestServer) -> None:
    # Every chunk arrives well within a per-read timeout; the body as a whole does not.
    server.slow("/drip", chunks=20, chunk_delay=0.2)
    started = time.monotonic()
    with pytest.raises(FetchError) as err:
        await fetch(server.url("/drip"), settings(fetch_timeout=1.0))
    assert err.value.code == "fetch_timeout"
    assert time.monotonic() - started < 2.5


# --- file names ---------------------------------------------------------------------------


async def test_filename_from_content_disposition(server: HTTPTestServer) -> None:
    server.image("/download?id=7", JPEG, content_type="image/jpeg", headers={
        "Content-Disposition": "attachment; filename=\"plain.jpg\"; filename*=UTF-8''na%C3%AFve%20photo.jpg"})
    got = await fetch(server.url("/download?id=7"), settings())
    assert got.filename == "naïve photo.jpg"


async def test_filename_from_url(server: HTTPTestServer) -> None:
    server.image("/images/My%20Photo.png", PNG)
    got = await fetch(server.url("/images/My%20Photo.png?size=large"), settings())
    assert got.filename == "My Photo.png"


@pytest.mark.parametrize(("disposition", "url", "expected"), [
    ('inline; filename="a.jpg"', "http://h/x/y.png", "a.jpg"),
    ("attachment; filename=plain.gif", "http://h/", "plain.gif"),
    ('attachment; filename="../../etc/passwd"', "http://h/", "passwd"),
    ('attachment; filename="C:\\\\Users\\\\x\\\\evil.png"', "http://h/", "evil.png"),
    ('attachment; filename=".hidden"', "http://h/", "hidden"),
    ("attachment; filename*=iso-8859-1'en'%E9t%E9.jpg", "http://h/", "été.jpg"),
    ("attachment", "http://h/a/b%2Fc.png", "c.png"),
    (None, "http://h/a/", None),
    (None, "http://h", None),
    (None, "http://h/a/%0Abad%00name.png", "badname.png"),
    (None, "http://h/" + "x" * 300 + ".jpeg", "x" * 195 + ".jpeg"),
])
def test_filename_rules(disposition: str | None, url: str, expected: str | None) -> None:
    assert filename_from_response(disposition, url) == expected


# --- HTML pages ---------------------------------------------------------------------------


def page(head: str, body: str = "<p>hello</p>") -> str:
    return f"<!DOCTYPE html>\n<html><head><title>t</title>{head}</head><body>{body}</body></html>"


async def test_og_image_relative_url(server: HTTPTestServer) -> None:
    server.image("/static/cover.png", PNG)
    server.html("/blog/post/", page('<meta property="og:image" content="../../static/cover.png">'
                                    '<meta name="twitter:image" content="/nope.png">'))
    got = await fetch(server.url("/blog/post/"), settings())
    assert got.data == PNG
    assert got.url == server.url("/blog/post/")
    assert got.final_url == server.url("/static/cover.png")
    assert got.filename == "cover.png"
    assert server.hits("/nope.png") == 0


async def test_twitter_image_fallback(server: HTTPTestServer) -> None:
    server.image("/t.jpg", JPEG, content_type="image/jpeg")
    server.html("/article", page('<meta name="twitter:image" content="/t.jpg">'))
    got = await fetch(server.url("/article"), settings())
    assert got.data == JPEG
    assert got.content_type == "image/jpeg"


async def test_link_image_src_fallback_and_redirected_image(server: HTTPTestServer) -> None:
    server.image("/real.png", PNG)
    server.redirect("/img", "/real.png")
    server.html("/p", page('<link rel="image_src" href="/img">'))
    got = await fetch(server.url("/p"), settings())
    assert got.final_url == server.url("/real.png")


async def test_html_is_sniffed_not_trusted_from_header(server: HTTPTestServer) -> None:
    server.image("/o.png", PNG)
    server.html("/mislabelled", page('<meta property="og:image" content="/o.png">'),
                content_type="image/jpeg")
    assert (await fetch(server.url("/mislabelled"), settings())).data == PNG
    # and an image labelled text/html is still an image
    server.image("/labelled-html.png", PNG, content_type="text/html")
    assert (await fetch(server.url("/labelled-html.png"), settings())).data == PNG


async def test_page_without_image(server: HTTPTestServer) -> None:
    server.html("/plain", page('<meta name="description" content="nothing">'))
    with pytest.raises(FetchError) as err:
        await fetch(server.url("/plain"), settings())
    assert err.value.code == "fetch_no_image_in_page"


async def test_no_recursion_beyond_one_page(server: HTTPTestServer) -> None:
    server.image("/deep.png", PNG)
    server.html("/second", page('<meta property="og:image" content="/deep.png">'))
    server.html("/first", page('<meta property="og:image" content="/second">'))
    with pytest.raises(FetchError) as err:
        await fetch(server.url("/first"), settings())
    assert err.value.code == "fetch_no_image_in_page"
    assert server.hits("/second") == 1
    assert server.hits("/deep.png") == 0


@pytest.mark.usefixtures("loopback_is_public")
async def test_og_image_pointing_at_a_private_address_is_refused(server: HTTPTestServer) -> None:
    server.html("/p", page('<meta property="og:image" content="http://169.254.169.254/latest/x.png">'))
    with pytest.raises(FetchError) as err:
        await fetch(server.url("/p"), settings(fetch_allow_private=False))
    assert err.value.code == "fetch_blocked_address"


async def test_huge_html_page_is_read_only_up_to_its_head(server: HTTPTestServer) -> None:
    server.image("/i.png", PNG)
    big = page('<meta property="og:image" content="/i.png">', "<p>" + "x" * (5 * 1024 * 1024) + "</p>")
    server.html("/big", big)
    got = await fetch(server.url("/big"), settings(fetch_max_bytes=2 * 1024 * 1024))
    assert got.data == PNG


def test_find_page_image_priority_and_base() -> None:
    html = page('<base href="https://cdn.example/assets/">'
                '<link rel="image_src" href="l.png">'
                '<meta name="twitter:image" content="t.png">'
                '<meta property="og:image:secure_url" content="s.png">'
                '<meta property="og:image" content="data:image/png;base64,AAAA">'
                '<meta property="og:image:url" content="u.png">')
    assert find_page_image(html, "https://site.example/a/b") == "https://cdn.example/assets/u.png"
    assert find_page_image(page(""), "https://site.example/") is None
    assert find_page_image("<meta property=og:image content='/x.jpg?a=1&amp;b=2'>",
                           "https://s.example/p") == "https://s.example/x.jpg?a=1&b=2"
