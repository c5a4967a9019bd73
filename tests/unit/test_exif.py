"""EXIF comes out with ExifTool's names and printed values, and never breaks on real files.

The contract is ExifTool 12.57's `-j` output (shared/corpus/cameras.exiftool.json).
Which names ExifTool prints in the EXIF groups of each file was recorded once with
`exiftool -j -G1` in data/cameras_exif_groups.json, so these tests do not run
exiftool to know what to compare. The seed test writes a JPEG with exiftool.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from imaging.exif import read_exif
from imaging.exif_tags import EXIF_TAGS, GPS_TAGS, json_value

GROUPS = ("IFD0", "ExifIFD", "GPS", "IFD1", "InteropIFD")
GROUPS_FILE = Path(__file__).parent / "data" / "cameras_exif_groups.json"

# Where our value differs from cameras.exiftool.json on purpose, and what we give instead.
# Only these pairs may differ; each is still checked against the stated value.
KNOWN_DEVIATIONS: dict[tuple[str, str], tuple[Any, str]] = {
    # ExifTool's flat output shows the maker-note tag of the same name, which overrides the
    # EXIF one; maker notes are skipped, so we give the EXIF group's value (what
    # `exiftool -G1` prints for the EXIF group).
    ("Canon_EOS_REBEL_T3i.jpg", "MeteringMode"): ("Multi-segment", "Canon maker note: Evaluative"),
    ("Casio_EX-S1.jpg", "WhiteBalance"): ("Auto", "Casio maker note: Flash"),
    ("Nikon_D1X.jpg", "LightSource"): ("Flash", "Nikon maker note: Speedlight"),
    ("Nikon_D1X.jpg", "WhiteBalance"): ("Manual", "Nikon maker note: Flash"),
    ("Reconyx_HF2_Pro_Covert.jpg", "Flash"): ("Auto, Did not fire", "Reconyx maker note: Off"),
    ("FLIR_Vue_Pro_640.jpg", "GPSLongitudeRef"): ("West", "FLIR maker note: East"),
    # IFD1 ImageWidth/ImageHeight/BitsPerSample describe the uncompressed thumbnail; in
    # ExifTool's flat output these names hold the main image's values (File group), so
    # the thumbnail's would mislead: we leave them out (None = absent).
    **{
        (name, tag): (None, "IFD1 thumbnail value shadowed by the File group")
        for name in ("FujiFilm_DS-7_(1).jpg", "FujiFilm_DS-7_(2).jpg", "FujiFilm_DS-7_(3).jpg",
                     "Kodak_DC210.jpg", "Minolta_DiMAGE_EX.jpg")
        for tag in ("ImageWidth", "ImageHeight", "BitsPerSample")
    },
}


@pytest.fixture(scope="module")
def expected(corpus_dir: Path) -> dict[str, dict[str, Any]]:
    return json.loads((corpus_dir / "cameras.exiftool.json").read_text())


@pytest.fixture(scope="module")
def group_names() -> dict[str, dict[str, list[str]]]:
    files: dict[str, dict[str, list[str]]] = json.loads(GROUPS_FILE.read_text())["files"]
    return files


@pytest.fixture(scope="module")
def results(corpus_dir: Path) -> dict[str, Any]:
    photos = sorted((corpus_dir / "cameras").iterdir())
    assert len(photos) == 48, "the corpus should hold 48 camera files"
    return {p.name: read_exif(p.read_bytes()) for p in photos}


def _same(got: Any, want: Any) -> bool:
    """Equal values of the same JSON kind (a number is not its string)."""
    if isinstance(want, str) or isinstance(got, str):
        return isinstance(got, str) and isinstance(want, str) and got == want
    return bool(got == want)


def test_every_exiftool_tag_of_the_exif_groups_matches(
    results: dict[str, Any], expected: dict[str, dict[str, Any]],
    group_names: dict[str, dict[str, list[str]]],
) -> None:
    assert set(group_names) == set(results)
    compared: dict[str, int] = dict.fromkeys(GROUPS, 0)
    matched: dict[str, int] = dict.fromkeys(GROUPS, 0)
    failures = []
    used = set()
    for name, groups in group_names.items():
        tags = results[name].tags if results[name] is not None else {}
        for group, tag_names in groups.items():
            for tag in tag_names:
                compared[group] += 1
                got = tags.get(tag)
                if (name, tag) in KNOWN_DEVIATIONS:
                    used.add((name, tag))
                    want = KNOWN_DEVIATIONS[(name, tag)][0]
                    if want is None and tag not in tags:
                        continue
                    if want is None or not _same(got, want):
                        failures.append(f"{name} {group}:{tag}: want deviation value {want!r}, got {got!r}")
                    continue
                want = expected[name].get(tag)
                if _same(got, want):
                    matched[group] += 1
                else:
                    failures.append(f"{name} {group}:{tag}: ExifTool {want!r}, we {got!r}")
    assert not failures, "\n".join(failures)
    assert used == set(KNOWN_DEVIATIONS), f"stale deviations: {set(KNOWN_DEVIATIONS) - used}"
    total_compared, total_matched = sum(compared.values()), sum(matched.values())
    assert total_matched == total_compared - len(KNOWN_DEVIATIONS)
    print(f"coverage: {total_matched}/{total_compared}",
          {g: f"{matched[g]}/{compared[g]}" for g in GROUPS})


def test_composite_gps_tags_match_exiftool(results: dict[str, Any],
                                           expected: dict[str, dict[str, Any]]) -> None:
    """GPSPosition and GPSDateTime are Composite tags; ours must equal ExifTool's when EXIF has GPS."""
    checked = 0
    for name, result in results.items():
        if result is None or "GPSLatitudeRef" not in result.tags:
            continue
        for tag in ("GPSPosition", "GPSDateTime"):
            if tag in expected[name] or tag in result.tags:
                assert result.tags.get(tag) == expected[name].get(tag), (name, tag)
                checked += 1
    assert checked >= 5


