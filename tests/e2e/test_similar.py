"""Near-duplicates through the real API, in embedded mode (`imgkit dev`: index in process).

Images are generated here and served over loopback; the pipeline hashes them and the
`index` agent feeds the in-process index, which the API queries.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pyvips

from imaging.extract import extract
from imgkit.accounts import NewAccount
from imgkit.runtime import Mode, Runtime
from imgkit.settings import load_settings
from index.service import IndexService
from tests.bench.bench_similarity_quality import generated
from tests.support.app_server import AppServer, free_port
from tests.support.http_server import HTTPTestServer


def _vips(data: bytes) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(data, "")


def variants() -> dict[str, bytes]:
    original = generated(101)
    image = _vips(original)
    w, h = image.width, image.height
    return {
        "original": original,
        "resized": bytes(image.resize(0.5).jpegsave_buffer(Q=90)),
        "recompressed": bytes(image.jpegsave_buffer(Q=40)),
        "cropped": bytes(image.crop(w * 2 // 100, h * 2 // 100, w * 96 // 100, h * 96 // 100)
                         .jpegsave_buffer(Q=90)),
        "unrelated": generated(202),
    }


def phash_distance(a: bytes, b: bytes) -> int:
    pa = extract(a, exif=False, xmp=False, palette=False).phash
    pb = extract(b, exif=False, xmp=False, palette=False).phash
    return (int(pa, 16) ^ int(pb, 16)).bit_count()


@pytest.fixture()
def stack(tmp_path: Path) -> Iterator[tuple[AppServer, HTTPTestServer, NewAccount, NewAccount]]:
    web = HTTPTestServer().start()
    accounts: dict[str, NewAccount] = {}

    async def create_accounts(runtime: Runtime) -> None:
        accounts["alice"] = await runtime.accounts.create("alice")
        accounts["bob"] = await runtime.accounts.create("bob")

    settings = load_settings(data_dir=tmp_path / "data", port=free_port(), fetch_allow_private=True,
                             fetch_timeout=5.0, log_format="console", rate_limit_per_minute=1000)
    app = AppServer(settings, Mode.dev, create_accounts).start(timeout=120)
    try:
        yield app, web, accounts["alice"], accounts["bob"]
    finally:
        app.stop()
        web.stop()


def wait_until(check: Callable[[], Any], timeout: float = 60, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def completed(api: httpx.Client, image_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body: dict[str, Any] = api.get(f"/images/{image_id}").json()
        assert body["status"] != "failed", body
        return body if body["status"] == "completed" else None

    result: dict[str, Any] = wait_until(done, what=f"{image_id} to complete")
    return result


def test_near_duplicates_end_to_end(stack: tuple[AppServer, HTTPTestServer, NewAccount, NewAccount]) -> None:
    app, web, alice, bob = stack
    images = variants()
    # preconditions of the test images, measured with the production hashing
    for name in ("resized", "recompressed", "cropped"):
        assert phash_distance(images["original"], images[name]) <= 8, name
    assert phash_distance(images["original"], images["unrelated"]) > 16
    # still pending when first asked; unlike any other image, so that whenever it completes
    # it changes no answer below
    slow_image = generated(303)
    assert min(phash_distance(slow_image, data) for data in images.values()) > 16
    for name, data in images.items():
        web.image(f"/{name}.jpg", data, content_type="image/jpeg")
    web.image("/slow.jpg", slow_image, content_type="image/jpeg", delay=3.0)
    web.image("/text.jpg", b"not an image", content_type="image/jpeg")

    with app.client(alice.api_key) as api, app.client(bob.api_key) as bob_api:
        ids = {name: api.post("/images", json={"url": web.url(f"/{name}.jpg")}).json()["id"]
               for name in images}
        bob_copy = bob_api.post("/images", json={"url": web.url("/original.jpg")}).json()["id"]
        slow = api.post("/images", json={"url": web.url("/slow.jpg")}).json()["id"]
        pending = api.get(f"/images/{slow}/similar")
        assert pending.status_code == 409 and pending.json()["error"]["code"] == "image_not_completed"
        stored = {name: completed(api, image_id) for name, image_id in ids.items()}
        completed(bob_api, bob_copy)
        near = {ids["resized"], ids["recompressed"], ids["cropped"]}

        def similar_ids(image_id: str, **params: Any) -> set[str] | None:
            response = api.get(f"/images/{image_id}/similar", params=params)
            assert response.status_code == 200, response.text
            found = {m["id"] for m in response.json()}
            return found if found >= near - {image_id} else None

        wait_until(lambda: similar_ids(ids["original"]), what="the index to hold the copies")
        found = api.get(f"/images/{ids['original']}/similar").json()
        assert {m["id"] for m in found} == near, "default distance: the copies, not the unrelated image"
        assert [m["distance"] for m in found] == sorted(m["distance"] for m in found)
        by_id = {m["id"]: m for m in found}
        resized = by_id[ids["resized"]]
        assert resized["url"] == web.url("/resized.jpg")
        assert (resized["width"], resized["height"]) == (stored["resized"]["width"],
                                                         stored["resized"]["height"])
        assert resized["byte_size"] == len(images["resized"])
        assert ids["original"] not in by_id  # itself excluded
        assert api.get(f"/images/{ids['unrelated']}/similar").json() == []
        assert len(api.get(f"/images/{ids['original']}/similar", params={"limit": 1}).json()) == 1
        checked = api.get(f"/images/{ids['original']}/similar", params={"cross_check": "true"}).json()
        assert {ids["resized"], ids["recompressed"]} <= {m["id"] for m in checked} <= near

        # by hash and by URL (downloaded and hashed, not stored)
        by_hash = api.post("/similar", json={"hash": stored["original"]["phash"]})
        assert by_hash.status_code == 200, by_hash.text
        assert {m["id"] for m in by_hash.json()} == near | {ids["original"]}
        mine = next(m for m in by_hash.json() if m["id"] == ids["original"])
        assert mine == {"id": ids["original"], "distance": 0, "url": web.url("/original.jpg"),
                                     "width": stored["original"]["width"],
                                     "height": stored["original"]["height"],
                                     "byte_size": len(images["original"])}
        by_dhash = api.post("/similar", json={"hash": stored["original"]["dhash"], "kind": "dhash"}).json()
        assert ids["original"] in {m["id"] for m in by_dhash}
        before = len(api.get("/images?limit=100").json()["data"])
        by_url = api.post("/similar", json={"url": web.url("/original.jpg"), "cross_check": True})
        assert by_url.status_code == 200, by_url.text
        assert ids["original"] in {m["id"] for m in by_url.json()}
        assert ids["unrelated"] not in {m["id"] for m in by_url.json()}
        assert len(api.get("/images?limit=100").json()["data"]) == before, "a query stores nothing"

        # errors
        both = api.post("/similar", json={"hash": "0" * 16, "url": web.url("/original.jpg")})
        assert both.status_code == 422 and "exactly one" in both.json()["error"]["message"]
        bad = api.post("/similar", json={"hash": "xyz"})
        assert bad.status_code == 422 and "16 hexadecimal" in bad.json()["error"]["message"]
        far = api.post("/similar", json={"hash": "0" * 16, "max_distance": 33})
        assert far.status_code == 422
        not_image = api.post("/similar", json={"url": web.url("/text.jpg")})
        assert not_image.status_code == 422 and not_image.json()["error"]["code"] == "not_an_image"
        missing = api.post("/similar", json={"url": web.url("/nowhere.jpg")})
        assert missing.status_code == 422 and missing.json()["error"]["code"] == "fetch_http_404"
        assert api.get("/images/img_doesnotexist000000000000000/similar").status_code == 404

        # other accounts see nothing of alice's
        assert bob_api.get(f"/images/{ids['original']}/similar").status_code == 404
        theirs = bob_api.post("/similar", json={"hash": stored["original"]["phash"]}).json()
        assert [m["id"] for m in theirs] == [bob_copy]
        assert bob_api.get(f"/images/{bob_copy}/similar").json() == []

        # deletion removes from results
        assert api.delete(f"/images/{ids['resized']}").status_code == 204

        def resized_gone() -> bool:
            found = {m["id"] for m in api.get(f"/images/{ids['original']}/similar").json()}
            return ids["resized"] not in found and ids["recompressed"] in found

        wait_until(resized_gone, what="the deleted image to leave the results")
        index = app.runtime.context.index if app.runtime else None
        assert isinstance(index, IndexService)
        # The API hides a deleted image at once (storage says so); the index drops it when
        # the delete record reaches it through the bus, a moment later.
        wait_until(lambda: index.get(alice.account.id, "phash", ids["resized"]) is None,
                   what="the delete record to reach the index")
        completed(api, slow)


def test_index_is_rebuilt_from_storage_on_restart(tmp_path: Path) -> None:
    """The in-process index is not persisted: a restarted `imgkit dev` loads it from chDB."""
    web = HTTPTestServer().start()
    accounts: dict[str, NewAccount] = {}

    async def create_accounts(runtime: Runtime) -> None:
        if "alice" not in accounts:
            accounts["alice"] = await runtime.accounts.create("alice")

    images = variants()
    for name in ("original", "resized"):
        web.image(f"/{name}.jpg", images[name], content_type="image/jpeg")
    settings = load_settings(data_dir=tmp_path / "data", port=free_port(), fetch_allow_private=True,
                             log_format="console")
    try:
        app = AppServer(settings, Mode.dev, create_accounts).start(timeout=120)
        try:
            with app.client(accounts["alice"].api_key) as api:
                ids = [api.post("/images", json={"url": web.url(f"/{n}.jpg")}).json()["id"]
                       for n in ("original", "resized")]
                for image_id in ids:
                    completed(api, image_id)
        finally:
            app.stop()
        app = AppServer(settings.model_copy(update={"port": free_port()}), Mode.dev,
                        create_accounts).start(timeout=120)
        try:
            with app.client(accounts["alice"].api_key) as api:
                found = api.get(f"/images/{ids[0]}/similar").json()
                assert [m["id"] for m in found] == [ids[1]]
        finally:
            app.stop()
    finally:
        web.stop()
