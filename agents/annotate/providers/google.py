"""The `google` provider: Google Cloud Vision through its official Python client.

Choices, and why:

- **REST transport** (`transport="rest"`): plain HTTPS/JSON through `requests`.
  It needs no gRPC runtime, goes through ordinary HTTP proxies, and lets tests
  point the real client at a fake server speaking the documented
  `POST /v1/images:annotate` JSON protocol (`tests/support/fake_vision.py`).
- **Endpoint override** (`IMGKIT_GOOGLE_VISION_ENDPOINT`): passed as
  `client_options={"api_endpoint": ...}`. The REST transport accepts a scheme in
  it: `http://127.0.0.1:8765` talks plain HTTP to a local fake server, while a
  bare `host:port` means `https://host:port` (the transport adds `https://` only
  when no scheme is given; google-cloud-vision >= 3.7 / google-api-core 2.x).
- **Credentials**: `IMGKIT_GOOGLE_VISION_CREDENTIALS` (a service-account key
  file) if set, else Application Default Credentials
  (`GOOGLE_APPLICATION_CREDENTIALS`, `gcloud auth application-default login`,
  the metadata server on Google Cloud). Only when none is found *and* an
  endpoint override is set does the provider use
  `google.auth.credentials.AnonymousCredentials()` (no Authorization header):
  that is the case of a fake or emulated server in tests, and it is logged.
  Without an override and without credentials, building the provider fails
  with ProviderNotConfigured instead of failing on every image later.
- **No client-side retries** (`retry=None`): the generated client would retry
  503/504 for up to 600 s inside one call, hidden from the pipeline. Retrying is
  the annotate agent's job (backoff, attempt count, dead letters), so a failure
  comes back at once as a ProviderError with `retryable` set.
- The client is synchronous; each call runs in a worker thread
  (`asyncio.to_thread`) so the event loop keeps serving other images.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import google.auth
import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import vision
from google.oauth2 import service_account
from google.protobuf.json_format import MessageToDict

from agents.annotate.providers.base import Provider, ProviderError, ProviderNotConfigured
from imgkit.settings import Settings
from schemas.annotations import (
    Annotations,
    DominantColour,
    Face,
    Feature,
    Label,
    Landmark,
    Likelihood,
    LocalizedObject,
    NormalizedVertex,
    Properties,
    SafeSearch,
    TextAnnotation,
    TextBlock,
    TextWord,
    Vertex,
    WebDetection,
    WebEntity,
)

log = logging.getLogger(__name__)

SCOPES = ("https://www.googleapis.com/auth/cloud-vision",)

FEATURE_TYPES: dict[Feature, int] = {  # values are vision.Feature.Type members
    Feature.labels: vision.Feature.Type.LABEL_DETECTION,
    Feature.landmarks: vision.Feature.Type.LANDMARK_DETECTION,
    # DOCUMENT_TEXT_DETECTION rather than TEXT_DETECTION: same price, and its
    # fullTextAnnotation gives blocks, paragraphs and per-word confidences.
    Feature.text: vision.Feature.Type.DOCUMENT_TEXT_DETECTION,
    Feature.safe_search: vision.Feature.Type.SAFE_SEARCH_DETECTION,
    Feature.properties: vision.Feature.Type.IMAGE_PROPERTIES,
    Feature.web_entities: vision.Feature.Type.WEB_DETECTION,
    Feature.faces: vision.Feature.Type.FACE_DETECTION,
    Feature.objects: vision.Feature.Type.OBJECT_LOCALIZATION,
}
"""ImgKit feature → the Vision feature type requested for it."""

# google.rpc.Code values of a per-image `error` that may pass on a later attempt.
_RETRYABLE_RPC_CODES = {
    4,   # DEADLINE_EXCEEDED
    8,   # RESOURCE_EXHAUSTED
    10,  # ABORTED
    13,  # INTERNAL
    14,  # UNAVAILABLE
}
_RPC_CODE_NAMES = {
    1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND",
    6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION",
    10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE",
    15: "DATA_LOSS", 16: "UNAUTHENTICATED",
}


def resolve_credentials(settings: Settings) -> tuple[Credentials, str]:
    """The credentials to call Vision with, and where they came from (for the logs).

    Order: the key file of `google_vision_credentials`; Application Default
    Credentials; anonymous credentials, only with an endpoint override. Raises
    ProviderNotConfigured otherwise.
    """
    key_file = settings.google_vision_credentials
    if key_file is not None:
        try:
            creds = service_account.Credentials.from_service_account_file(str(key_file), scopes=SCOPES)
        except (OSError, ValueError) as exc:
            raise ProviderNotConfigured(f"cannot read the Google service-account key {key_file}: {exc}",
                                        provider="google") from exc
        return creds, f"service account key {key_file}"
    try:
        creds, _project = google.auth.default(scopes=SCOPES)
    except auth_exc.DefaultCredentialsError as exc:
        if settings.google_vision_endpoint:
            return AnonymousCredentials(), "anonymous (endpoint override, no credentials found)"
        raise ProviderNotConfigured(
            "Google Vision has no credentials: set GOOGLE_APPLICATION_CREDENTIALS or "
            "IMGKIT_GOOGLE_VISION_CREDENTIALS to a service-account key, or run "
            "`gcloud auth application-default login`", provider="google") from exc
    return creds, "application default credentials"


class GoogleVisionProvider(Provider):
    """Google Cloud Vision, every feature, one `images:annotate` request per image."""

    name = "google"
    supported = frozenset(FEATURE_TYPES)

    def __init__(self, client: vision.ImageAnnotatorClient, *, timeout: float = 30.0,
                 max_results: int = 10) -> None:
        self._client = client
        self._timeout = timeout
        self._max_results = max_results

    @classmethod
    def from_settings(cls, settings: Settings, *, credentials: Credentials | None = None
                      ) -> GoogleVisionProvider:
        """Build the client from settings; `credentials` overrides the lookup (resolve_credentials)."""
        source = "given"
        if credentials is None:
            credentials, source = resolve_credentials(settings)
        endpoint = settings.google_vision_endpoint.strip().rstrip("/")
        client_options: dict[str, Any] = {"api_endpoint": endpoint} if endpoint else {}
        client = vision.ImageAnnotatorClient(credentials=credentials, transport="rest",
                                             client_options=client_options or None)
        log.info("google vision provider ready", extra={
            "endpoint": endpoint or "vision.googleapis.com", "credentials": source})
        return cls(client, timeout=settings.vision_timeout,
                   max_results=settings.google_vision_max_results)

    async def annotate(self, image: bytes, features: set[Feature]) -> Annotations:
        wanted = self.check_features(features)
        request = vision.AnnotateImageRequest(
            image=vision.Image(content=image),
            features=[vision.Feature(type_=FEATURE_TYPES[f], max_results=self._max_results)
                      for f in sorted(wanted)],
        )
        response = await asyncio.to_thread(self._call, request)
        if len(response.responses) != 1:
            raise ProviderError(f"Vision answered {len(response.responses)} results for one image",
                                retryable=True, provider=self.name)
        single = response.responses[0]
        if single.error.code:
            raise _error_from_status(single.error.code, single.error.message)
        raw = MessageToDict(vision.AnnotateImageResponse.pb(single))
        return to_annotations(single, wanted, raw)

    def _call(self, request: vision.AnnotateImageRequest) -> vision.BatchAnnotateImagesResponse:
        """One blocking `images:annotate` call, with every failure turned into a ProviderError."""
        try:
            return self._client.batch_annotate_images(requests=[request], retry=None,
                                                      timeout=self._timeout)
        except gexc.GoogleAPICallError as exc:
            raise _error_from_api(exc) from exc
        except gexc.RetryError as exc:
            raise ProviderError(f"Vision did not answer in time: {exc.message}", retryable=True,
                                provider="google") from exc
        except requests.Timeout as exc:
            raise ProviderError(f"Vision did not answer within {self._timeout:g} s", retryable=True,
                                provider="google", code="annotation_timeout", status=504) from exc
        except requests.RequestException as exc:
            raise ProviderError(f"cannot reach Vision: {exc}", retryable=True, provider="google",
                                status=503) from exc
        except auth_exc.RefreshError as exc:
            raise ProviderError(f"Google credentials were refused: {exc}", retryable=False,
                                provider="google") from exc
        except auth_exc.TransportError as exc:
            raise ProviderError(f"cannot reach Google's token service: {exc}", retryable=True,
                                provider="google", status=503) from exc
        except auth_exc.GoogleAuthError as exc:
            # E.g. a 401 answered to anonymous credentials, which cannot be refreshed.
            raise ProviderError(f"Vision refused the credentials: {exc}", retryable=False,
                                provider="google") from exc

    async def aclose(self) -> None:
        """Close the HTTP session of the client's transport."""
        await asyncio.to_thread(self._client.transport.close)


