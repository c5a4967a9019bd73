"""/thumbnail and /proxy over real HTTP (uvicorn): signatures, caching headers, content types."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest

import api.render
from imgkit.settings import load_settings
from imgkit.signing import sign_url
from tests.integration._render_server import DictDeps, RenderServer
from tests.unit._render_images import decode, jpeg, marked, rgba_png, solid

PHOTO = "https://images.example/photo.jpg"
LOGO = "https://images.example/logo.jpg"  # really a PNG: /proxy must sniff, not trust the name
PAGE = "https://images.example/page.html"
ACCOUNT, SECRET = "acc_test", "s3cret"


@pytest.fixture(scope="module")
def deps(tmp_path_factory: pytest.TempPathFactory) -> DictDeps:
    deps = DictDeps(directory=tmp_path_factory.mktemp("sources"))
    deps.images.update({PHOTO: jpeg(marked(800, 600)), LOGO: rgba_png(), PAGE: b"<html><script>x</script>"})
    deps.secrets[ACCOUNT] = [SECRET]
    return deps


@pytest.fixture(scope="module")
def server(deps: DictDeps, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RenderServer]:
    settings = load_settings(data_dir=str(tmp_path_factory.mktemp("data")), max_pixels=2_000_000)
    server = RenderServer(deps, settings).start()
    yield server
    server.stop()


@pytest.fixture
def client(server: RenderServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield client


def signed(path: str, secret: str = SECRET, account: str = ACCOUNT, **params: str) -> str:
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
    return sign_url(f"{path}?{query}", account, secret)


def error_of(response: httpx.Response) -> tuple[int, str]:
    assert response.headers["cache-control"] == "no-store"
    return response.status_code, response.json()["error"]["code"]


def test_unsigned_url_is_403(client: httpx.Client) -> None:
    response = client.get("/thumbnail", params={"url": PHOTO, "w": "100", "a": ACCOUNT})
    assert error_of(response) == (403, "signature_missing")
    assert "not signed" in response.json()["error"]["message"]


def test_missing_account_is_403(client: httpx.Client) -> None:
    assert error_of(client.get("/thumbnail", params={"url": PHOTO, "s": "x"}))[0] == 403


@pytest.mark.parametrize(("name", "value"), [("w", "101"), ("url", LOGO), ("format", "png")])
def test_altered_url_is_403(client: httpx.Client, deps: DictDeps, name: str, value: str) -> None:
    url = signed("/thumbnail", url=PHOTO, w="100", format="jpeg")
    current = dict(httpx.URL(url).params)
    before = len(deps.fetched)
    altered = client.get("/thumbnail", params={**current, name: value})
    assert error_of(altered) == (403, "signature_invalid")
    assert len(deps.fetched) == before  # nothing was downloaded for a forged URL


def test_unknown_account_and_wrong_secret_are_403(client: httpx.Client) -> None:
    assert error_of(client.get(signed("/thumbnail", account="acc_nobody", url=PHOTO)))[0] == 403
    assert error_of(client.get(signed("/thumbnail", secret="guess", url=PHOTO)))[0] == 403


def test_signed_thumbnail(client: httpx.Client) -> None:
    response = client.get(signed("/thumbnail", url=PHOTO, w="200", format="jpeg"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["etag"].startswith('"') and "vary" not in response.headers
    image = decode(response.content)
    assert (image.width, image.height) == (200, 150)


def test_etag_and_304_without_rendering(client: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    url = signed("/thumbnail", url=PHOTO, w="120", h="120", format="webp")
    first = client.get(url)
    assert first.status_code == 200 and first.headers["content-type"] == "image/webp"
    etag = first.headers["etag"]
    assert client.get(url).headers["etag"] == etag  # deterministic

    renders: list[object] = []
    real = api.render.render

    async def counting(*args: object, **kwargs: object) -> object:
        renders.append(args)
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(api.render, "render", counting)
    again = client.get(url, headers={"If-None-Match": f'"other", {etag}'})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert renders == []
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    assert len(renders) == 1


def test_format_auto_varies_on_accept(client: httpx.Client) -> None:
    url = signed("/thumbnail", url=PHOTO, w="64")
    avif = client.get(url, headers={"Accept": "image/avif,image/webp,*/*"})
    webp = client.get(url, headers={"Accept": "image/webp,*/*"})
    plain = client.get(url, headers={"Accept": "*/*"})
    assert [r.headers["content-type"] for r in (avif, webp, plain)] == ["image/avif", "image/webp",
                                                                          "image/jpeg"]
    assert all(r.headers["vary"] == "Accept" for r in (avif, webp, plain))
    assert len({r.headers["etag"] for r in (avif, webp, plain)}) == 3


def test_bad_option_is_422_but_only_after_the_signature(client: httpx.Client) -> None:
    response = client.get(signed("/thumbnail", url=PHOTO, w="0"))
    assert error_of(response) == (422, "bad_request")
    assert "w must be from 1 to 8192" in response.json()["error"]["message"]
    forged = dict(httpx.URL(signed("/thumbnail", url=PHOTO, w="10")).params) | {"w": "0"}
    assert error_of(client.get("/thumbnail", params=forged))[0] == 403


def test_missing_source_and_non_image_and_too_many_pixels(client: httpx.Client, deps: DictDeps) -> None:
    assert error_of(client.get(signed("/thumbnail", url="https://images.example/gone.jpg"))) == (
        422, "fetch_failed")
    assert error_of(client.get(signed("/thumbnail", url=PAGE, w="10")))[0] == 422
    deps.images["https://images.example/huge.jpg"] = jpeg(solid(2000, 1500))  # over max_pixels=2e6
    huge = client.get(signed("/thumbnail", url="https://images.example/huge.jpg", w="10"))
    assert error_of(huge) == (422, "too_many_pixels")


def test_rotated_secret_still_verifies(client: httpx.Client, deps: DictDeps) -> None:
    deps.secrets["acc_rotating"] = ["new", "old"]
    assert client.get(signed("/thumbnail", secret="old", account="acc_rotating", url=PHOTO, w="10",
                             format="png")).status_code == 200


def test_proxy_serves_the_original_with_its_sniffed_type(client: httpx.Client, deps: DictDeps) -> None:
    url = signed("/proxy", url=LOGO)
    response = client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == deps.images[LOGO]
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert client.get(url, headers={"If-None-Match": response.headers["etag"]}).status_code == 304


def test_proxy_refuses_non_images_unsigned_and_extra_parameters(client: httpx.Client) -> None:
    assert error_of(client.get(signed("/proxy", url=PAGE))) == (422, "invalid_image")
    assert error_of(client.get("/proxy", params={"url": LOGO, "a": ACCOUNT}))[0] == 403
    assert error_of(client.get(signed("/proxy", url=LOGO, w="10")))[0] == 422


