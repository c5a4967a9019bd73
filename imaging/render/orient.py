"""Step `orient`: rotate and flip as the EXIF orientation says, so the output needs no tag.

Cameras store pixels as the sensor saw them and record how to turn them; the
output strips EXIF, so the turn must be applied to the pixels.
"""

from __future__ import annotations

from imaging.render.context import RenderContext


def orient(ctx: RenderContext) -> None:
    """Apply the orientation (1..8) to the pixels and drop the tag."""
    image = ctx.current()
    if ctx.orientation != 1:
        image = image.autorot()
    if image.get_typeof("orientation"):
        image = image.copy()
        image.remove("orientation")
    ctx.image = image
