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
        auth = {"Authorization": f"Bearer {creds['api_key']}"}
        with httpx.Client(base_url=second.url, headers=auth) as api:
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


def imgkit(*args: str, data_dir: Path, stdin: str | None = None,
           **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imgkit.cli", *args], cwd=REPO, input=stdin,
                          env={**os.environ, "IMGKIT_DATA_DIR": str(data_dir), **env},
                          capture_output=True, text=True, timeout=120)


def test_inspect_prints_the_api_result_for_a_camera_file(corpus_dir: Path, tmp_path: Path) -> None:
    out = imgkit("inspect", str(corpus_dir / "cameras" / "Canon_EOS_7D.jpg"), "--json", data_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["status"] == "completed" and result["content_type"] == "image/jpeg"
    assert result["exif"]["Make"] == "Canon" and len(result["phash"]) == 16
    missing = imgkit("inspect", str(tmp_path / "nope.jpg"), data_dir=tmp_path)
    assert missing.returncode == 1 and "file_not_found" in missing.stdout


def test_accounts_import_and_get_against_a_running_dev_server(tmp_path: Path, web: HTTPTestServer) -> None:
    data_dir = tmp_path / "cli"
    created = imgkit("accounts", "create", "shop", "--webhook-url", "https://shop.example/hooks",
                     data_dir=data_dir)
    assert created.returncode == 0, created.stderr
    account = json.loads(created.stdout)
    assert account["account_id"].startswith("acc_") and account["api_key"].startswith("ik_")
    bad = imgkit("accounts", "create", "x", "--webhook-url", "ftp://nope", data_dir=data_dir)
    assert bad.returncode == 2 and "http or https" in bad.stderr

    web.image("/1.jpg", jpeg(100, 80), content_type="image/jpeg")
    web.image("/2.jpg", jpeg(90, 70), content_type="image/jpeg")
    dev = DevProcess(data_dir, free_port())
    try:
        env = {"IMGKIT_API_KEY": account["api_key"], "IMGKIT_PUBLIC_URL": dev.url}
        urls = f"{web.url('/1.jpg')}\n# a comment\n\n{web.url('/2.jpg')}\nftp://not-http/3.jpg\n"
        imported = imgkit("import", "-", data_dir=data_dir, stdin=urls, **env)
        assert imported.returncode == 1, "one URL was refused: exit 1"
        assert "submitted 2, failed 1" in imported.stdout
        assert "ftp://not-http/3.jpg" in imported.stderr and "http or https" in imported.stderr
        submitted = imgkit("submit", web.url("/1.jpg"), data_dir=data_dir, **env)
        image_id = json.loads(submitted.stdout.splitlines()[0])["id"]
        with httpx.Client(base_url=dev.url, headers={"Authorization": f"Bearer {account['api_key']}"}) as api:
            wait_status(api, image_id, "completed")
        got = imgkit("get", image_id, data_dir=data_dir, **env)
        assert got.returncode == 0 and json.loads(got.stdout)["width"] == 100
        unknown = imgkit("get", "img_" + "0" * 27, data_dir=data_dir, **env)
        assert unknown.returncode == 1 and "no image" in unknown.stderr
    finally:
        dev.stop()