def test_no_tag_outside_the_tables(results: dict[str, Any]) -> None:
    known = {d.name for d in (*EXIF_TAGS.values(), *GPS_TAGS.values())}
    known |= {"ThumbnailImage", "GPSPosition", "GPSDateTime"}
    for result in results.values():
        if result is not None:
            assert set(result.tags) <= known


def test_machine_fields(results: dict[str, Any]) -> None:
    iphone = results["Apple_iPhone_4.jpg"]
    assert (iphone.make, iphone.model, iphone.iso, iphone.f_number) == ("Apple", "iPhone 4", 500, 2.8)
    assert iphone.exposure_time == pytest.approx(1 / 15)
    assert iphone.focal_length == pytest.approx(3.85)
    assert iphone.taken_at == datetime(2011, 1, 13, 14, 33, 39)
    assert iphone.gps_latitude == pytest.approx(41.853)
    assert iphone.gps_longitude == pytest.approx(12.4888333, abs=1e-6)
    assert iphone.orientation == 1

    htc = results["HTC_Desire.jpg"]
    assert htc.gps_altitude == pytest.approx(217.0)
    assert htc.gps_latitude == pytest.approx(45.5006667, abs=1e-6)

    nikon = results["Nikon_D5000.jpg"]  # latitude/longitude are 0/0 rationals: unknown
    assert nikon.gps_latitude is None and nikon.gps_longitude is None
    assert nikon.gps_altitude == pytest.approx(324.145)

    assert results["Samsung_GT-I9000_(Galaxy_S).jpg"].orientation == 6
    assert results["Sanyo_S1.JPG"].taken_at is None  # all dates are 0000:00:00 00:00:00
    flir = results["FLIR_Vue_Pro_640.jpg"]  # "South"/"West" of zero is still zero
    assert str(flir.gps_latitude) == "0.0" and str(flir.gps_longitude) == "0.0"


def test_reading_is_fast(corpus_dir: Path) -> None:
    blobs = [p.read_bytes() for p in sorted((corpus_dir / "cameras").iterdir())]
    start = time.perf_counter()
    for blob in blobs:
        read_exif(blob)
    per_file = (time.perf_counter() - start) / len(blobs)
    assert per_file < 0.02, f"{per_file * 1000:.1f} ms per file"


