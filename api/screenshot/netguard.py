"""Decide, per network request of a page, whether Chromium may make it.

Checking the page URL once is not enough: a public page can embed
`<img src="http://169.254.169.254/...">` or a script that fetches an internal
admin port, and the browser would happily do it from inside our network. So
every request a page makes goes through `blocked_reason`, which resolves the
host and refuses any non-public address (unless private addresses are allowed
by setting, for tests and private deployments).

The same decision is used in two places (see `egress.py` for why two):
`page.route("**/*")` aborts requests early and tells us which one was refused,
and the egress proxy enforces it for what `page.route` cannot see (redirect
hops, WebSockets, service-worker fetches) and connects to the very address it
checked, so DNS cannot change its answer between the check and the connection.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from imaging.guard import IPAddress, Resolver, resolve_checked
from imgkit.errors import FetchError
from imgkit.logging import get_logger

log = get_logger(__name__)

#: Schemes a page may request over the network; anything else routed to us is aborted.
_NETWORK_SCHEMES = {"http": 80, "https": 443, "ws": 80, "wss": 443}


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host` (all of them get checked, not just the first)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


@dataclass
class Verdict:
    """The outcome of one check: the addresses to connect to, or why the request is refused."""

    addresses: list[IPAddress] = field(default_factory=list)
    reason: str | None = None
    code: str | None = None  # the guard's code: fetch_blocked_address, fetch_dns_error, ...

    @property
    def allowed(self) -> bool:
        return self.reason is None


async def check_host(host: str, port: int, *, allow_private: bool, resolver: Resolver) -> Verdict:
    """Resolve `host` with the shared guard's rule: refused if ANY address is not allowed.

    (A mixed answer is a rebinding trick; `imaging.guard.resolve_checked` also refuses
    addresses that are never a single host, such as 0.0.0.0, even when private ones are allowed.)
    """
    if not host:
        return Verdict(reason="no host")
    try:
        addresses = await resolve_checked(host.rstrip("."), port, allow_private=allow_private,
                                          resolver=resolver)
    except FetchError as exc:
        return Verdict(reason=exc.message, code=exc.code)
    return Verdict(addresses=addresses)


async def blocked_reason(url: str, *, allow_private: bool,
                         resolver: Resolver = system_resolver) -> str | None:
    """Why the page must not request `url`, or None when it may.

    Only http(s) and ws(s) reach the network; `data:`/`blob:` never get here and
    anything else (`file:`, `ftp:`, `chrome:`...) is refused outright.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"malformed URL: {exc}"
    scheme = parts.scheme.lower()
    if scheme not in _NETWORK_SCHEMES:
        return f"scheme {scheme or '(none)'!r} is not allowed"
    verdict = await check_host(parts.hostname or "", port or _NETWORK_SCHEMES[scheme],
                               allow_private=allow_private, resolver=resolver)
    return verdict.reason


@dataclass
class BlockLog:
    """What was refused during one render, so the answer can say why a page failed."""

    blocked: list[tuple[str, str, bool]] = field(default_factory=list)  # (url, reason, is_navigation)

    def navigation_block(self) -> tuple[str, str] | None:
        for url, reason, is_nav in self.blocked:
            if is_nav:
                return url, reason
        return None


def make_route_handler(*, allow_private: bool, resolver: Resolver = system_resolver,
                       block_log: BlockLog | None = None) -> Callable[..., Awaitable[None]]:
    """A `page.route("**/*", handler)` handler that aborts requests to non-public hosts.

    Typed loosely (Route is duck-typed: `.request.url`, `.request.is_navigation_request()`,
    `.abort()`, `.continue_()`) so that tests can drive it without a browser.
    """

    async def handler(route: object) -> None:
        request = route.request  # type: ignore[attr-defined]
        url: str = request.url
        reason = await blocked_reason(url, allow_private=allow_private, resolver=resolver)
        if reason is None:
            await route.continue_()  # type: ignore[attr-defined]
            return
        is_nav = bool(request.is_navigation_request())
        if block_log is not None:
            block_log.blocked.append((url, reason, is_nav))
        log.warning("screenshot request blocked", extra={"url": url, "reason": reason})
        await route.abort("blockedbyclient")  # type: ignore[attr-defined]

    return handler