_REQUEST_PREFIX = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) \S+: ")


def _error_from_api(exc: gexc.GoogleAPICallError) -> ProviderError:
    """Classify an HTTP/gRPC error: quota, rate limit, 5xx and timeouts are retryable; other 4xx not."""
    # The REST transport prefixes Google's message with "POST <url>: "; the URL is noise to a client.
    message = _REQUEST_PREFIX.sub("", exc.message or str(exc), count=1)
    reason = getattr(exc, "reason", None)
    context: dict[str, Any] = {"http_status": int(exc.code)} if exc.code is not None else {}
    if reason:
        context["reason"] = reason
    transient = (isinstance(exc, gexc.TooManyRequests | gexc.ServerError | gexc.Aborted)
                 and not isinstance(exc, gexc.MethodNotImplemented))
    if transient or exc.code in (None, 408):
        # TooManyRequests covers ResourceExhausted (quota, rate limit); ServerError covers
        # InternalServerError, BadGateway, ServiceUnavailable and DeadlineExceeded (504).
        return ProviderError(f"Vision: {message}", retryable=True, provider="google", **context)
    if isinstance(exc, gexc.BadRequest):  # InvalidArgument: the image or request was refused
        return ProviderError(f"Vision refused the image: {message}", retryable=False, provider="google",
                             code="annotation_rejected", status=422, **context)
    # PermissionDenied (API not enabled, billing), Unauthenticated, NotFound...: fixing them
    # takes a person, not a retry.
    return ProviderError(f"Vision: {message}", retryable=False, provider="google", **context)