# --------------------------------------------------------------------------------------
# Broken and EXIF-less input
# --------------------------------------------------------------------------------------


def _plain_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(out, "JPEG")
    return out.getvalue()


@pytest.mark.parametrize(
    "data", [b"", b"\xff\xd8", b"not an image", b"II*\0" + b"\xff" * 4, b"MM\0*\0\0\0\x08"])
def test_no_exif_gives_none(data: bytes) -> None:
    assert read_exif(data) is None


def test_jpeg_without_exif_gives_none() -> None:
    assert read_exif(_plain_jpeg()) is None


def test_exif_in_png_and_webp() -> None:
    exif = Image.Exif()
    exif[0x010F] = "Maker"
    exif[0x0112] = 3
    for fmt in ("PNG", "WEBP"):
        out = io.BytesIO()
        Image.new("RGB", (8, 8)).save(out, fmt, exif=exif.tobytes())
        result = read_exif(out.getvalue())
        assert result is not None, fmt
        assert result.tags["Make"] == "Maker" and result.tags["Orientation"] == "Rotate 180"
        assert result.orientation == 3


def test_truncated_and_corrupted_files_never_raise(corpus_dir: Path) -> None:
    """Cut every file inside its EXIF block and flip bytes in it: what remains is still read."""
    for path in sorted((corpus_dir / "cameras").iterdir()):
        blob = path.read_bytes()
        for cut in (12, 40, 200, 1000, 5000):
            read_exif(blob[:cut])
        for step in (7, 13, 61):
            broken = bytearray(blob[:20000])
            for i in range(12, len(broken), step * 17):
                broken[i] ^= 0xFF
            read_exif(bytes(broken))


def test_ifd_loop_and_bad_offsets() -> None:
    # IFD0 with one entry (Make, ASCII, 5 bytes at offset 0xFFFF, outside) and a next-IFD
    # pointer back to itself, then an ExifOffset pointing far away.
    tiff = bytearray(b"II*\0\x08\0\0\0")
    tiff += (3).to_bytes(2, "little")
    tiff += (0x010F).to_bytes(2, "little") + (2).to_bytes(2, "little") + (5).to_bytes(4, "little")
    tiff += (0xFFFF).to_bytes(4, "little")
    tiff += (0x0112).to_bytes(2, "little") + (3).to_bytes(2, "little") + (1).to_bytes(4, "little")
    tiff += (6).to_bytes(4, "little")
    tiff += (0x8769).to_bytes(2, "little") + (4).to_bytes(2, "little") + (1).to_bytes(4, "little")
    tiff += (0x7FFFFFF0).to_bytes(4, "little")
    tiff += (8).to_bytes(4, "little")  # next IFD: itself
    result = read_exif(bytes(tiff))
    assert result is not None
    assert result.tags == {"Orientation": "Rotate 90 CW"}


# --------------------------------------------------------------------------------------
# The seed example: a JPEG written by exiftool with the seed's tags reads back the same
# --------------------------------------------------------------------------------------

# How to write each seed tag where its printed value is not accepted back by exiftool,
# or where the printed value is a rounding of the stored one (write the exact rational).
SEED_WRITE_AS = {
    "LensInfo": "35 35 2.8 2.8",
    "Flash#": "16",
    "FocalPlaneXResolution#": "1675257385/1000000",
    "FocalPlaneYResolution#": "1675257385/1000000",
}
# Layout: where exiftool places the thumbnail is not the original file's layout.
SEED_LAYOUT_TAGS = {"ThumbnailOffset"}
SEED_WRITTEN_WITH_THUMBNAIL = {"ThumbnailImage", "ThumbnailLength", "Compression"}


