"""Download a source image for a client-supplied URL: the one implementation.

The ingestion agents, the render endpoints (thumbnail, proxy) and the screenshot
service all download through `fetch`, so the SSRF rules, limits and error codes
are the same everywhere.

What a download guarantees:

- **Only allowed addresses, even under DNS rebinding.** Each URL (the first and
  every redirect hop) is pre-checked by `imaging.guard.check_url`, which gives a
  clear error before any request, and the request goes to the normalised URL it
  returns. That check alone is not enough: the HTTP library resolves the name
  again when it connects, and a hostile DNS server can answer "public" to the
  check and "127.0.0.1" to the connect. So the session made by `guarded_session`
  resolves through `GuardedResolver`, whose `resolve` checks *every* address
  (`resolve_checked`) and hands aiohttp only those, so the socket is opened to an
  address that was checked. (IP literals are not resolved, by aiohttp or by us:
  the pre-check of the literal is the check, and `request_target` makes sure aiohttp
  sees the host the check saw.) TLS is unaffected: the handshake uses the URL's
  host name as SNI and verifies the certificate against it. Pooled keep-alive
  connections were checked when they were opened. Proxies from the environment are
  ignored (`trust_env=False`): a proxy would resolve names on our behalf, unchecked.
- **aiohttp, not httpx, on the wire.** Every download and webhook runs on the one
  event loop of a process that also extracts; per 2.9 MB download httpx cost 3.2-5 ms
  of that loop's CPU (h11 copies each chunk twice, and each read goes through anyio's
  cancel scopes), aiohttp 1.9 ms (C parser, one join); per webhook POST 0.8-1.0 ms
  against 0.25 ms. Alternated runs of tests/bench/bench_pipeline.py: +7% images/s.
- **Limits.** One deadline (`fetch_timeout`) covers the whole download, HTML
  discovery and redirects included; at most `fetch_max_redirects` redirects,
  followed by hand so each hop is checked; at most `fetch_max_bytes` of
  (decoded) body, refused early from Content-Length and counted while streaming.
- **HTML pages lead to their image.** If the body is HTML (sniffed, not only by
  the Content-Type header), the page's `og:image` (then `og:image:url`,
  `og:image:secure_url`, `twitter:image`, `<link rel="image_src">`) is fetched
  once, with the same guard and limits; no recursion beyond that one level.

Failures are `FetchError`s with stable codes: `fetch_bad_url`,
`fetch_dns_error`, `fetch_blocked_address`, `fetch_too_many_redirects`,
`fetch_http_<status>` (or `fetch_http_error`), `fetch_timeout` (504),
`fetch_too_large` (413), `fetch_connect_error`, `fetch_network_error`,
`fetch_empty`, `fetch_no_image_in_page`. `is_transient` says which are worth
retrying.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import unicodedata
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import aiohttp
import certifi
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from imaging.guard import CheckedURL, Resolver, check_url, resolve_checked
from imaging.sniff import sniff_mime
from imgkit.errors import FetchError
from imgkit.settings import Settings

__all__ = [
    "Fetched",
    "GuardedResolver",
    "fetch",
    "filename_from_response",
    "find_page_image",
    "guarded_session",
    "is_html_page",
    "is_transient",
    "make_client",
    "request_target",
]

#: How much of an HTML page is read and parsed looking for its image. Meta tags
#: live in <head>; a page whose first megabyte has none is treated as imageless.
HTML_MAX_BYTES = 1024 * 1024
#: Bytes looked at to decide whether a body is HTML.
SNIFF_BYTES = 512
ACCEPT = "image/avif,image/webp,image/apng,image/*,text/html;q=0.8,*/*;q=0.5"
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class Fetched:
    """A finished download."""

    url: str                    # the URL asked for
    final_url: str              # where the bytes came from: after redirects and og:image discovery
    content_type: str | None    # the final response's Content-Type header, informational only
    filename: str | None        # Content-Disposition filename, else the URL's last segment; sanitised
    data: bytes = field(repr=False)  # not hashed here: see _read_body

    @property
    def size(self) -> int:
        return len(self.data)


# --- connecting only to checked addresses ---------------------------------------------------


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that answers only with checked addresses.

    aiohttp calls `resolve` each time it opens a connection to a host name and connects
    to the addresses returned, in order; `resolve_checked` refuses (FetchError, which
    aiohttp lets through unchanged) if any address is not allowed, so the address
    connected to is always one that was checked, whatever the DNS answers next time.
    """

    def __init__(self, *, allow_private: bool, resolver: Resolver | None = None) -> None:
        self._allow_private = allow_private
        self._resolver = resolver

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        addresses = await resolve_checked(host, port, allow_private=self._allow_private,
                                          resolver=self._resolver)
        return [ResolveResult(hostname=host, host=str(ip), port=port,
                              family=socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                              proto=0, flags=socket.AI_NUMERICHOST) for ip in addresses]

    async def close(self) -> None:
        return None


