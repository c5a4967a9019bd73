"""The SSRF guard: which addresses and URLs a download may reach."""

from __future__ import annotations

import ipaddress

import pytest

from imaging.guard import check_url, is_public_address, resolve_checked
from imgkit.errors import FetchError


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1",
    "169.254.169.254", "169.254.0.1", "0.0.0.0", "0.1.2.3", "100.64.0.1", "100.127.255.254",
    "224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1", "192.0.2.1", "198.18.0.1",
    "198.51.100.7", "203.0.113.9", "192.0.0.8",
    "::1", "::", "fe80::1", "fe80::1%2", "fc00::1", "fd00::1", "fd12:3456::1", "fec0::1", "ff02::1",
    "2001:db8::1", "100::1", "64:ff9b:1::1",
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1",   # IPv4-mapped
    "::ffff:0:127.0.0.1",                                               # IPv4-translated
    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe",                            # NAT64 of loopback, metadata
    "2002:7f00:1::1", "2002:a9fe:a9fe::",                               # 6to4 of loopback, metadata
    "::127.0.0.1", "2001::1",                                           # IPv4-compatible, Teredo
])
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", [
    "93.184.216.34", "8.8.8.8", "1.1.1.1", "100.128.0.1", "172.32.0.1", "2606:4700:4700::1111",
    "2a00:1450:4001:80e::200e", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
])
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


class _resolver:
    """A resolver hook answering fixed addresses and remembering what it was asked."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses)
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        return self.addresses


async def test_resolve_checked_returns_public_addresses() -> None:
    result = await resolve_checked("img.example", 443, allow_private=False,
                                   resolver=_resolver("93.184.216.34", "2606:4700::1", "93.184.216.34"))
    assert result == [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("2606:4700::1")]


async def test_resolve_checked_refuses_if_any_address_is_private() -> None:
    # An attacker controls the order; the connector might pick the second one.
    with pytest.raises(FetchError) as err:
        await resolve_checked("img.example", 80, allow_private=False,
                              resolver=_resolver("93.184.216.34", "169.254.169.254"))
    assert err.value.code == "fetch_blocked_address"
    assert err.value.context["address"] == "169.254.169.254"


async def test_loopback_name_refused_by_default_allowed_with_allow_private() -> None:
    with pytest.raises(FetchError) as err:
        await resolve_checked("localhost", 80, allow_private=False)
    assert err.value.code == "fetch_blocked_address"
    addresses = await resolve_checked("localhost", 80, allow_private=True)
    assert all(ip.is_loopback for ip in addresses)


async def test_allow_private_still_refuses_unspecified_and_multicast() -> None:
    for literal in ("0.0.0.0", "::", "224.0.0.1", "::ffff:0.0.0.0"):
        with pytest.raises(FetchError):
            await resolve_checked(literal, 80, allow_private=True)


async def test_ip_literals_are_not_resolved() -> None:
    resolver = _resolver("93.184.216.34")
    with pytest.raises(FetchError):
        await resolve_checked("[::1]", 80, allow_private=False, resolver=resolver)
    assert resolver.calls == []


async def test_resolution_failure() -> None:
    async def failing(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(FetchError) as err:
        await resolve_checked("nope.invalid", 80, allow_private=False, resolver=failing)
    assert err.value.code == "fetch_dns_error"


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/a.png", "http://127.0.0.1:8080/", "http://[::1]/", "http://169.254.169.254/latest/",
    "http://0.0.0.0/", "http://[::ffff:127.0.0.1]/", "http://2130706433/", "http://0x7f.1/",
    "https://localhost/", "http://10.1.2.3/",
])
async def test_check_url_refuses_private_hosts(url: str) -> None:
    with pytest.raises(FetchError) as err:
        await check_url(url, allow_private=False)
    assert err.value.code in ("fetch_blocked_address", "fetch_bad_url")


async def test_check_url_allows_loopback_with_allow_private() -> None:
    await check_url("http://127.0.0.1:8080/a.png", allow_private=True)
    await check_url("http://localhost/a.png", allow_private=True)


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "ftp://example.com/a.png", "gopher://example.com/", "javascript:alert(1)",
    "data:image/png;base64,AAAA", "http://", "http:///path", "//example.com/a.png", "example.com/a.png",
    "http://user:pass@example.com/a.png", "http://user@example.com/", "http://example.com:0/",
    "http://example.com:99999/", "http://exa mple.com/", "http://example.com/a\nb",
])
async def test_check_url_refuses_bad_urls(url: str) -> None:
    with pytest.raises(FetchError) as err:
        await check_url(url, allow_private=True, resolver=_resolver("93.184.216.34"))
    assert err.value.code == "fetch_bad_url", err.value


async def test_check_url_accepts_public_url() -> None:
    resolver = _resolver("93.184.216.34")
    await check_url("https://images.example.com/a.png?x=1", allow_private=False, resolver=resolver)
    assert resolver.calls == ["images.example.com"]


async def test_check_url_resolves_idn_as_punycode() -> None:
    resolver = _resolver("93.184.216.34")
    await check_url("https://bücher.example/a.png", allow_private=False, resolver=resolver)
    assert resolver.calls == ["xn--bcher-kva.example"]
