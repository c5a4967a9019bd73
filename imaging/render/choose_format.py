"""Step `choose_format`: turn `format=auto` into a concrete format for this image and client."""

from __future__ import annotations

from imaging.render.context import RenderContext
from imaging.render.options import NEGOTIATED, OutputFormat, RenderOptions


def resolve_format(options: RenderOptions, has_alpha: bool) -> str:
    """The format to encode: the requested one, or for auto the best the client accepts.

    auto: AVIF, then WebP, when the client accepts them; otherwise PNG for images
    with transparency (JPEG would flatten it) and JPEG for the rest; always among
    the formats enabled on the server (`options.allowed`).
    """
    if options.format is not OutputFormat.auto:
        return options.format.value
    preferred = [f for f in NEGOTIATED if f in options.accepted]
    preferred += ["png", "jpeg"] if has_alpha else ["jpeg", "png"]
    preferred += ["webp", "avif"]  # a server that only enables these still answers everyone
    return next(f for f in preferred if f in options.allowed)


def choose_format(ctx: RenderContext) -> None:
    """Fill output_format."""
    ctx.output_format = resolve_format(ctx.options, ctx.has_alpha)
