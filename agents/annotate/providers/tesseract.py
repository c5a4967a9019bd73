"""The `tesseract` provider: OCR on this machine with the tesseract command line.

Why the CLI and not a Python binding: Debian's `tesseract-ocr` package is all
it needs (no compiler, no wheel matching the library version), a crash or a
runaway page stays in a child process we can kill at the time limit, and
several images are recognised in parallel by separate processes.

The image is first normalised with libvips (any format ImgKit reads →
8-bit greyscale PNG, transparency flattened onto white, pixel limit enforced),
because tesseract's own reader (leptonica) knows fewer formats and would read a
transparent background as black. Coordinates are those of the image as sent.

Output is tesseract's TSV (one row per page, block, paragraph, line and word,
with boxes and confidences). Each *line* becomes a `TextBlock` (with its words
and their boxes); `full_text` is the lines in reading order, a blank line
between paragraphs.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyvips

from agents.annotate.providers.base import Provider, ProviderError, ProviderNotConfigured
from imgkit.errors import ImageError
from imgkit.settings import Settings
from schemas.annotations import Annotations, Feature, TextAnnotation, TextBlock, TextWord, Vertex

INSTALL_HINT = "install it with `apt-get install tesseract-ocr` (Debian/Ubuntu)"

_WORD, _LINE = 5, 4  # TSV `level` of a word and of a line


@dataclass(frozen=True)
class _Row:
    level: int
    page: int
    block: int
    paragraph: int
    line: int
    left: int
    top: int
    width: int
    height: int
    conf: float
    text: str

    def box(self) -> list[Vertex]:
        right, bottom = self.left + self.width, self.top + self.height
        return [Vertex(x=self.left, y=self.top), Vertex(x=right, y=self.top),
                Vertex(x=right, y=bottom), Vertex(x=self.left, y=bottom)]


class TesseractProvider(Provider):
    """OCR (`text`) with the tesseract executable."""

    name = "tesseract"
    supported = frozenset({Feature.text})

    def __init__(self, executable: Path, *, languages: str = "eng", timeout: float = 30.0,
                 max_pixels: int = 100_000_000) -> None:
        self.executable = executable
        self.languages = languages
        self.timeout = timeout
        self.max_pixels = max_pixels

    @classmethod
    def from_settings(cls, settings: Settings) -> TesseractProvider:
        """Check the executable and its language data now, so a missing package shows at startup."""
        executable = _find_executable(settings.tesseract_path)
        provider = cls(executable, languages=settings.tesseract_languages, timeout=settings.vision_timeout,
                       max_pixels=settings.max_pixels)
        provider.check_languages()
        return provider

    def check_languages(self) -> None:
        """Raise ProviderNotConfigured if a configured language has no trained data installed."""
        try:
            listed = subprocess.run([str(self.executable), "--list-langs"], capture_output=True,
                                    text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ProviderNotConfigured(f"cannot run {self.executable}: {exc}; {INSTALL_HINT}",
                                        provider=self.name) from exc
        # The first line is a header ("List of available languages in ...").
        available = {line.strip() for line in listed.stdout.splitlines()[1:] if line.strip()}
        missing = [lang for lang in self.languages.split("+") if lang and lang not in available]
        if missing:
            packages = " ".join(f"tesseract-ocr-{lang}" for lang in missing)
            raise ProviderNotConfigured(
                f"tesseract has no data for {', '.join(missing)} (installed: "
                f"{', '.join(sorted(available)) or 'none'}); install it with `apt-get install {packages}`",
                provider=self.name)

    async def annotate(self, image: bytes, features: set[Feature]) -> Annotations:
        self.check_features(features)
        try:
            png, width, height = await asyncio.to_thread(_to_grey_png, image, self.max_pixels)
        except ImageError as exc:
            raise ProviderError(exc.message, retryable=False, provider=self.name, code="invalid_image",
                                status=422, **exc.context) from exc
        tsv = await self._run(png)
        rows = list(_parse_tsv(tsv))
        return Annotations(
            provider=self.name,
            text=_to_text(rows),
            raw={"engine": "tesseract", "languages": self.languages, "width": width, "height": height,
                 "words": [{"text": r.text, "conf": r.conf, "left": r.left, "top": r.top,
                            "width": r.width, "height": r.height, "block": r.block,
                            "paragraph": r.paragraph, "line": r.line}
                           for r in rows if r.level == _WORD]},
        )

    async def _run(self, png: bytes) -> str:
        """Run tesseract on `png` (stdin → TSV on stdout) within the time limit."""
        args = [str(self.executable), "stdin", "stdout", "-l", self.languages, "--psm", "3", "tsv"]
        try:
            proc = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                # One thread per run: parallelism comes from concurrent images, and OpenMP
                # threads inside each run would oversubscribe the CPUs.
                env={**os.environ, "OMP_THREAD_LIMIT": "1"})
        except OSError as exc:  # missing, not executable
            raise ProviderError(f"cannot run tesseract ({self.executable}): {exc}; {INSTALL_HINT}",
                                retryable=False, provider=self.name, code="provider_not_configured",
                                status=503) from exc
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(png), self.timeout)
        except TimeoutError:
            await _kill(proc)
            raise ProviderError(f"tesseract did not finish within {self.timeout:g} s", retryable=True,
                                provider=self.name, code="annotation_timeout", status=504) from None
        except asyncio.CancelledError:
            await asyncio.shield(_kill(proc))
            raise
        if proc.returncode != 0:
            detail = stderr.decode("utf-8", "replace").strip().splitlines()
            raise ProviderError(f"tesseract failed (exit {proc.returncode}): "
                                f"{detail[-1] if detail else 'no message'}", retryable=False,
                                provider=self.name)
        return stdout.decode("utf-8", "replace")


def _find_executable(path: Path) -> Path:
    found = shutil.which(str(path))  # a path, or a bare name looked up on PATH
    if not found:
        raise ProviderNotConfigured(f"tesseract not found at {path}; {INSTALL_HINT}, or set "
                                    "IMGKIT_TESSERACT_PATH", provider="tesseract")
    return Path(found)


async def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.wait()


def _to_grey_png(data: bytes, max_pixels: int) -> tuple[bytes, int, int]:
    """Any readable image → 8-bit greyscale PNG on white, with its size. ImageError if unreadable."""
    try:
        img = pyvips.Image.new_from_buffer(data, "", access="sequential")
        if img.width * img.height > max_pixels:
            raise ImageError("the image has too many pixels to read its text",
                             code="image_too_large", pixels=img.width * img.height, limit=max_pixels)
        if img.hasalpha():
            img = img.flatten(background=[255] * (img.bands - 1))
        img = img.colourspace("b-w").cast("uchar")
        # Level 1: tesseract decodes it again at once, so size matters less than time.
        return img.pngsave_buffer(compression=1), img.width, img.height
    except pyvips.Error as exc:
        detail = (getattr(exc, "detail", "") or str(exc)).strip().splitlines()
        raise ImageError("the image could not be decoded for OCR", code="corrupt_image",
                         detail=detail[0][:200] if detail else "") from None


def _parse_tsv(tsv: str) -> Iterable[_Row]:
    """Rows of tesseract's TSV; malformed rows are skipped (text may hold odd characters)."""
    reader = csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE)
    for rec in reader:
        try:
            yield _Row(level=int(rec["level"]), page=int(rec["page_num"]), block=int(rec["block_num"]),
                       paragraph=int(rec["par_num"]), line=int(rec["line_num"]), left=int(rec["left"]),
                       top=int(rec["top"]), width=int(rec["width"]), height=int(rec["height"]),
                       conf=float(rec["conf"]), text=(rec.get("text") or "").strip())
        except (KeyError, TypeError, ValueError):
            continue


