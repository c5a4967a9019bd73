"""What a thumbnail request asks for, parsed and checked before any pixel is touched.

The query string of `/thumbnail` is untrusted and signed as it is, so parsing is
strict: an unknown or repeated parameter, or a value out of range, is a
`BadRequest` naming the parameter and what would be accepted; nothing is
silently ignored or clamped (a typo like `width=` would otherwise give the full
size image and look like a server bug).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from imgkit.errors import BadRequest

MAX_SIDE = 8192


class Fit(StrEnum):
    """How the image meets a box of `w` x `h` (when both are given; sharp's vocabulary)."""

    cover = "cover"  # fill the box, cropping what overflows (by gravity)
    contain = "contain"  # fit inside the box, pad the rest with the background colour
    fill = "fill"  # stretch to the box, ignoring the aspect ratio
    inside = "inside"  # fit inside the box; the output may be smaller than the box on one side


class Gravity(StrEnum):
    """Which part of the image is kept by `cover` (and where `contain` places it)."""

    centre = "centre"
    north = "north"
    south = "south"
    east = "east"
    west = "west"
    northeast = "northeast"
    northwest = "northwest"
    southeast = "southeast"
    southwest = "southwest"
    smart = "smart"  # alias of attention
    attention = "attention"  # libvips: the region with the most skin tones, saturation and edges
    entropy = "entropy"  # libvips: the region with the most information

    @property
    def is_smart(self) -> bool:
        return self in (Gravity.smart, Gravity.attention, Gravity.entropy)


class OutputFormat(StrEnum):
    jpeg = "jpeg"
    png = "png"
    webp = "webp"
    avif = "avif"
    auto = "auto"  # the best format the client's Accept header names, among settings.render_formats


CONTENT_TYPES: dict[str, str] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "avif": "image/avif",
}

#: Quality used when `q` is absent (sharp's defaults: AVIF reaches JPEG 80 at a lower number).
DEFAULT_QUALITY: dict[str, int] = {"jpeg": 80, "webp": 80, "avif": 50, "png": 100}

#: Formats `auto` may pick because the client says it accepts them, best first.
NEGOTIATED = ("avif", "webp")

_ALIASES = {"center": "centre", "jpg": "jpeg", "ne": "northeast", "nw": "northwest",
            "se": "southeast", "sw": "southwest", "n": "north", "s": "south", "e": "east", "w": "west"}
_HEX = re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$")

#: Parameters of the thumbnail itself; `url`, `a` and `s` are the API's business.
KNOWN_PARAMS = ("w", "h", "fit", "gravity", "background", "format", "q", "dpr")

E = TypeVar("E", bound=StrEnum)


@dataclass(frozen=True)
class RenderOptions:
    """A validated thumbnail request. Frozen: it is part of the cache identity of the result."""

    width: int | None = None  # box width in CSS pixels (before dpr); None: follows the aspect ratio
    height: int | None = None  # box height in CSS pixels (before dpr); None: follows the aspect ratio
    fit: Fit = Fit.cover  # how the image meets the box; only matters when both sides are given
    gravity: Gravity = Gravity.centre  # kept region for cover, placement for contain
    background: tuple[int, int, int, int] = (255, 255, 255, 255)  # RGBA: contain padding, alpha flattening
    format: OutputFormat = OutputFormat.auto  # requested format; auto is resolved per image and client
    quality: int | None = None  # 1..100; None: DEFAULT_QUALITY of the chosen format
    dpr: float = 1.0  # device pixel ratio 1..3; multiplies the box
    accepted: frozenset[str] = field(default_factory=frozenset)  # NEGOTIATED formats the client accepts
    allowed: tuple[str, ...] = ("jpeg", "png", "webp", "avif")  # settings.render_formats at parse time

    @property
    def box(self) -> tuple[int | None, int | None]:
        """The box in device pixels (CSS pixels x dpr), each side None when not given."""
        scale = self.dpr
        return (None if self.width is None else max(1, round(self.width * scale)),
                None if self.height is None else max(1, round(self.height * scale)))

    @property
    def variant(self) -> str:
        """What besides the URL decides the output: the negotiated formats when format=auto."""
        return ",".join(sorted(self.accepted)) if self.format is OutputFormat.auto else ""


