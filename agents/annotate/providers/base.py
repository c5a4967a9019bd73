"""What every annotation provider offers, and the errors it may raise.

The annotate agent only knows this interface: it hands over the image bytes and
the wanted features and gets `Annotations` back, or a `ProviderError` whose
`retryable` flag decides between "retry with backoff" and "fail now". So
adding a provider never touches the agent, and the retry policy lives in one
place (the agent), not in every provider.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from imgkit.errors import BadRequest, ConfigError, ImgKitError
from schemas.annotations import Annotations, Feature


class ProviderError(ImgKitError):
    """A provider could not annotate an image.

    `retryable` is True for failures that may pass on a later attempt (quota,
    rate limit, 5xx, timeouts, connection errors) and False for those that will
    fail the same way again (invalid image, permission denied, unsupported
    feature). The message is the provider's own, so a client sees why.
    """

    code = "annotation_failed"
    status = 502

    def __init__(self, message: str, *, retryable: bool, provider: str = "",
                 code: str | None = None, status: int | None = None, **context: Any) -> None:
        super().__init__(message, code=code, status=status, provider=provider, **context)
        self.retryable = retryable
        self.provider = provider

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "retryable": self.retryable}


class UnsupportedFeatures(ProviderError):
    """The client asked a provider for features it does not offer (never retryable)."""

    code = "unsupported_feature"
    status = 422

    def __init__(self, provider: str, unsupported: Iterable[Feature], supported: Iterable[Feature]) -> None:
        names = sorted(f.value for f in unsupported)
        offered = sorted(f.value for f in supported)
        super().__init__(f"provider {provider!r} does not offer {', '.join(names)}; it offers "
                         f"{', '.join(offered)}", retryable=False, provider=provider,
                         unsupported=names)


class UnknownProvider(BadRequest):
    """A provider name that does not exist (a client's typo, or a bad setting)."""

    code = "unknown_provider"


class ProviderNotConfigured(ConfigError):
    """A provider that exists but cannot run here: no credentials, no binary..."""

    code = "provider_not_configured"
    status = 503


class Provider(ABC):
    """An annotation provider. Build it once (see `get_provider`) and reuse it: building may
    resolve credentials or check binaries; `annotate` is safe to call concurrently."""

    name: str
    """Stable name, as in `IMGKIT_VISION_PROVIDER` and `Annotations.provider`."""
    supported: frozenset[Feature]
    """The features this provider can find."""

    @abstractmethod
    async def annotate(self, image: bytes, features: set[Feature]) -> Annotations:
        """Find `features` in the encoded `image`.

        Raises UnsupportedFeatures before any work if a feature is not in
        `supported`, and ProviderError (with `retryable` set) for every other
        failure, an unreadable image included (code `invalid_image`, not
        retryable): the agent needs no other except clause.
        """

    def check_features(self, features: Iterable[Feature]) -> set[Feature]:
        """The requested features as a set; non-retryable ProviderError if none or unsupported ones."""
        wanted = {Feature(f) for f in features}
        if not wanted:
            raise ProviderError("no feature requested", retryable=False, provider=self.name,
                                code=BadRequest.code, status=BadRequest.status)
        unsupported = wanted - self.supported
        if unsupported:
            raise UnsupportedFeatures(self.name, unsupported, self.supported)
        return wanted

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release connections or other resources; the default has none to release."""