def _to_text(rows: list[_Row]) -> TextAnnotation:
    """Group words by line: one TextBlock per line with text; paragraphs apart by a blank line."""
    lines: dict[tuple[int, int, int, int], _Row] = {}
    words: dict[tuple[int, int, int, int], list[_Row]] = {}
    for row in rows:
        key = (row.page, row.block, row.paragraph, row.line)
        if row.level == _LINE:
            lines[key] = row
        elif row.level == _WORD and row.text and row.conf >= 0:
            words.setdefault(key, []).append(row)
    blocks: list[TextBlock] = []
    parts: list[str] = []
    previous_paragraph: tuple[int, int, int] | None = None
    for key in sorted(words):  # tesseract numbers blocks, paragraphs, lines in reading order
        line_words = words[key]
        text = " ".join(w.text for w in line_words)
        line = lines.get(key) or _union(line_words)
        confidence = sum(w.conf for w in line_words) / len(line_words) / 100.0
        blocks.append(TextBlock(
            text=text, confidence=round(confidence, 4), bounding_box=line.box(),
            words=[TextWord(text=w.text, confidence=round(w.conf / 100.0, 4), bounding_box=w.box())
                   for w in line_words]))
        paragraph = key[:3]
        if previous_paragraph is not None and paragraph != previous_paragraph:
            parts.append("")
        parts.append(text)
        previous_paragraph = paragraph
    return TextAnnotation(full_text="\n".join(parts) + ("\n" if parts else ""), blocks=blocks)


def _union(rows: list[_Row]) -> _Row:
    left = min(r.left for r in rows)
    top = min(r.top for r in rows)
    right = max(r.left + r.width for r in rows)
    bottom = max(r.top + r.height for r in rows)
    first = rows[0]
    return _Row(_LINE, first.page, first.block, first.paragraph, first.line, left, top,
                right - left, bottom - top, -1.0, "")

