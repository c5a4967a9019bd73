"""SSRF guard: which URLs and addresses a download may reach.

Every outbound request made for a client-supplied URL (source downloads,
og:image discovery, redirects, screenshots) must go through here, because the
URL comes from an untrusted party and the request runs inside our network: a
URL naming `169.254.169.254`, `localhost`, an RFC 1918 address, or a public
name that resolves to one of those would let a client read our cloud metadata
or internal services through us.

The rules are data (`_BLOCKED_V4`, `_BLOCKED_V6`), not scattered `if`s, and we
do not rely only on `ipaddress`'s `is_private`/`is_global`, whose tables have
changed between Python patch releases. Addresses that *embed* an IPv4 address
(IPv4-mapped, IPv4-translated, NAT64, 6to4) are judged by the embedded address,
because a dual-stack host or a NAT64 gateway would deliver them to it.

`check_url` is the pre-flight check (syntax + a resolution); the connection
itself must still go to an address checked at connect time — see
`imaging.fetch.GuardedResolver`, which calls `resolve_checked` when a connection
is opened, so a name that re-resolves differently (DNS rebinding) gains nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import NamedTuple

import httpx

from imgkit.errors import FetchError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: `async (host, port) -> [address strings]`; the default is the event loop's getaddrinfo.
#: Tests pass their own to simulate names that resolve (or re-resolve) to blocked addresses.
Resolver = Callable[[str, int], Awaitable[list[str]]]

ALLOWED_SCHEMES = frozenset({"http", "https"})

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# IPv4 ranges that are never a public web server (IANA special-purpose registry).
_BLOCKED_V4: tuple[ipaddress.IPv4Network, ...] = (
    _V4("0.0.0.0/8"),           # "this network"; 0.0.0.0 reaches the local host on Linux
    _V4("10.0.0.0/8"),          # RFC 1918 private
    _V4("100.64.0.0/10"),       # carrier-grade NAT (RFC 6598)
    _V4("127.0.0.0/8"),         # loopback
    _V4("169.254.0.0/16"),      # link-local, incl. 169.254.169.254 cloud metadata
    _V4("172.16.0.0/12"),       # RFC 1918 private
    _V4("192.0.0.0/24"),        # IETF protocol assignments
    _V4("192.0.2.0/24"),        # TEST-NET-1
    _V4("192.31.196.0/24"),     # AS112
    _V4("192.52.193.0/24"),     # AMT
    _V4("192.88.99.0/24"),      # 6to4 relay anycast (deprecated)
    _V4("192.168.0.0/16"),      # RFC 1918 private
    _V4("192.175.48.0/24"),     # AS112 direct delegation
    _V4("198.18.0.0/15"),       # benchmarking
    _V4("198.51.100.0/24"),     # TEST-NET-2
    _V4("203.0.113.0/24"),      # TEST-NET-3
    _V4("224.0.0.0/4"),         # multicast
    _V4("240.0.0.0/4"),         # reserved, incl. 255.255.255.255 broadcast
)

# IPv6 ranges that are never a public web server. Ranges that embed an IPv4
# address are handled by `_embedded_ipv4` before this table is consulted.
_BLOCKED_V6: tuple[ipaddress.IPv6Network, ...] = (
    _V6("::/8"),                # unspecified, loopback, IPv4-compatible (deprecated), reserved
    _V6("64:ff9b:1::/48"),      # local-use NAT64 (RFC 8215): site-specific, treat as private
    _V6("100::/64"),            # discard-only
    _V6("2001::/23"),           # IETF protocol assignments, incl. Teredo 2001::/32, ORCHID
    _V6("2001:db8::/32"),       # documentation
    _V6("3fff::/20"),           # documentation (RFC 9637)
    _V6("5f00::/16"),           # SRv6 SIDs
    _V6("fc00::/7"),            # unique local (fd00::/8 and fc00::/8)
    _V6("fe80::/10"),           # link-local
    _V6("fec0::/10"),           # site-local (deprecated)
    _V6("ff00::/8"),            # multicast
)

_NAT64 = _V6("64:ff9b::/96")
_IPV4_TRANSLATED = _V6("::ffff:0:0:0/96")   # SIIT (RFC 2765), distinct from ::ffff:0:0/96 mapped


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address delivers to, for the forms that embed one."""
    if ip.ipv4_mapped is not None:                     # ::ffff:a.b.c.d
        return ip.ipv4_mapped
    if ip.sixtofour is not None:                       # 2002:aabb:ccdd::/48
        return ip.sixtofour
    if ip in _NAT64 or ip in _IPV4_TRANSLATED:         # 64:ff9b::a.b.c.d, ::ffff:0:a.b.c.d
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True if `ip` is an ordinary globally routable unicast address a download may reach.

    False for private, loopback, link-local (incl. cloud metadata), unspecified,
    multicast, broadcast, reserved, CGNAT, documentation and benchmarking ranges,
    and for IPv6 forms that embed such an IPv4 address.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:                                # fe80::1%eth0 and friends
            return False
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_public_address(embedded)
        if any(ip in net for net in _BLOCKED_V6):
            return False
    elif any(ip in net for net in _BLOCKED_V4):
        return False
    # Belt and braces: anything the stdlib's (version-dependent) tables consider
    # non-global stays refused even if our table above missed it.
    return ip.is_global and not ip.is_multicast


