"""Annotation providers behind one interface, and the registry that builds them by name.

- `google`: Google Cloud Vision (every feature), through the official client;
- `tesseract`: OCR (`text`) with the tesseract command line, on this machine;
- `local`: what ImgKit computes itself (`properties`: dominant colours).

Provider modules are imported only when asked for, so that a deployment that
never uses Google does not pay for importing its client (about a second).
"""

from __future__ import annotations

from agents.annotate.providers.base import (
    Provider,
    ProviderError,
    ProviderNotConfigured,
    UnknownProvider,
    UnsupportedFeatures,
)
from imgkit.settings import Settings

PROVIDERS = ("google", "tesseract", "local")
"""Names `get_provider` knows."""

__all__ = [
    "PROVIDERS",
    "Provider",
    "ProviderError",
    "ProviderNotConfigured",
    "UnknownProvider",
    "UnsupportedFeatures",
    "get_provider",
]


def get_provider(name: str, settings: Settings) -> Provider:
    """Build the provider called `name`, configured from `settings`.

    Raises UnknownProvider for a name not in PROVIDERS, and ProviderNotConfigured
    when the provider cannot run here (no Google credentials and no endpoint
    override; no tesseract binary), so the problem shows at startup rather than
    on the first image. Building `google` may look up Application Default
    Credentials (files, and possibly the metadata server): call it at startup or
    through `asyncio.to_thread`, and keep the instance.
    """
    key = name.strip().lower()
    if key == "google":
        from agents.annotate.providers.google import GoogleVisionProvider

        return GoogleVisionProvider.from_settings(settings)
    if key == "tesseract":
        from agents.annotate.providers.tesseract import TesseractProvider

        return TesseractProvider.from_settings(settings)
    if key == "local":
        from agents.annotate.providers.local import LocalProvider

        return LocalProvider()
    raise UnknownProvider(f"unknown annotation provider {name!r}; choose one of "
                          f"{', '.join(PROVIDERS)}", provider=name)
