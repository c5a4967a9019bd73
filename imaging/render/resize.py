"""Step `resize`: scale the decoded image to the planned size (before crop or padding).

Alpha is premultiplied around the resize: a Lanczos kernel over straight alpha
bleeds the colour of fully transparent pixels into the edges (dark fringes).
"""

from __future__ import annotations

from imaging.render.context import RenderContext


def resize(ctx: RenderContext) -> None:
    """Scale `image` to resize_width x resize_height."""
    image = ctx.current()
    if (image.width, image.height) == (ctx.resize_width, ctx.resize_height):
        return
    hscale = ctx.resize_width / image.width
    vscale = ctx.resize_height / image.height
    alpha = image.hasalpha()
    if alpha:
        image = image.premultiply()
    image = image.resize(hscale, vscale=vscale, kernel="lanczos3")
    if alpha:
        image = image.unpremultiply().cast(ctx.current().format)
    # libvips rounds each side; a one-pixel drift would break the exact sizes of cover and fill
    if (image.width, image.height) != (ctx.resize_width, ctx.resize_height):
        image = image.gravity("centre", ctx.resize_width, ctx.resize_height, extend="copy")
    ctx.image = image
