"""Signing of render URLs (`/thumbnail`, `/proxy`, `/screenshot`...).

A render URL is public: anyone holding it can make the server spend CPU, so the
server only does work for URLs the account owner produced. The signature `s` is
HMAC-SHA256 over a *canonical* form of the path and every query parameter but
`s`, keyed with the account's signing secret. The canonical form sorts the
parameters and percent-encodes them one fixed way, so that a client that builds
the query in another order, or encodes a space as `+` instead of `%20`, still
gets the same signature; changing any parameter's value, or adding or removing
one, changes it.

This module is pure standard library on purpose: clients in other codebases can
copy it as it is to sign URLs without depending on ImgKit.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

#: The query parameter that carries the signature; never part of what is signed.
SIGNATURE_PARAM = "s"
#: The query parameter naming the account whose secret signed the URL.
ACCOUNT_PARAM = "a"

# RFC 3986 unreserved characters stay as they are; everything else is %XX (uppercase, UTF-8).
_UNRESERVED = "-._~"

Params = Mapping[str, str] | Iterable[tuple[str, str]]


def _pairs(params: Params) -> list[tuple[str, str]]:
    """Every (key, value) pair, whether given as a mapping or as a list (which may repeat keys)."""
    if isinstance(params, Mapping):
        return [(str(k), str(v)) for k, v in params.items()]
    return [(str(k), str(v)) for k, v in params]


def canonical(path: str, params: Params) -> str:
    """The exact string that is signed: `path?k1=v1&k2=v2` without `s`, sorted by key then value.

    `path` and the values are the *decoded* strings (as a web framework hands them
    over); they are re-encoded here one canonical way, so the encoding a client
    happened to use does not matter. The path keeps its slashes.
    """
    pairs = sorted((k, v) for k, v in _pairs(params) if k != SIGNATURE_PARAM)
    query = "&".join(f"{quote(k, safe=_UNRESERVED)}={quote(v, safe=_UNRESERVED)}" for k, v in pairs)
    return f"{quote(path, safe='/' + _UNRESERVED)}?{query}"


def sign(path: str, params: Params, secret: str) -> str:
    """HMAC-SHA256 of the canonical request, as URL-safe base64 without padding (43 characters)."""
    digest = hmac.new(secret.encode(), canonical(path, params).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def sign_url(path_and_query: str, account_id: str, secret: str) -> str:
    """Return the URL with `a=<account_id>` (when absent) and a fresh `s` appended.

    Accepts a path with its query (`/thumbnail?url=...&w=400`) or a full URL
    (`https://img.example.com/thumbnail?...`); scheme and host are kept but not
    signed, so the same signed path works behind any host name. An `s` already
    present is replaced. Raises ValueError if the URL names another account.
    """
    parts = urlsplit(path_and_query)
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != SIGNATURE_PARAM]
    accounts = {v for k, v in pairs if k == ACCOUNT_PARAM}
    if not accounts:
        pairs.append((ACCOUNT_PARAM, account_id))
    elif accounts != {account_id}:
        raise ValueError(f"the URL names account {sorted(accounts)} but is being signed for {account_id!r}")
    path = parts.path or "/"
    pairs.append((SIGNATURE_PARAM, sign(path, pairs, secret)))
    query = "&".join(f"{quote(k, safe=_UNRESERVED)}={quote(v, safe=_UNRESERVED)}" for k, v in pairs)
    return urlunsplit((parts.scheme, parts.netloc, path, query, parts.fragment))


def verify(path: str, params: Params, signature: str, secrets: Sequence[str]) -> bool:
    """True when `signature` was made with any of `secrets` over this path and parameters.

    An account has at most two active secrets (the current one and the one being
    rotated out), so URLs signed before a rotation keep working until the old
    secret is retired. Every secret is compared, in constant time, whatever the
    outcome of the others, so timing reveals neither the signature nor which
    secret matched. No secrets (unknown account) never verifies.
    """
    given = signature.encode("utf-8", "replace")
    matched = False
    for secret in secrets:
        expected = sign(path, params, secret).encode("ascii")
        matched |= hmac.compare_digest(expected, given)
    return matched
