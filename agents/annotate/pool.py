"""Provider instances, built once per process and shared by the API and the annotate agent.

Building a provider can be slow or touch the outside world (the Google client
resolves credentials, tesseract checks its binary and language data), so each
is built once, off the event loop, and reused; concurrent first uses wait for
the one build. A provider that cannot be built here is remembered as such: its
configuration will not change while the process runs, and asking again on
every request would repeat a credential lookup each time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from agents.annotate.providers import PROVIDERS, Provider, ProviderNotConfigured, get_provider
from imgkit.errors import ImgKitError
from imgkit.settings import Settings

log = logging.getLogger("imgkit.agents.annotate")


class ProviderPool:
    """Providers by name: built lazily, once, and closed together at shutdown."""

    def __init__(self) -> None:
        self._built: dict[str, Provider] = {}
        self._failed: dict[str, ImgKitError] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, name: str, settings: Settings) -> Provider:
        """The provider called `name`; raises UnknownProvider or ProviderNotConfigured."""
        key = name.strip().lower()
        if key in self._built:
            return self._built[key]
        if key not in PROVIDERS:  # raises UnknownProvider; nothing kept for a client's typo
            return get_provider(key, settings)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self._built:
                return self._built[key]
            if key in self._failed:
                raise self._failed[key]
            try:
                # Google's credential lookup reads files and may ask the metadata server.
                provider = await asyncio.to_thread(get_provider, key, settings)
            except ProviderNotConfigured as exc:
                self._failed[key] = exc
                raise
            self._built[key] = provider
            log.info("annotation provider ready", extra={"provider": key})
            return provider

    async def aclose(self) -> None:
        """Close every built provider (HTTP sessions...); one failing does not stop the others."""
        built, self._built = list(self._built.values()), {}
        for provider in built:
            with contextlib.suppress(Exception):
                await provider.aclose()
