"""RenderOptions parsing: defaults, ranges, clear BadRequest messages, format negotiation."""

from __future__ import annotations

import pytest

from imaging.render.options import Fit, Gravity, OutputFormat, negotiate, parse_options
from imgkit.errors import BadRequest


def test_defaults() -> None:
    o = parse_options({})
    assert (o.width, o.height, o.fit, o.gravity, o.format, o.quality, o.dpr) == (
        None, None, Fit.cover, Gravity.centre, OutputFormat.auto, None, 1.0)
    assert o.background == (255, 255, 255, 255)


def test_full_request_and_box_with_dpr() -> None:
    o = parse_options({"w": "400", "h": "300", "fit": "contain", "gravity": "north",
                       "background": "#0a0b0c", "format": "webp", "q": "70", "dpr": "1.5"})
    assert (o.width, o.height, o.fit, o.gravity, o.format, o.quality) == (
        400, 300, Fit.contain, Gravity.north, OutputFormat.webp, 70)
    assert o.background == (10, 11, 12, 255)
    assert o.box == (600, 450)


@pytest.mark.parametrize(("raw", "rgba"), [("fff", (255, 255, 255, 255)), ("00000000", (0, 0, 0, 0)),
                                           ("#FF8000", (255, 128, 0, 255))])
def test_background_forms(raw: str, rgba: tuple[int, int, int, int]) -> None:
    assert parse_options({"background": raw}).background == rgba


@pytest.mark.parametrize(("params", "fragment"), [
    ({"w": "0"}, "w must be from 1 to 8192"),
    ({"h": "8193"}, "h must be from 1 to 8192"),
    ({"w": "12.5"}, "w must be a whole number"),
    ({"fit": "stretch"}, "fit must be one of cover, contain, fill, inside"),
    ({"gravity": "up"}, "gravity must be one of"),
    ({"format": "gif"}, "format must be one of"),
    ({"q": "101"}, "q must be from 1 to 100"),
    ({"dpr": "4"}, "dpr must be a number from 1 to 3"),
    ({"dpr": "nan"}, "dpr must be a number from 1 to 3"),
    ({"background": "red"}, "background must be a hex colour"),
    ({"width": "400"}, "unknown parameter 'width'"),
    ({"w": "1", "h": "1", "fit": "fill", "gravity": "north"}, "gravity applies to fit=cover"),
    ({"w": "1", "h": "1", "fit": "contain", "gravity": "smart"}, "only applies to fit=cover"),
])
def test_bad_values_are_bad_requests_naming_the_parameter(params: dict[str, str], fragment: str) -> None:
    with pytest.raises(BadRequest, match=fragment) as info:
        parse_options(params)
    assert info.value.status == 422


def test_repeated_parameter_is_refused() -> None:
    with pytest.raises(BadRequest, match="more than once"):
        parse_options([("w", "1"), ("w", "2")])


def test_format_not_enabled_on_the_server() -> None:
    with pytest.raises(BadRequest, match="format=avif is not enabled"):
        parse_options({"format": "avif"}, allowed_formats=["jpeg", "webp"])


def test_aliases() -> None:
    o = parse_options({"gravity": "center", "format": "jpg"})
    assert (o.gravity, o.format) == (Gravity.centre, OutputFormat.jpeg)


def test_negotiation_reads_the_accept_header_within_enabled_formats() -> None:
    chrome = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
    assert negotiate(chrome, ["jpeg", "webp", "avif"]) == {"avif", "webp"}
    assert negotiate(chrome, ["jpeg", "webp"]) == {"webp"}
    assert negotiate("image/*", ["jpeg", "webp", "avif"]) == frozenset()
    o = parse_options({"format": "auto"}, accept=chrome)
    assert o.accepted == {"avif", "webp"} and o.variant == "avif,webp"
    assert parse_options({"format": "png"}, accept=chrome).variant == ""  # explicit: Accept is irrelevant
