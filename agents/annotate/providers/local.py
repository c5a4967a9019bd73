"""The `local` provider: what ImgKit computes itself, without any outside service.

Today that is `properties` (dominant colours), from the same `imaging.palette`
code the ingestion pipeline uses, so a palette is the same whichever path
computed it. It needs no credentials and no network, which makes it the
default provider and the one the end-to-end tests can always run.
"""

from __future__ import annotations

import asyncio

from agents.annotate.providers.base import Provider, ProviderError
from imaging.palette import dominant_colours
from imgkit.errors import ImageError
from schemas.annotations import Annotations, DominantColour, Feature, Properties

PALETTE_SIZE = 5
"""Colours returned, like the ingestion palette."""


class LocalProvider(Provider):
    """Annotations computed in-process (dominant colours)."""

    name = "local"
    supported = frozenset({Feature.properties})

    async def annotate(self, image: bytes, features: set[Feature]) -> Annotations:
        """Dominant colours of `image`; a non-retryable ProviderError if it is not an image."""
        self.check_features(features)
        # Decoding and quantising are CPU work in C that releases the GIL: keep the loop free.
        try:
            colours = await asyncio.to_thread(dominant_colours, image, PALETTE_SIZE)
        except ImageError as exc:
            raise ProviderError(exc.message, retryable=False, provider=self.name, code="invalid_image",
                                status=422, **exc.context) from exc
        return Annotations(
            provider=self.name,
            properties=Properties(dominant_colours=[
                DominantColour(hex=c.hex, score=c.share, pixel_fraction=c.share) for c in colours
            ]),
            raw={"dominant_colours": [{"hex": c.hex, "share": c.share, "rgb": list(c.rgb)}
                                      for c in colours]},
        )
