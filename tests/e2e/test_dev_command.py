"""`imgkit dev` as a user runs it: a real subprocess, a fresh data directory, restarts, a crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO
from tests.support.app_server import free_port
from tests.support.http_server import HTTPTestServer
from tests.support.images import jpeg


class DevProcess:
    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        env = {**os.environ, "IMGKIT_FETCH_ALLOW_PRIVATE": "true", "IMGKIT_LOG_FORMAT": "json"}
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "imgkit.cli", "dev", "--port", str(port), "--data-dir", str(data_dir)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.ready_after = self._wait_ready()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_ready(self, timeout: float = 60.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"imgkit dev exited with {self.proc.returncode}:\n"
                                     f"{self.proc.stdout.read() if self.proc.stdout else ''}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return time.monotonic() - self.started_at
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.proc.kill()
        raise AssertionError("imgkit dev did not answer /healthz within 60 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)

    def credentials(self) -> dict[str, str]:
        return dict(json.loads((self.data_dir / "dev-account.json").read_text()))


@pytest.fixture()
def web() -> Iterator[HTTPTestServer]:
    with HTTPTestServer() as server:
        yield server


def wait_status(api: httpx.Client, image_id: str, status: str, timeout: float = 60.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        image = api.get(f"/images/{image_id}").json()
        if image["status"] == status:
            return dict(image)
        time.sleep(0.2)
    raise AssertionError(f"image {image_id} never reached {status}: {image}")


def test_fresh_start_then_restart_keeps_account_and_images(tmp_path: Path, web: HTTPTestServer) -> None:
    data_dir = tmp_path / "fresh"
    web.image("/a.jpg", jpeg(200, 100), content_type="image/jpeg")
    first = DevProcess(data_dir, free_port())
    print(f"imgkit dev answered /healthz {first.ready_after:.1f} s after start (fresh data dir)")
    try:
        creds = first.credentials()
        assert creds["account_id"].startswith("acc_") and creds["api_key"] and creds["signing_secret"]
        with httpx.Client(base_url=first.url, headers={"Authorization": f"Bearer {creds['api_key']}"}) as api:
            image_id = api.post("/images", json={"url": web.url("/a.jpg")}).json()["id"]
            wait_status(api, image_id, "completed")
    finally:
        first.stop()

    second = DevProcess(data_dir, free_port())
    try:
        assert second.credentials() == creds, "a restart must reuse the development account"
        with httpx.Client(base_url=second.url, headers={"Authorization": f"Bearer {creds['api_key']}"}) as api:
            image = api.get(f"/images/{image_id}").json()
            assert image["status"] == "completed" and image["width"] == 200
    finally:
        second.stop()


def test_images_pending_at_a_crash_are_processed_after_restart(tmp_path: Path, web: HTTPTestServer) -> None:
    data_dir = tmp_path / "crash"
    web.image("/slow.jpg", jpeg(120, 90), content_type="image/jpeg", delay=3.0)
    dev = DevProcess(data_dir, free_port())
    creds = dev.credentials()
    headers = {"Authorization": f"Bearer {creds['api_key']}"}
    with httpx.Client(base_url=dev.url, headers=headers) as api:
        image_id = api.post("/images", json={"url": web.url("/slow.jpg")}).json()["id"]
    time.sleep(0.5)  # the download is in flight
    dev.stop(signal.SIGKILL)

    web.image("/slow.jpg", jpeg(120, 90), content_type="image/jpeg")  # answers at once now
    restarted = DevProcess(data_dir, free_port())
    try:
        with httpx.Client(base_url=restarted.url, headers=headers) as api:
            image = wait_status(api, image_id, "completed")
            assert image["width"] == 120
    finally:
        restarted.stop()
