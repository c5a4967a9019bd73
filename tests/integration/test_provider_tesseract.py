"""The `tesseract` provider with Debian's real tesseract: images with known text drawn by
Pillow in a TrueType font; OCR must find the words, with boxes where they were drawn."""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from agents.annotate.providers import ProviderError, ProviderNotConfigured, UnsupportedFeatures, get_provider
from agents.annotate.providers.tesseract import TesseractProvider
from imgkit.settings import Settings, load_settings
from schemas.annotations import Feature, TextWord

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
BOX_TOLERANCE = 12  # pixels between where a word was drawn and where OCR puts it

Box = tuple[int, int, int, int]


@pytest.fixture(scope="module")
def tesseract_path() -> Path:
    found = shutil.which("tesseract")
    if not found:
        pytest.fail("tesseract is not installed: `apt-get install tesseract-ocr` (Debian/Ubuntu)")
    return Path(found)


@pytest.fixture(scope="module")
def font() -> ImageFont.FreeTypeFont:
    if not FONT.is_file():
        pytest.fail(f"the test font {FONT} is missing: `apt-get install fonts-dejavu-core`")
    return ImageFont.truetype(str(FONT), 44)


@pytest.fixture
def settings(tmp_path: Path, tesseract_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path, tesseract_path=tesseract_path)


@pytest.fixture
def provider(settings: Settings) -> TesseractProvider:
    built = get_provider("tesseract", settings)
    assert isinstance(built, TesseractProvider)
    return built


def draw_words(img: Image.Image, font: ImageFont.FreeTypeFont,
               lines: list[tuple[tuple[int, int], list[str]]]) -> dict[str, Box]:
    """Draw each line's words one by one from its origin; return each word's ink box."""
    draw = ImageDraw.Draw(img)
    boxes: dict[str, Box] = {}
    space = int(draw.textlength(" ", font=font))
    for (x, y), words in lines:
        for word in words:
            draw.text((x, y), word, font=font, fill="black")
            left, top, right, bottom = (round(v) for v in draw.textbbox((x, y), word, font=font))
            boxes[word] = (left, top, right, bottom)
            x = right + space
    return boxes


def encode(img: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, quality=92)
    return buffer.getvalue()


def word_box(word: TextWord) -> Box:
    xs = [v.x for v in word.bounding_box]
    ys = [v.y for v in word.bounding_box]
    return min(xs), min(ys), max(xs), max(ys)


def assert_near(found: Box, drawn: Box) -> None:
    assert all(abs(a - b) <= BOX_TOLERANCE for a, b in zip(found, drawn, strict=True)), (found, drawn)


LINES = [((40, 40), ["INVOICE", "2024"]), ((40, 150), ["quick", "brown", "fox"]),
         ((420, 260), ["Paris"])]


async def test_finds_the_words_where_they_were_drawn(provider: TesseractProvider,
                                                     font: ImageFont.FreeTypeFont) -> None:
    img = Image.new("RGB", (760, 360), "white")
    drawn = draw_words(img, font, LINES)

    result = await provider.annotate(encode(img, "PNG"), {Feature.text})

    assert result.provider == "tesseract"
    assert result.features() == {Feature.text}
    text = result.text
    assert text is not None
    assert [b.text for b in text.blocks] == ["INVOICE 2024", "quick brown fox", "Paris"]
    for block in text.blocks:
        assert block.confidence is not None and 0.5 < block.confidence <= 1.0
        for word in block.words:
            assert_near(word_box(word), drawn[word.text])
    # A block's box holds its words.
    first = text.blocks[0]
    left, _top, right, _bottom = word_box(TextWord(text="", bounding_box=first.bounding_box))
    assert left <= drawn["INVOICE"][0] + BOX_TOLERANCE and right >= drawn["2024"][2] - BOX_TOLERANCE
    assert "INVOICE 2024" in text.full_text and "quick brown fox" in text.full_text
    assert text.full_text.index("INVOICE") < text.full_text.index("quick") < text.full_text.index("Paris")
    assert {w["text"] for w in result.raw["words"]} >= {"INVOICE", "2024", "quick", "Paris"}


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "TIFF"])
async def test_other_formats(provider: TesseractProvider, font: ImageFont.FreeTypeFont, fmt: str) -> None:
    img = Image.new("RGB", (520, 120), (250, 250, 240))
    drawn = draw_words(img, font, [((30, 30), ["Hello", "ImgKit"])])

    result = await provider.annotate(encode(img, fmt), {Feature.text})

    assert result.text is not None
    words = [w for b in result.text.blocks for w in b.words]
    assert [w.text for w in words] == ["Hello", "ImgKit"]
    for word in words:
        assert_near(word_box(word), drawn[word.text])