#: aiohttp's default is 64 KiB of buffered body before it pauses the socket; originals are
#: megabytes, and each pause and resume is a round through the event loop.
READ_BUFFER_BYTES = 1024 * 1024


def guarded_session(*, allow_private: bool, resolver: Resolver | None = None,
                    timeout: float | None = None, headers: dict[str, str] | None = None,
                    max_connections: int = 100) -> aiohttp.ClientSession:
    """An aiohttp session that connects only to checked addresses (GuardedResolver), keeps
    no cookies (one source's cookies must never reach another source through a shared
    session), ignores proxy variables, and verifies TLS against certifi's roots, as httpx
    does, so that a slim container without a CA store downloads from https alike.

    Call it inside a running event loop; close it with `await session.close()`."""
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(allow_private=allow_private, resolver=resolver),
        use_dns_cache=False,   # every new connection is resolved, and checked, again
        limit=max_connections, ssl=ssl.create_default_context(cafile=certifi.where()))
    return aiohttp.ClientSession(
        connector=connector, headers=headers, trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(), read_bufsize=READ_BUFFER_BYTES,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout))


def make_client(settings: Settings, *, resolver: Resolver | None = None) -> aiohttp.ClientSession:
    """The session for downloads: guarded, with the download timeout and our User-Agent.

    Long-lived services (the agents, the render server) make one and pass it to every
    `fetch`, to reuse connections."""
    return guarded_session(allow_private=settings.fetch_allow_private, resolver=resolver,
                           timeout=settings.fetch_timeout,
                           headers={"User-Agent": settings.fetch_user_agent, "Accept": ACCEPT})


# --- the download ------------------------------------------------------------------------


@dataclass
class _Body:
    """One response's body and what we need of its headers."""

    final_url: str
    content_type: str | None
    content_disposition: str | None
    data: bytes
    is_html: bool


async def fetch(url: str, settings: Settings, client: aiohttp.ClientSession | None = None, *,
                resolver: Resolver | None = None) -> Fetched:
    """Download the image at `url` (or the image an HTML page at `url` points to).

    `client` should come from `make_client` (a session with another connector
    still gets the per-hop pre-checks, but not the connect-time check that
    defeats DNS rebinding). Without one, a session is made for this call.
    `resolver` replaces DNS resolution in the checks (tests).
    """
    owned = client is None
    http = client if client is not None else make_client(settings, resolver=resolver)
    try:
        async with asyncio.timeout(settings.fetch_timeout):
            page = await _download(http, url, settings, resolver, sniff_html=True)
            if page.is_html:
                image_url = find_page_image(_decode_html(page.data, page.content_type), page.final_url)
                if image_url is None:
                    raise FetchError("the URL is an HTML page without og:image, twitter:image or "
                                     "image_src", code="fetch_no_image_in_page", url=page.final_url)
                body = await _download(http, image_url, settings, resolver, sniff_html=True)
                if body.is_html:
                    raise FetchError("the page's image URL is another HTML page",
                                     code="fetch_no_image_in_page", url=page.final_url,
                                     image_url=body.final_url)
            else:
                body = page
    except TimeoutError:   # our deadline, and aiohttp's socket timeouts (subclasses)
        raise FetchError(f"download took longer than {settings.fetch_timeout:g} s",
                         code="fetch_timeout", status=504, url=url,
                         timeout=settings.fetch_timeout) from None
    except aiohttp.ClientConnectorError as exc:
        raise FetchError(f"could not connect: {exc}", code="fetch_connect_error", status=502,
                         url=url) from exc
    except aiohttp.ClientError as exc:
        raise FetchError(f"download failed: {type(exc).__name__}: {exc}", code="fetch_network_error",
                         status=502, url=url) from exc
    finally:
        if owned:
            await http.close()
    if not body.data:
        raise FetchError("the server sent an empty body", code="fetch_empty", url=body.final_url)
    return Fetched(url=url, final_url=body.final_url, content_type=body.content_type,
                   filename=filename_from_response(body.content_disposition, body.final_url),
                   data=body.data)


async def _download(client: aiohttp.ClientSession, url: str, settings: Settings,
                    resolver: Resolver | None, *, sniff_html: bool) -> _Body:
    """GET `url`, following redirects by hand so that every hop is checked."""
    current = url
    for _hop in range(settings.fetch_max_redirects + 1):
        checked = await check_url(current, allow_private=settings.fetch_allow_private,
                                  resolver=resolver)
        target = request_target(checked)
        async with client.get(target, allow_redirects=False) as response:
            location = response.headers.get("location")
            if response.status in _REDIRECT_STATUSES and location:
                current = urljoin(str(response.url), location.strip())
                continue
            if not 200 <= response.status < 300:
                raise _http_error(response)
            return await _read_body(response, settings.fetch_max_bytes, sniff_html=sniff_html)
    raise FetchError(f"more than {settings.fetch_max_redirects} redirects",
                     code="fetch_too_many_redirects", url=url, limit=settings.fetch_max_redirects)