def _never_reachable(ip: IPAddress) -> bool:
    """Addresses refused even with `allow_private`: they name no single host to download from."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_unspecified or ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255")


def _parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


async def _system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


def _dedupe(addresses: Iterable[IPAddress]) -> list[IPAddress]:
    seen: dict[IPAddress, None] = {}
    for ip in addresses:
        seen.setdefault(ip, None)
    return list(seen)


def check_address(ip: IPAddress, *, allow_private: bool, host: str | None = None) -> None:
    """Raise `fetch_blocked_address` unless a download may connect to `ip`."""
    if _never_reachable(ip) or (not allow_private and not is_public_address(ip)):
        raise FetchError(f"refusing to download from a non-public address {ip}",
                         code="fetch_blocked_address", host=host or str(ip),
                         address=str(ip))


async def resolve_checked(host: str, port: int, *, allow_private: bool,
                          resolver: Resolver | None = None) -> list[IPAddress]:
    """Resolve `host` and return its addresses, refusing if ANY of them is not public.

    Refusing on any (not only on all) matters: the connector may pick any of the
    addresses, and an attacker controls the order. IP literals are not resolved.
    `resolver` replaces the event loop's getaddrinfo (tests).
    """
    host = host.strip("[]")
    literal = _parse_ip(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            raw = await (resolver or _system_resolver)(host, port)
        except (OSError, UnicodeError) as exc:
            raise FetchError(f"could not resolve host {host!r}: {exc}", code="fetch_dns_error",
                             host=host) from exc
        parsed = [_parse_ip(text) for text in raw]   # keeps %scope, which is_public_address refuses
        if any(ip is None for ip in parsed):
            bad = [text for text, ip in zip(raw, parsed, strict=True) if ip is None]
            raise FetchError(f"resolver returned a non-address for {host!r}", code="fetch_dns_error",
                             host=host, addresses=bad)
        addresses = _dedupe(ip for ip in parsed if ip is not None)
    if not addresses:
        raise FetchError(f"host {host!r} has no address", code="fetch_dns_error",
                         host=host)
    for ip in addresses:
        check_address(ip, allow_private=allow_private, host=host)
    return addresses


def parse_url(url: str) -> tuple[httpx.URL, str, int]:
    """Validate a download URL's syntax; return it parsed with its ASCII host and effective port.

    Refused: schemes other than http/https, a missing host, userinfo
    (`http://user:pass@host/` — credentials have no business in a fetched URL and
    `http://trusted@evil/` misleads people reading logs), and ports outside 1-65535.
    """
    if not isinstance(url, str) or any(ord(ch) < 0x21 or ch == "\x7f" for ch in url.strip()):
        raise FetchError("the URL contains spaces or control characters", code="fetch_bad_url",
                         url=str(url)[:2000])
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise FetchError(f"not a valid URL: {exc}", code="fetch_bad_url",
                         url=url[:2000]) from exc
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise FetchError("only http and https URLs can be downloaded", code="fetch_bad_url",
                         url=url[:2000], scheme=parsed.scheme)
    host = parsed.raw_host.decode("ascii", "replace")
    if not host:
        raise FetchError("the URL has no host", code="fetch_bad_url", url=url[:2000])
    if parsed.userinfo:
        raise FetchError("URLs with credentials (user:password@) are not downloaded",
                         code="fetch_bad_url", host=host)
    port = parsed.port if parsed.port is not None else (443 if parsed.scheme == "https" else 80)
    if not 1 <= port <= 65535:
        raise FetchError("the URL's port is out of range", code="fetch_bad_url",
                         url=url[:2000], port=port)
    return parsed, host, port


class CheckedURL(NamedTuple):
    """A URL that passed `check_url`: request `url` (normalised: IDNA host, percent-encoded),
    whose host, as the check saw it, is `host`."""

    url: str
    host: str
    port: int


async def check_url(url: str, *, allow_private: bool, resolver: Resolver | None = None) -> CheckedURL:
    """Raise `FetchError` unless `url` is an http(s) URL whose host resolves only to allowed addresses.

    Codes: `fetch_bad_url` (scheme, host, userinfo, port), `fetch_dns_error`,
    `fetch_blocked_address`. This is a pre-flight check: call it before each
    request and each redirect hop, request the normalised URL it returns, and connect
    through a session that checks again at connect time (`imaging.fetch.guarded_session`).
    """
    parsed, host, port = parse_url(url)
    await resolve_checked(host, port, allow_private=allow_private, resolver=resolver)
    return CheckedURL(url=str(parsed), host=host, port=port)