async def test_text_on_a_transparent_background(provider: TesseractProvider,
                                                font: ImageFont.FreeTypeFont) -> None:
    # Black ink on transparent black: read naively, it is black on black.
    img = Image.new("RGBA", (520, 120), (0, 0, 0, 0))
    draw_words(img, font, [((30, 30), ["Transparent", "logo"])])

    result = await provider.annotate(encode(img, "PNG"), {Feature.text})

    assert result.text is not None
    assert [b.text for b in result.text.blocks] == ["Transparent logo"]


async def test_no_text(provider: TesseractProvider) -> None:
    result = await provider.annotate(encode(Image.new("RGB", (300, 200), "white"), "PNG"), {Feature.text})

    assert result.text is not None
    assert result.text.full_text == ""
    assert result.text.blocks == []


async def test_only_text_is_offered(provider: TesseractProvider) -> None:
    with pytest.raises(UnsupportedFeatures) as info:
        await provider.annotate(b"", {Feature.text, Feature.labels})
    assert not info.value.retryable


async def test_not_an_image(provider: TesseractProvider) -> None:
    with pytest.raises(ProviderError) as info:
        await provider.annotate(b"GIF89a but not really", {Feature.text})
    assert (info.value.code, info.value.status, info.value.retryable) == ("invalid_image", 422, False)


async def test_pixel_limit(tmp_path: Path, tesseract_path: Path) -> None:
    provider = get_provider("tesseract", load_settings(data_dir=tmp_path, tesseract_path=tesseract_path,
                                                       max_pixels=10_000))

    with pytest.raises(ProviderError) as info:
        await provider.annotate(encode(Image.new("RGB", (200, 100), "white"), "PNG"), {Feature.text})
    assert info.value.code == "invalid_image" and not info.value.retryable


def test_missing_binary_is_not_configured(tmp_path: Path) -> None:
    with pytest.raises(ProviderNotConfigured) as info:
        get_provider("tesseract", load_settings(data_dir=tmp_path,
                                                tesseract_path=tmp_path / "no-such-tesseract"))
    assert "apt-get install tesseract-ocr" in info.value.message


def test_missing_language_is_not_configured(tmp_path: Path, tesseract_path: Path) -> None:
    with pytest.raises(ProviderNotConfigured) as info:
        get_provider("tesseract", load_settings(data_dir=tmp_path, tesseract_path=tesseract_path,
                                                tesseract_languages="eng+xyz"))
    assert "apt-get install tesseract-ocr-xyz" in info.value.message


def fake_tesseract(tmp_path: Path, body: str) -> Path:
    """A stand-in executable: answers --list-langs like tesseract, then runs `body`."""
    script = tmp_path / "tesseract"
    script.write_text("#!/bin/sh\n"
                      'if [ "$1" = "--list-langs" ]; then printf \'List of available languages:\\neng\\n\'; '
                      "exit 0; fi\n" + body + "\n")
    script.chmod(0o755)
    return script


async def test_time_limit_kills_the_run(tmp_path: Path) -> None:
    script = fake_tesseract(tmp_path, f"echo $$ > {tmp_path}/pid\nexec sleep 30")
    provider = get_provider("tesseract", load_settings(data_dir=tmp_path, tesseract_path=script,
                                                       vision_timeout=0.5))

    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        await provider.annotate(encode(Image.new("RGB", (50, 50), "white"), "PNG"), {Feature.text})

    assert time.monotonic() - started < 5
    assert info.value.retryable
    assert info.value.code == "annotation_timeout"
    pid = int((tmp_path / "pid").read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


async def test_failing_run_reports_tesseract_message(tmp_path: Path) -> None:
    script = fake_tesseract(tmp_path, "cat > /dev/null\n"
                                      "echo 'Error in pixReadStream: Unknown format' >&2; exit 1")
    provider = get_provider("tesseract", load_settings(data_dir=tmp_path, tesseract_path=script))

    with pytest.raises(ProviderError) as info:
        await provider.annotate(encode(Image.new("RGB", (50, 50), "white"), "PNG"), {Feature.text})

    assert not info.value.retryable
    assert "Unknown format" in info.value.message