def request_target(checked: CheckedURL) -> URL:
    """The checked URL as aiohttp will request it: taken as encoded (no second quoting pass),
    and refused if aiohttp would see another host than the check did. IP literals connect
    without a resolver call, so for them this equality is what ties the socket to the check."""
    try:
        target = URL(checked.url, encoded=True)
    except ValueError as exc:
        raise FetchError(f"not a valid URL: {exc}", code="fetch_bad_url", url=checked.url) from exc
    if (target.raw_host or "").strip("[]").lower() != checked.host.strip("[]").lower():
        raise FetchError("the URL's host is ambiguous", code="fetch_bad_url", url=checked.url,
                         host=checked.host)
    return target


def _http_error(response: aiohttp.ClientResponse) -> FetchError:
    status = response.status
    code = f"fetch_http_{status}" if 400 <= status <= 599 else "fetch_http_error"
    # A gone source is a 404 for whoever asked us; any other upstream failure is a bad gateway.
    return FetchError(f"the server answered {status} {response.reason or ''}".rstrip(), code=code,
                      status=404 if status in (404, 410) else 502, http_status=status,
                      url=str(response.url))


async def _read_body(response: aiohttp.ClientResponse, max_bytes: int, *, sniff_html: bool) -> _Body:
    """Stream the body, enforcing `max_bytes` (HTML pages are cut at `HTML_MAX_BYTES` instead)."""
    content_type = response.headers.get("content-type")
    url = str(response.url)
    declared = response.headers.get("content-length", "").strip()
    html_by_header = _mime(content_type) in ("text/html", "application/xhtml+xml")
    if declared.isdigit() and int(declared) > max_bytes and not (sniff_html and html_by_header):
        raise _too_large(url, max_bytes, declared=int(declared))
    # Chunks are joined once at the end: growing one buffer reallocates and copies it, and
    # every fresh megabyte costs page faults (measured: ~4000 per 9 MB download, most of
    # the kernel time of a cold thumbnail). Not hashed here: this runs on the event loop,
    # and sha256 releases the GIL for each chunk, so the loop queued behind the extraction
    # threads for the GIL three times per image (46% of the loop's busy time under load,
    # tests/bench/bench_pipeline.py); callers hash in the worker thread that uses the bytes.
    chunks: list[bytes] = []
    size = 0
    decided = not sniff_html
    is_html = False
    limit = max_bytes
    async for chunk in response.content.iter_any():
        chunks.append(chunk)
        size += len(chunk)
        if not decided and size >= SNIFF_BYTES:
            decided = True
            head = chunks[0] if len(chunks[0]) >= SNIFF_BYTES else b"".join(chunks)
            is_html = is_html_page(head[:SNIFF_BYTES], content_type)
            limit = min(max_bytes, HTML_MAX_BYTES) if is_html else max_bytes
        if size > limit:
            if is_html:            # enough of the page to find its meta tags: stop reading
                break
            raise _too_large(url, max_bytes)
    data = b"".join(chunks)
    if is_html:
        data = data[:limit]
    if not decided:
        is_html = is_html_page(data[:SNIFF_BYTES], content_type)
    return _Body(final_url=url, content_type=content_type,
                 content_disposition=response.headers.get("content-disposition"),
                 data=data, is_html=is_html)


def _too_large(url: str, limit: int, *, declared: int | None = None) -> FetchError:
    extra: dict[str, Any] = {} if declared is None else {"content_length": declared}
    return FetchError(f"the source is larger than {limit} bytes", code="fetch_too_large",
                      status=413, url=url, limit=limit, **extra)


def is_transient(error: FetchError) -> bool:
    """True for failures a later attempt may not see (timeouts, connection trouble, 5xx, 429)."""
    code = error.code
    if code in ("fetch_timeout", "fetch_connect_error", "fetch_network_error"):
        return True
    status = error.context.get("http_status")
    return isinstance(status, int) and (status >= 500 or status in (408, 425, 429))


# --- HTML: is it a page, and which image does it point to ---------------------------------

# WHATWG MIME sniffing's HTML signatures (each must be followed by a space or '>').
_HTML_SIGNATURES = (b"<!doctype html", b"<html", b"<head", b"<script", b"<iframe", b"<h1", b"<div",
                    b"<font", b"<table", b"<a", b"<style", b"<title", b"<b", b"<body", b"<br", b"<p",
                    b"<!--", b"<meta", b"<link")


