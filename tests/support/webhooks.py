"""A real webhook receiver on 127.0.0.1 that verifies Standard Webhooks signatures.

It answers with the statuses it is told to (e.g. 500 first, to exercise retries)
and keeps every delivery with its verification outcome.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support.http_server import LoopbackHTTPServer


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    status: int  # what we answered
    verified: bool
    received_at: float = field(default_factory=time.monotonic)  # when it came in

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class WebhookReceiver:
    secrets: dict[str, str] = field(default_factory=dict)  # path → signing secret
    fail_first: dict[str, int] = field(default_factory=dict)  # path → how many 500s first
    deliveries: dict[str, list[Delivery]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: LoopbackHTTPServer | None = None

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                path = self.path
                verified = False
                secret = receiver.secrets.get(path)
                if secret:
                    try:
                        Webhook(secret).verify(body, headers)
                        verified = True
                    except WebhookVerificationError:
                        verified = False
                with receiver._lock:
                    seen = receiver.deliveries.setdefault(path, [])
                    status = 500 if len(seen) < receiver.fail_first.get(path, 0) else 204
                    seen.append(Delivery(headers, body, status, verified))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = LoopbackHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def url(self, path: str) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def wait_for(self, path: str, predicate: Any, timeout: float = 60.0) -> list[Delivery]:
        """Wait until the deliveries to `path` satisfy `predicate`; fail with what arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                got = list(self.deliveries.get(path, []))
            if predicate(got):
                return got
            time.sleep(0.05)
        raise AssertionError(f"webhooks to {path} never matched; got "
                             f"{[(d.status, d.body[:200]) for d in got]}")