def _error_from_status(code: int, message: str) -> ProviderError:
    """Classify the per-image `error` (a google.rpc.Status) of a 200 answer."""
    name = _RPC_CODE_NAMES.get(code, str(code))
    retryable = code in _RETRYABLE_RPC_CODES
    return ProviderError(f"Vision could not annotate the image: {message or name}", retryable=retryable,
                         provider="google", rpc_code=name,
                         code=None if retryable else "annotation_rejected",
                         status=None if retryable else 422)


# --- mapping of the answer ---------------------------------------------------------------

def to_annotations(resp: vision.AnnotateImageResponse, features: set[Feature],
                   raw: dict[str, Any]) -> Annotations:
    """Map one Vision answer to the neutral shape; only requested features are filled in."""
    out = Annotations(provider="google", raw=raw)
    if Feature.labels in features:
        out.labels = [Label(description=a.description, score=a.score, topicality=a.topicality,
                            mid=a.mid or None) for a in resp.label_annotations]
    if Feature.landmarks in features:
        out.landmarks = [_landmark(a) for a in resp.landmark_annotations]
    if Feature.text in features:
        out.text = _text(resp)
    if Feature.safe_search in features:
        s = resp.safe_search_annotation
        out.safe_search = SafeSearch(adult=_likelihood(s.adult), spoof=_likelihood(s.spoof),
                                     medical=_likelihood(s.medical), violence=_likelihood(s.violence),
                                     racy=_likelihood(s.racy))
    if Feature.properties in features:
        colours = resp.image_properties_annotation.dominant_colors.colors
        out.properties = Properties(dominant_colours=[
            DominantColour(hex=_hex(c.color), score=c.score, pixel_fraction=c.pixel_fraction)
            for c in colours])
    if Feature.web_entities in features:
        web = resp.web_detection
        out.web_entities = WebDetection(
            entities=[WebEntity(entity_id=e.entity_id, description=e.description, score=e.score)
                      for e in web.web_entities],
            best_guess_labels=[b.label for b in web.best_guess_labels],
            full_matching_image_urls=[i.url for i in web.full_matching_images],
            partial_matching_image_urls=[i.url for i in web.partial_matching_images],
            visually_similar_image_urls=[i.url for i in web.visually_similar_images],
            pages_with_matching_images=[p.url for p in web.pages_with_matching_images],
        )
    if Feature.faces in features:
        out.faces = [Face(bounding_box=_vertices(f.bounding_poly),
                          detection_confidence=f.detection_confidence,
                          joy=_likelihood(f.joy_likelihood), sorrow=_likelihood(f.sorrow_likelihood),
                          anger=_likelihood(f.anger_likelihood),
                          surprise=_likelihood(f.surprise_likelihood))
                     for f in resp.face_annotations]
    if Feature.objects in features:
        out.objects = [LocalizedObject(name=o.name, score=o.score, mid=o.mid or None,
                                       bounding_poly=[NormalizedVertex(x=v.x, y=v.y)
                                                      for v in o.bounding_poly.normalized_vertices])
                       for o in resp.localized_object_annotations]
    return out