def _mime(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_html_page(head: bytes, content_type: str | None) -> bool:
    """Whether a body starting with `head` is an HTML page (rather than an image).

    Bytes win over the header: image signatures mean "not HTML" whatever the
    header says, HTML signatures mean HTML even when served as image/* or
    octet-stream. SVG (XML) is an image, not a page.
    """
    if sniff_mime(head) is not None:           # an image (SVG included), whatever the header says
        return False
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n\x0c").lower()
    if text.startswith(b"<?xml"):
        return b"<html" in text or b"<!doctype html" in text
    for signature in _HTML_SIGNATURES:
        if text.startswith(signature) and text[len(signature):len(signature) + 1] in (b" ", b">"):
            return True
    return _mime(content_type) in ("text/html", "application/xhtml+xml")


def _decode_html(data: bytes, content_type: str | None) -> str:
    match = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", content_type or "", re.IGNORECASE)
    encoding = match.group(1) if match else "utf-8"
    try:
        return data.decode(encoding, errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


#: Meta keys (property= or name=) naming the page's image, best first.
_META_IMAGE_KEYS = ("og:image", "og:image:url", "og:image:secure_url", "twitter:image",
                    "twitter:image:src")


class _PageImageParser(HTMLParser):
    """Collects the first value of each image meta key, `<link rel=image_src>` and `<base href>`."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: dict[str, str] = {}
        self.base_href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name.lower(): (value or "").strip() for name, value in attrs}
        if tag == "meta":
            key = (values.get("property") or values.get("name") or "").lower()
            if key in _META_IMAGE_KEYS and values.get("content"):
                self.found.setdefault(key, values["content"])
        elif tag == "link":
            rels = values.get("rel", "").lower().split()
            if "image_src" in rels and values.get("href"):
                self.found.setdefault("image_src", values["href"])
        elif tag == "base" and self.base_href is None and values.get("href"):
            self.base_href = values["href"]

    handle_startendtag = handle_starttag


def find_page_image(html: str, page_url: str) -> str | None:
    """The absolute URL of the image an HTML page declares for itself, or None.

    Looks at og:image, og:image:url, og:image:secure_url, twitter:image(:src),
    then `<link rel="image_src">`, in that order; resolves relative URLs against
    the page's `<base href>` or URL. Only the first `HTML_MAX_BYTES` characters
    are parsed. Candidates that are not http(s) (data:, javascript:) are skipped.
    """
    parser = _PageImageParser()
    try:
        parser.feed(html[:HTML_MAX_BYTES])
        parser.close()
    except Exception:
        pass  # a malformed page keeps whatever was found before the parser gave up
    base = urljoin(page_url, parser.base_href) if parser.base_href else page_url
    for key in (*_META_IMAGE_KEYS, "image_src"):
        candidate = parser.found.get(key)
        if not candidate:
            continue
        absolute = urljoin(base, candidate)
        if urlsplit(absolute).scheme.lower() in ("http", "https"):
            return absolute
    return None


# --- file names ---------------------------------------------------------------------------

_DISPOSITION_PARAM = re.compile(
    r';\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_MAX_FILENAME_CHARS = 200


def _disposition_filename(header: str) -> str | None:
    """`filename*` (RFC 5987, wins) or `filename` from a Content-Disposition header."""
    params: dict[str, str] = {}
    _disposition_type, _, rest = header.partition(";")
    for name, raw in _DISPOSITION_PARAM.findall(";" + rest):
        value = raw.strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params.setdefault(name.lower(), value)
    extended = params.get("filename*")
    if extended and extended.count("'") >= 2:
        charset, _lang, encoded = extended.split("'", 2)
        try:
            return unquote(encoded, encoding=charset or "utf-8", errors="replace")
        except LookupError:
            return unquote(encoded, errors="replace")
    return params.get("filename") or None


def _sanitise_filename(name: str) -> str | None:
    """A name safe to show and to use as a download name: no path, no control characters."""
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = name.strip().lstrip(".").strip()
    if len(name) > _MAX_FILENAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            name = stem[:_MAX_FILENAME_CHARS - len(ext) - 1] + "." + ext
        else:
            name = name[:_MAX_FILENAME_CHARS]
    return name or None


def filename_from_response(content_disposition: str | None, final_url: str) -> str | None:
    """Content-Disposition's file name if any, else the final URL's last path segment; sanitised."""
    if content_disposition:
        name = _disposition_filename(content_disposition)
        if name:
            cleaned = _sanitise_filename(name)
            if cleaned:
                return cleaned
    segment = urlsplit(final_url).path.rsplit("/", 1)[-1]
    return _sanitise_filename(unquote(segment, errors="replace")) if segment else None

