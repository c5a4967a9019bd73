"""A fake Google Cloud Vision server speaking the real REST protocol, for tests.

It is a real HTTP server on 127.0.0.1 (stdlib `ThreadingHTTPServer` in a
daemon thread, so it works from sync and async tests alike, and from another
process through its URL). It answers `POST /v1/images:annotate` like Vision
does: for each image, only the requested features, in the documented JSON
shapes (`labelAnnotations`, `fullTextAnnotation`, ...), truncated to each
feature's `maxResults`. It records every request (path, headers, JSON body,
decoded image bytes, feature types), and can be told to fail: an HTTP error in
Google's error format (429 RESOURCE_EXHAUSTED, 400 INVALID_ARGUMENT, 503...),
a per-image `error` inside a 200 answer, or a slow answer.

Use:

    with FakeVision() as fake:
        settings = load_settings(google_vision_endpoint=fake.endpoint)  # "http://127.0.0.1:PORT"
        ...
        assert fake.requests[0].feature_types == ["LABEL_DETECTION"]

The official Python client (REST transport) sends enum values as numbers
(`"type": 4`, with `$alt=json;enum-encoding=int`); other clients send names
(`"type": "LABEL_DETECTION"`). Both are accepted and recorded as names.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from tests.support.http_server import LoopbackHTTPServer

ANNOTATE_PATH = "/v1/images:annotate"

FEATURE_TYPE_NAMES = {
    0: "TYPE_UNSPECIFIED", 1: "FACE_DETECTION", 2: "LANDMARK_DETECTION", 3: "LOGO_DETECTION",
    4: "LABEL_DETECTION", 5: "TEXT_DETECTION", 6: "SAFE_SEARCH_DETECTION", 7: "IMAGE_PROPERTIES",
    9: "CROP_HINTS", 10: "WEB_DETECTION", 11: "DOCUMENT_TEXT_DETECTION", 12: "PRODUCT_SEARCH",
    19: "OBJECT_LOCALIZATION",
}
"""google.cloud.vision.v1.Feature.Type numbers → names."""

_HTTP_STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                      404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                      503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def _box(x0: int, y0: int, x1: int, y1: int) -> dict[str, Any]:
    # proto3 JSON leaves out zero values: a vertex at x=0 has no "x" key, as in real answers.
    def vertex(x: int, y: int) -> dict[str, int]:
        return {k: v for k, v in (("x", x), ("y", y)) if v}
    return {"vertices": [vertex(x0, y0), vertex(x1, y0), vertex(x1, y1), vertex(x0, y1)]}


def _word(text: str, x: int, y: int, confidence: float, last_break: str | None) -> dict[str, Any]:
    width = 12 * len(text)
    symbols: list[dict[str, Any]] = []
    for i, char in enumerate(text):
        symbol: dict[str, Any] = {"text": char, "confidence": confidence,
                                  "boundingBox": _box(x + 12 * i, y, x + 12 * (i + 1), y + 20)}
        if i == len(text) - 1 and last_break:
            symbol["property"] = {"detectedBreak": {"type": last_break}}
        symbols.append(symbol)
    return {"boundingBox": _box(x, y, x + width, y + 20), "confidence": confidence, "symbols": symbols}


def _document_text() -> dict[str, Any]:
    """fullTextAnnotation of an image with two lines, "Hello World" and "ImgKit", as Vision sends it."""
    line1 = [_word("Hello", 0, 10, 0.99, "SPACE"), _word("World", 72, 10, 0.98, "EOL_SURE_SPACE")]
    line2 = [_word("ImgKit", 0, 60, 0.97, "LINE_BREAK")]
    return {
        "pages": [{
            "property": {"detectedLanguages": [{"languageCode": "en", "confidence": 1}]},
            "width": 200, "height": 100,
            "blocks": [
                {"boundingBox": _box(0, 10, 132, 30), "blockType": "TEXT", "confidence": 0.98,
                 "paragraphs": [{"boundingBox": _box(0, 10, 132, 30), "confidence": 0.98,
                                 "words": line1}]},
                {"boundingBox": _box(0, 60, 72, 80), "blockType": "TEXT", "confidence": 0.97,
                 "paragraphs": [{"boundingBox": _box(0, 60, 72, 80), "confidence": 0.97,
                                 "words": line2}]},
            ],
        }],
        "text": "Hello World\nImgKit\n",
    }


_TEXT_ANNOTATIONS = [
    {"locale": "en", "description": "Hello World\nImgKit\n", "boundingPoly": _box(0, 10, 132, 80)},
    {"description": "Hello", "boundingPoly": _box(0, 10, 60, 30)},
    {"description": "World", "boundingPoly": _box(72, 10, 132, 30)},
    {"description": "ImgKit", "boundingPoly": _box(0, 60, 72, 80)},
]

DEFAULT_ANSWERS: dict[str, dict[str, Any]] = {
    "LABEL_DETECTION": {"labelAnnotations": [
        {"mid": "/m/0bt9lr", "description": "Dog", "score": 0.9753, "topicality": 0.9753},
        {"mid": "/m/0kpmf", "description": "Dog breed", "score": 0.9017, "topicality": 0.9017},
        {"mid": "/m/01z5f", "description": "Canidae", "score": 0.8693, "topicality": 0.8693},
    ]},
    "LANDMARK_DETECTION": {"landmarkAnnotations": [
        {"mid": "/m/02j81", "description": "Eiffel Tower", "score": 0.7833,
         "boundingPoly": _box(10, 20, 180, 300),
         "locations": [{"latLng": {"latitude": 48.858461, "longitude": 2.294351}}]},
    ]},
    "TEXT_DETECTION": {"textAnnotations": _TEXT_ANNOTATIONS, "fullTextAnnotation": _document_text()},
    "DOCUMENT_TEXT_DETECTION": {"textAnnotations": _TEXT_ANNOTATIONS,
                                "fullTextAnnotation": _document_text()},
    "SAFE_SEARCH_DETECTION": {"safeSearchAnnotation": {
        "adult": "VERY_UNLIKELY", "spoof": "UNLIKELY", "medical": "VERY_UNLIKELY",
        "violence": "UNLIKELY", "racy": "POSSIBLE"}},
    "IMAGE_PROPERTIES": {
        "imagePropertiesAnnotation": {"dominantColors": {"colors": [
            {"color": {"red": 232, "green": 109, "blue": 77}, "score": 0.5125, "pixelFraction": 0.3298},
            {"color": {"red": 36, "green": 40, "blue": 52}, "score": 0.2013, "pixelFraction": 0.4012},
            {"color": {"red": 250.5, "green": 250, "blue": 245}, "score": 0.0907,
             "pixelFraction": 0.1124},
        ]}},
        "cropHintsAnnotation": {"cropHints": [
            {"boundingPoly": _box(0, 0, 200, 100), "confidence": 0.8, "importanceFraction": 1}]},
    },
    "WEB_DETECTION": {"webDetection": {
        "webEntities": [{"entityId": "/m/0bt9lr", "score": 1.2245, "description": "Dog"},
                        {"entityId": "/m/01t032", "score": 0.8543, "description": "Golden Retriever"}],
        "fullMatchingImages": [{"url": "https://example.com/dog.jpg"}],
        "partialMatchingImages": [{"url": "https://example.com/dog-crop.jpg"}],
        "pagesWithMatchingImages": [{"url": "https://example.com/dogs", "pageTitle": "Dogs",
                                     "fullMatchingImages": [{"url": "https://example.com/dog.jpg"}]}],
        "visuallySimilarImages": [{"url": "https://example.org/other-dog.jpg"}],
        "bestGuessLabels": [{"label": "golden retriever", "languageCode": "en"}],
    }},
    "FACE_DETECTION": {"faceAnnotations": [{
        "boundingPoly": _box(0, 12, 110, 130), "fdBoundingPoly": _box(8, 30, 100, 122),
        "rollAngle": 1.25, "panAngle": -3.5, "tiltAngle": 0.5,
        "detectionConfidence": 0.984, "landmarkingConfidence": 0.71,
        "joyLikelihood": "VERY_LIKELY", "sorrowLikelihood": "VERY_UNLIKELY",
        "angerLikelihood": "VERY_UNLIKELY", "surpriseLikelihood": "UNLIKELY",
        "underExposedLikelihood": "VERY_UNLIKELY", "blurredLikelihood": "VERY_UNLIKELY",
        "headwearLikelihood": "VERY_UNLIKELY",
    }]},
    "OBJECT_LOCALIZATION": {"localizedObjectAnnotations": [
        {"mid": "/m/01bqk0", "name": "Bicycle wheel", "score": 0.9423,
         "boundingPoly": {"normalizedVertices": [{"x": 0.3125, "y": 0.6611}, {"x": 0.5104, "y": 0.6611},
                                                 {"x": 0.5104, "y": 0.9305}, {"x": 0.3125, "y": 0.9305}]}},
        {"mid": "/m/0199g", "name": "Bicycle", "score": 0.8901,
         "boundingPoly": {"normalizedVertices": [{"x": 0.1, "y": 0.2}, {"x": 0.9, "y": 0.2},
                                                 {"x": 0.9, "y": 0.95}, {"y": 0.95}]}},
    ]},
}
"""Answer fragments per feature type, in the shapes Vision returns (from its documentation)."""

_LISTS_LIMITED_BY_MAX_RESULTS = ("labelAnnotations", "landmarkAnnotations", "faceAnnotations",
                                 "localizedObjectAnnotations")


@dataclass
class RecordedRequest:
    """One HTTP request the fake received."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def images(self) -> list[bytes]:
        """Decoded `image.content` of each per-image request (b"" when sent by URI)."""
        return [base64.b64decode(r.get("image", {}).get("content", ""))
                for r in self.body.get("requests", [])]

    @property
    def image_content(self) -> bytes:
        """The image bytes of the first (usually only) per-image request."""
        return self.images[0]

    @property
    def feature_types(self) -> list[str]:
        """Feature type names of the first per-image request, in the order sent."""
        return [_type_name(f.get("type")) for f in self.body["requests"][0].get("features", [])]

    @property
    def max_results(self) -> dict[str, int]:
        """`maxResults` per feature type name of the first per-image request."""
        return {_type_name(f.get("type")): int(f.get("maxResults", 0))
                for f in self.body["requests"][0].get("features", [])}


