"""URL signing: canonical form, tamper detection, secret rotation."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from imgkit.signing import canonical, sign, sign_url, verify

PARAMS = [("url", "https://example.com/a b.jpg?x=1&y=2"), ("w", "400"), ("h", "300"), ("a", "acc_1")]


def _split(url: str) -> tuple[str, list[tuple[str, str]], str]:
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    sig = dict(pairs)["s"]
    return parts.path, [(k, v) for k, v in pairs if k != "s"], sig


def test_canonical_sorts_and_encodes_one_way() -> None:
    assert canonical("/thumbnail", {"w": "4", "a": "x y", "b": "é/&="}) == (
        "/thumbnail?a=x%20y&b=%C3%A9%2F%26%3D&w=4")


def test_canonical_ignores_the_signature_and_keeps_repeated_keys_sorted_by_value() -> None:
    assert canonical("/p", [("k", "2"), ("s", "zzz"), ("k", "1")]) == "/p?k=1&k=2"


def test_signature_is_urlsafe_base64_without_padding() -> None:
    sig = sign("/thumbnail", PARAMS, "secret")
    assert len(sig) == 43
    assert "=" not in sig and "+" not in sig and "/" not in sig


def test_parameter_order_does_not_matter() -> None:
    shuffled = list(reversed(PARAMS))
    assert sign("/thumbnail", PARAMS, "k") == sign("/thumbnail", shuffled, "k")
    assert sign("/thumbnail", PARAMS, "k") == sign("/thumbnail", dict(PARAMS), "k")


@pytest.mark.parametrize("index", range(len(PARAMS)))
def test_tampering_any_parameter_fails(index: int) -> None:
    sig = sign("/thumbnail", PARAMS, "k")
    tampered = list(PARAMS)
    key, value = tampered[index]
    tampered[index] = (key, value + "0")
    assert verify("/thumbnail", PARAMS, sig, ["k"])
    assert not verify("/thumbnail", tampered, sig, ["k"])


def test_adding_removing_a_parameter_or_changing_the_path_fails() -> None:
    sig = sign("/thumbnail", PARAMS, "k")
    assert not verify("/thumbnail", [*PARAMS, ("q", "90")], sig, ["k"])
    assert not verify("/thumbnail", PARAMS[:-1], sig, ["k"])
    assert not verify("/proxy", PARAMS, sig, ["k"])


def test_wrong_secret_unknown_account_and_garbage_signature_fail() -> None:
    sig = sign("/thumbnail", PARAMS, "k")
    assert not verify("/thumbnail", PARAMS, sig, ["other"])
    assert not verify("/thumbnail", PARAMS, sig, [])
    assert not verify("/thumbnail", PARAMS, "", ["k"])
    assert not verify("/thumbnail", PARAMS, "ünïcode", ["k"])


def test_rotation_accepts_either_active_secret() -> None:
    old = sign("/thumbnail", PARAMS, "old")
    new = sign("/thumbnail", PARAMS, "new")
    assert verify("/thumbnail", PARAMS, old, ["new", "old"])
    assert verify("/thumbnail", PARAMS, new, ["new", "old"])
    assert not verify("/thumbnail", PARAMS, old, ["new"])  # after the old secret is retired


def test_sign_url_adds_account_and_verifies_as_the_server_sees_it() -> None:
    url = sign_url("/thumbnail?url=https%3A%2F%2Fexample.com%2Fa+b.jpg&w=400", "acc_1", "k")
    path, pairs, sig = _split(url)
    assert ("a", "acc_1") in pairs
    assert ("url", "https://example.com/a b.jpg") in pairs  # `+` decoded as a space, like servers do
    assert verify(path, pairs, sig, ["k"])


def test_sign_url_keeps_scheme_and_host_and_replaces_an_old_signature() -> None:
    url = sign_url("https://img.example.com/proxy?url=x&a=acc_1&s=stale", "acc_1", "k")
    assert url.startswith("https://img.example.com/proxy?")
    assert "stale" not in url
    path, pairs, sig = _split(url)
    assert verify(path, pairs, sig, ["k"])


def test_sign_url_refuses_another_account() -> None:
    with pytest.raises(ValueError, match="acc_other"):
        sign_url("/thumbnail?url=x&a=acc_other", "acc_1", "k")