def negotiate(accept: str, allowed: Iterable[str]) -> frozenset[str]:
    """The NEGOTIATED formats named in an Accept header and allowed by settings.

    Presence of the media type is what counts; q-values are ignored on purpose:
    browsers do not send `q=0` for image types, and the nginx cache in front
    classifies requests with the same substring test (deploy/nginx/imgkit.conf),
    so the server and its cache always agree on which variant a request gets.
    """
    lowered = accept.lower()
    allowed_set = set(allowed)
    return frozenset(f for f in NEGOTIATED if f in allowed_set and f"image/{f}" in lowered)


def parse_options(params: Mapping[str, str] | Iterable[tuple[str, str]], *, accept: str = "",
                  allowed_formats: Iterable[str] = ("jpeg", "png", "webp", "avif")) -> RenderOptions:
    """Build RenderOptions from query parameters (without url, a, s), or raise BadRequest."""
    pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
    values: dict[str, str] = {}
    for key, value in pairs:
        if key not in KNOWN_PARAMS:
            raise BadRequest(f"unknown parameter {key!r}; thumbnail parameters are "
                             f"{', '.join(KNOWN_PARAMS)}", parameter=key)
        if key in values:
            raise BadRequest(f"parameter {key!r} is given more than once", parameter=key)
        values[key] = value
    allowed = tuple(f for f in ("jpeg", "png", "webp", "avif") if f in set(allowed_formats))

    width = _side(values, "w")
    height = _side(values, "h")
    fit = _choice(values, "fit", Fit, Fit.cover)
    gravity_given = "gravity" in values
    gravity = _choice(values, "gravity", Gravity, Gravity.centre)
    if gravity_given and width is not None and height is not None:
        if fit not in (Fit.cover, Fit.contain):
            raise BadRequest(f"gravity applies to fit=cover (and to placement for fit=contain), not "
                             f"fit={fit.value}", parameter="gravity")
        if fit is Fit.contain and gravity.is_smart:
            raise BadRequest(f"gravity={gravity.value} only applies to fit=cover; fit=contain accepts "
                             "centre or a compass direction", parameter="gravity")
    background = _background(values.get("background"))
    fmt = _choice(values, "format", OutputFormat, OutputFormat.auto)
    if fmt is not OutputFormat.auto and fmt.value not in allowed:
        raise BadRequest(f"format={fmt.value} is not enabled on this server; enabled: "
                         f"{', '.join(allowed)} or auto", parameter="format")
    if not allowed:
        raise BadRequest("no output format is enabled on this server (IMGKIT_RENDER_FORMATS)")
    quality = _int(values, "q", 1, 100) if "q" in values else None
    dpr = _dpr(values.get("dpr"))
    accepted = negotiate(accept, allowed) if fmt is OutputFormat.auto else frozenset()
    return RenderOptions(width=width, height=height, fit=fit, gravity=gravity, background=background,
                         format=fmt, quality=quality, dpr=dpr, accepted=accepted, allowed=allowed)


def _int(values: Mapping[str, str], key: str, low: int, high: int) -> int:
    raw = values[key].strip()
    if not re.fullmatch(r"[0-9]+", raw):
        raise BadRequest(f"{key} must be a whole number from {low} to {high} (got {values[key]!r})",
                         parameter=key)
    number = int(raw)
    if not low <= number <= high:
        raise BadRequest(f"{key} must be from {low} to {high} (got {number})", parameter=key)
    return number


def _side(values: Mapping[str, str], key: str) -> int | None:
    return _int(values, key, 1, MAX_SIDE) if key in values else None


def _choice(values: Mapping[str, str], key: str, enum: type[E], default: E) -> E:
    if key not in values:
        return default
    raw = values[key].strip().lower()
    raw = _ALIASES.get(raw, raw)
    try:
        return enum(raw)
    except ValueError:
        choices = ", ".join(m.value for m in enum)
        raise BadRequest(f"{key} must be one of {choices} (got {values[key]!r})", parameter=key) from None


def _background(raw: str | None) -> tuple[int, int, int, int]:
    if raw is None:
        return (255, 255, 255, 255)
    match = _HEX.match(raw.strip())
    if not match:
        raise BadRequest("background must be a hex colour RGB, RRGGBB or RRGGBBAA, with or without # "
                         f"(got {raw!r})", parameter="background")
    digits = match.group(1)
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    if len(digits) == 6:
        digits += "ff"
    r, g, b, a = (int(digits[i:i + 2], 16) for i in range(0, 8, 2))
    return (r, g, b, a)


def _dpr(raw: str | None) -> float:
    if raw is None:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 1.0 <= value <= 3.0):
        raise BadRequest(f"dpr must be a number from 1 to 3 (got {raw!r})", parameter="dpr")
    return value