@pytest.fixture(scope="module")
def seed_jpeg(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], bytes]:
    exiftool = shutil.which("exiftool")
    if exiftool is None:
        pytest.fail("exiftool is needed to write the seed example (apt-get install libimage-exiftool-perl)")
    seed: dict[str, Any] = json.loads((corpus_dir / "seed-exif-example.json").read_text())
    work = tmp_path_factory.mktemp("seed")
    photo, thumb = work / "seed.jpg", work / "thumb.jpg"
    Image.new("RGB", (64, 48), "blue").save(photo, "JPEG")
    out = io.BytesIO()
    Image.new("RGB", (160, 120), "green").save(out, "JPEG")
    padding = seed["ThumbnailLength"] - len(out.getvalue())
    assert padding >= 0
    thumb.write_bytes(out.getvalue() + b"\0" * padding)  # same length as the seed's thumbnail

    args = [exiftool, "-q", "-q", "-overwrite_original", f"-ThumbnailImage<={thumb}"]
    for tag, value in seed.items():
        if tag in SEED_LAYOUT_TAGS or tag in SEED_WRITTEN_WITH_THUMBNAIL:
            continue
        key = f"{tag}#" if f"{tag}#" in SEED_WRITE_AS else tag
        args.append(f"-EXIF:{key}={SEED_WRITE_AS.get(key, value)}")  # EXIF, not XMP
    args += ["-OffsetTimeOriginal=+01:00",
             "-GPSLatitude=43.467447", "-GPSLatitudeRef=N",
             "-GPSLongitude=11.885127", "-GPSLongitudeRef=W",
             "-GPSAltitude=120.56", "-GPSAltitudeRef#=1",
             "-GPSDateStamp=2016:09:10", "-GPSTimeStamp=16:31:58.5",
             "-Orientation#=8", str(photo)]
    subprocess.run(args, check=True, timeout=60)
    return seed, photo.read_bytes()


def test_seed_tags_read_back_as_printed(seed_jpeg: tuple[dict[str, Any], bytes]) -> None:
    seed, blob = seed_jpeg
    result = read_exif(blob)
    assert result is not None
    for tag, value in seed.items():
        if tag in SEED_LAYOUT_TAGS:
            assert isinstance(result.tags[tag], int)
            continue
        assert result.tags.get(tag) == value, tag
        assert type(result.tags[tag]) in ((int, float) if not isinstance(value, str) else (str,)), tag


def test_seed_gps_and_fields(seed_jpeg: tuple[dict[str, Any], bytes]) -> None:
    _seed, blob = seed_jpeg
    result = read_exif(blob)
    assert result is not None
    tags = result.tags
    assert tags["GPSLatitude"] == "43 deg 28' 2.81\" N"
    assert tags["GPSLongitude"] == "11 deg 53' 6.46\" W"
    assert tags["GPSPosition"] == "43 deg 28' 2.81\" N, 11 deg 53' 6.46\" W"
    assert tags["GPSAltitude"] == "120.5 m Below Sea Level"
    assert tags["GPSAltitudeRef"] == "Below Sea Level"
    assert tags["GPSTimeStamp"] == "16:31:58.5"
    assert tags["GPSDateTime"] == "2016:09:10 16:31:58.5Z"
    assert tags["Orientation"] == "Rotate 270 CW"
    assert result.gps_latitude == pytest.approx(43.467447, abs=1e-6)
    assert result.gps_longitude == pytest.approx(-11.885127, abs=1e-6)
    assert result.gps_altitude == pytest.approx(-120.56)
    assert result.orientation == 8
    assert (result.make, result.model, result.lens_model) == ("SONY", "ILCE-7M2", "FE 35mm F2.8 ZA")
    assert (result.iso, result.f_number, result.focal_length) == (100, 10.0, 35.0)
    assert result.exposure_time == pytest.approx(1 / 250)
    assert result.taken_at == datetime(2016, 9, 10, 18, 31, 59, tzinfo=timezone(timedelta(hours=1)))


@pytest.mark.parametrize(("printed", "json"), [
    ("100", 100), ("10.0", 10.0), ("-0.66", -0.66), ("0230", "0230"), ("+1/3", "+1/3"),
    ("1/250", "1/250"), ("00", "00"), ("1675.257385", 1675.257385), ("4.1", 4.1),
])
def test_json_numbers_follow_exiftool(printed: str, json: Any) -> None:
    value = json_value(printed)
    assert value == json and type(value) is type(json)
