"""Step `finalize`: make the image exactly what gets encoded.

Metadata is stripped except the ICC profile: EXIF can carry GPS positions and
camera serial numbers the site owner never meant to publish, and none of it
helps a thumbnail. Formats without alpha get the alpha flattened onto the
background colour (white unless asked). The output size is checked one last time.
"""

from __future__ import annotations

from imaging.render.context import RenderContext
from imaging.render.errors import BadRequest

_KEEP = frozenset({"icc-profile-data"})
#: Metadata fields besides the `*-data` blobs (EXIF, XMP, IPTC...): parsed tags and comments.
_STRIP_PREFIXES = ("exif-", "xmp-", "iptc-", "orientation", "png-comment", "gif-comment", "jpeg-comment")
#: Formats that cannot store an alpha band.
_OPAQUE = frozenset({"jpeg"})


def finalize(ctx: RenderContext) -> None:
    """Strip metadata but the ICC profile, flatten alpha for opaque formats, check the size."""
    image = ctx.current()
    if image.width * image.height > ctx.max_output_pixels:
        raise BadRequest(f"the thumbnail would be {image.width}x{image.height} pixels, over "
                         f"{ctx.max_output_pixels}", code="output_too_large")
    if ctx.output_format in _OPAQUE and image.hasalpha():
        image = image.flatten(background=list(ctx.options.background[:3]))
    image = image.copy()
    for name in image.get_fields():
        if name not in _KEEP and (name.endswith("-data") or name.startswith(_STRIP_PREFIXES)):
            image.remove(name)
    ctx.image = image
