"""Every camera JPEG of the shared corpus renders: real EXIF, orientations and profiles."""

from __future__ import annotations

from pathlib import Path

import pyvips

from imaging.render import parse_options, render_sync
from imgkit.settings import load_settings


def test_every_corpus_camera_image_renders(corpus_dir: Path, tmp_path: Path) -> None:
    settings = load_settings(data_dir=str(tmp_path))
    options = parse_options({"w": "160", "h": "120", "format": "jpeg"})
    photos = sorted(p for p in (corpus_dir / "cameras").iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    assert photos
    for photo in photos:
        out = render_sync(photo.read_bytes(), options, settings)
        image = pyvips.Image.new_from_buffer(out.data, "")
        assert (image.width, image.height) == (160, 120), photo.name
        assert not image.get_typeof("exif-data"), photo.name