def _likelihood(value: Any) -> Likelihood:
    try:
        return Likelihood(vision.Likelihood(value).name)
    except ValueError:
        return Likelihood.UNKNOWN


def _hex(color: Any) -> str:
    def channel(v: float) -> int:
        return max(0, min(255, round(v)))
    return f"#{channel(color.red):02x}{channel(color.green):02x}{channel(color.blue):02x}"


def _vertices(poly: Any) -> list[Vertex]:
    return [Vertex(x=v.x, y=v.y) for v in poly.vertices]


def _landmark(a: Any) -> Landmark:
    lat = lng = None
    if a.locations:
        lat, lng = a.locations[0].lat_lng.latitude, a.locations[0].lat_lng.longitude
    return Landmark(description=a.description, score=a.score, latitude=lat, longitude=lng,
                    mid=a.mid or None)


_BREAKS = {
    vision.TextAnnotation.DetectedBreak.BreakType.SPACE: " ",
    vision.TextAnnotation.DetectedBreak.BreakType.SURE_SPACE: " ",
    vision.TextAnnotation.DetectedBreak.BreakType.EOL_SURE_SPACE: "\n",
    vision.TextAnnotation.DetectedBreak.BreakType.LINE_BREAK: "\n",
    vision.TextAnnotation.DetectedBreak.BreakType.HYPHEN: "-\n",
}


def _text(resp: vision.AnnotateImageResponse) -> TextAnnotation:
    """Blocks from fullTextAnnotation (DOCUMENT_TEXT_DETECTION); else from textAnnotations."""
    full = resp.full_text_annotation
    if full.text or full.pages:
        blocks = []
        for page in full.pages:
            for block in page.blocks:
                words: list[TextWord] = []
                parts: list[str] = []
                for paragraph in block.paragraphs:
                    for word in paragraph.words:
                        text = "".join(s.text for s in word.symbols)
                        words.append(TextWord(text=text, confidence=word.confidence or None,
                                              bounding_box=_vertices(word.bounding_box)))
                        for symbol in word.symbols:
                            parts.append(symbol.text)
                            parts.append(_BREAKS.get(symbol.property.detected_break.type_, ""))
                    if parts and not parts[-1].endswith("\n"):
                        parts.append("\n")
                blocks.append(TextBlock(text="".join(parts).strip(), confidence=block.confidence or None,
                                        bounding_box=_vertices(block.bounding_box), words=words))
        return TextAnnotation(full_text=full.text, blocks=blocks)
    if resp.text_annotations:
        # TEXT_DETECTION shape: the first entry is the whole text, the others its words.
        whole, *rest = resp.text_annotations
        words = [TextWord(text=w.description, bounding_box=_vertices(w.bounding_poly)) for w in rest]
        return TextAnnotation(full_text=whole.description, blocks=[
            TextBlock(text=whole.description.strip(), bounding_box=_vertices(whole.bounding_poly),
                      words=words)])
    return TextAnnotation()

