"""Social cards: shipped HTML templates filled with escaped query parameters.

Why templates are filled here and not with a template engine: the parameters
come from anyone who can get a URL signed, so every value is HTML-escaped
(quotes included, since values land in attributes), the image must be an
absolute http(s) URL, and the template itself carries a Content-Security-Policy
that forbids scripts. The page is loaded with `page.set_content`, so the
template costs no network; only the image is fetched, through the same guard
as any screenshot request.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from importlib import resources
from urllib.parse import urlsplit

from imgkit.errors import BadRequest, NotFound

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
MAX_TEXT = 300
MAX_URL = 2048


def available_templates() -> list[str]:
    """Names of the shipped card templates (`og` for `api/templates/og.html`)."""
    folder = resources.files("api").joinpath("templates")
    return sorted(p.name.removesuffix(".html") for p in folder.iterdir() if p.name.endswith(".html"))


@lru_cache(maxsize=32)
def load_template(name: str) -> str:
    """The template's HTML; the name is checked against a strict pattern (no path tricks)."""
    if not _NAME.match(name) or name not in available_templates():
        raise NotFound(f"unknown card template {name!r}; available: {', '.join(available_templates())}",
                       code="unknown_template", template=name)
    return resources.files("api").joinpath("templates", f"{name}.html").read_text("utf-8")


def check_image_url(image: str) -> str:
    """Accept only absolute http(s) URLs for the card image (no `javascript:`, `data:`, `file:`)."""
    if len(image) > MAX_URL:
        raise BadRequest(f"image URL longer than {MAX_URL} characters", code="bad_image_url")
    try:
        parts = urlsplit(image)
    except ValueError as exc:
        raise BadRequest(f"image is not a valid URL: {exc}", code="bad_image_url") from exc
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        raise BadRequest("image must be an absolute http or https URL", code="bad_image_url")
    return image


def render_template(name: str, *, title: str, subtitle: str = "", image: str = "",
                    width: int = 1200, height: int = 630) -> str:
    """Fill template `name`; every value is HTML-escaped, unknown placeholders become empty."""
    for label, value in (("title", title), ("subtitle", subtitle)):
        if len(value) > MAX_TEXT:
            raise BadRequest(f"{label} longer than {MAX_TEXT} characters", code="text_too_long")
    if image:
        check_image_url(image)
    classes = ["with-image" if image else "no-image", "with-subtitle" if subtitle else "no-subtitle"]
    values = {"title": title, "subtitle": subtitle, "image": image, "width": str(width),
              "height": str(height), "classes": " ".join(classes)}
    source = load_template(name)
    return _PLACEHOLDER.sub(lambda m: html.escape(values.get(m.group(1), ""), quote=True), source)