@dataclass
class _Failure:
    kind: str  # "http" or "image"
    status: int
    status_name: str
    message: str
    remaining: int


@dataclass
class _State:
    requests: list[RecordedRequest] = field(default_factory=list)
    failures: list[_Failure] = field(default_factory=list)
    answers: dict[str, dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(DEFAULT_ANSWERS))
    delay: float = 0.0


def _type_name(value: Any) -> str:
    if isinstance(value, int):
        return FEATURE_TYPE_NAMES.get(value, str(value))
    return str(value or "TYPE_UNSPECIFIED")


class FakeVision:
    """The fake server. Start it with `with FakeVision() as fake:` or `start()`/`stop()`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._state = _State()
        self._server = LoopbackHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        """Base URL to give as `IMGKIT_GOOGLE_VISION_ENDPOINT` (`http://127.0.0.1:PORT`)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeVision:
        if self._thread is None:
            # A short poll interval: stop() (server.shutdown) waits for one poll.
            self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                            name="fake-vision", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakeVision:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what it received ----------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, oldest first (a copy)."""
        with self._lock:
            return list(self._state.requests)

    @property
    def calls(self) -> int:
        """How many `images:annotate` requests arrived (failed ones included)."""
        with self._lock:
            return sum(1 for r in self._state.requests if r.path == ANNOTATE_PATH)

    # --- how it answers -------------------------------------------------------------
    def set_answer(self, feature_type: str, fragment: dict[str, Any]) -> None:
        """Answer `feature_type` (e.g. "LABEL_DETECTION") with this response fragment from now on."""
        with self._lock:
            self._state.answers[feature_type] = copy.deepcopy(fragment)

    def fail_with(self, http_status: int, message: str, *, status: str | None = None,
                  times: int = 1) -> None:
        """Answer the next `times` calls with an HTTP error in Google's format,
        e.g. `fail_with(429, "Quota exceeded")` → RESOURCE_EXHAUSTED."""
        name = status or _HTTP_STATUS_NAMES.get(http_status, "UNKNOWN")
        with self._lock:
            self._state.failures.append(_Failure("http", http_status, name, message, times))

    def fail_image_with(self, rpc_code: int, message: str, *, times: int = 1) -> None:
        """Answer the next `times` calls with 200 and a per-image `error` (a google.rpc.Status),
        e.g. `fail_image_with(3, "Bad image data.")`."""
        with self._lock:
            self._state.failures.append(_Failure("image", rpc_code, "", message, times))

    def delay_answers(self, seconds: float) -> None:
        """Wait this long before answering each request (to test client timeouts)."""
        with self._lock:
            self._state.delay = seconds

    def reset(self) -> None:
        """Forget requests, failures, delays and custom answers."""
        with self._lock:
            self._state = _State()

    # --- protocol ---------------------------------------------------------------------
    def _next_failure(self) -> _Failure | None:
        with self._lock:
            while self._state.failures:
                failure = self._state.failures[0]
                if failure.remaining <= 0:
                    self._state.failures.pop(0)
                    continue
                failure.remaining -= 1
                return failure
            return None

    def _answer_one(self, request: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = {}
        with self._lock:
            answers = copy.deepcopy(self._state.answers)
        for feature in request.get("features", []):
            name = _type_name(feature.get("type"))
            fragment = copy.deepcopy(answers.get(name, {}))
            limit = int(feature.get("maxResults") or 0)
            for key in _LISTS_LIMITED_BY_MAX_RESULTS:
                if limit and key in fragment:
                    fragment[key] = fragment[key][:limit]
            answer.update(fragment)
        return answer

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_unparsable": raw.decode("utf-8", "replace")}
                with fake._lock:
                    fake._state.requests.append(RecordedRequest(
                        "POST", url.path, url.query, {k.lower(): v for k, v in self.headers.items()}, body))
                    delay = fake._state.delay
                if delay:
                    time.sleep(delay)
                if url.path != ANNOTATE_PATH:
                    self._error(404, "NOT_FOUND", f"The requested URL {url.path} was not found.")
                    return
                if "_unparsable" in body or not isinstance(body.get("requests"), list):
                    self._error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
                    return
                failure = fake._next_failure()
                if failure is not None and failure.kind == "http":
                    self._error(failure.status, failure.status_name, failure.message)
                    return
                responses = []
                for request in body["requests"]:
                    if failure is not None:
                        responses.append({"error": {"code": failure.status, "message": failure.message}})
                    else:
                        responses.append(fake._answer_one(request))
                self._send(200, {"responses": responses})

            def do_GET(self) -> None:
                with fake._lock:
                    fake._state.requests.append(RecordedRequest(
                        "GET", urlsplit(self.path).path, urlsplit(self.path).query,
                        {k.lower(): v for k, v in self.headers.items()}, {}))
                self._error(404, "NOT_FOUND", "Only POST /v1/images:annotate is served.")

            def _error(self, status: int, name: str, message: str) -> None:
                details = []
                if status == 429:
                    details.append({"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                    "reason": "RATE_LIMIT_EXCEEDED", "domain": "googleapis.com",
                                    "metadata": {"service": "vision.googleapis.com"}})
                self._send(status, {"error": {"code": status, "message": message, "status": name,
                                              "details": details}})

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                # The client may have given up (a timeout test): then there is nobody to answer.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

        return Handler


def running_fake_vision() -> Iterator[FakeVision]:
    """Generator for a pytest fixture: `fake_vision = pytest.fixture(running_fake_vision)`."""
    with FakeVision() as fake:
        yield fake
