"""EXIF extraction: ExifTool's names and printed values, plus machine-friendly fields.

`read_exif(data)` returns an `ExifData` whose `tags` are what `exiftool -j` prints
for the IFD0, ExifIFD, GPS, IFD1 and InteropIFD groups (the contract clients rely
on, see shared/corpus/README.md), together with parsed fields (`iso`, `taken_at`,
decimal GPS...) for ClickHouse columns. Maker notes are skipped: they are
vendor-specific, large, and the main source of broken offsets.

exifread walks the IFDs (it lists them, stops on loops and follows the ExifIFD,
GPS and Interop pointers). For each entry we only take where its bytes are and
decode them ourselves, because exifread's own values lose what ExifTool prints
(arrays of 1000+ items become empty, x/0 rationals become 0, text is decoded
loosely). Names and print conversions come from the tables in `exif_tags`.

Nothing here raises on a broken file: whatever can be read is returned, problems
are logged at debug level, and a file without EXIF gives None.
"""

from __future__ import annotations

import io
import logging
import math
import re
import struct
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from exifread.core.exif_header import ExifHeader
from exifread.core.find_exif import determine_type

from imaging.exif_tags import (
    EXIF_TAGS,
    GPS_TAGS,
    NOT_FROM_IFD1,
    OFFSET_TAGS,
    Raw,
    Scalar,
    binary,
    dms,
    fmt_number,
    gps_datestamp,
    gps_time_value,
    json_value,
    rational,
    to_degrees,
)

log = logging.getLogger(__name__)


class _DemoteToDebug(logging.Filter):
    """exifread warns about every broken offset it meets; for us those are expected input."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


logging.getLogger("exifread").addFilter(_DemoteToDebug())

TagValue = str | int | float

# exifread's name of each IFD -> ExifTool's group (family 1). Other IFDs (IFD2,
# SubIFDs) are not part of the contract.
_GROUPS = {
    "Image": "IFD0",
    "EXIF": "ExifIFD",
    "Interoperability": "InteropIFD",
    "GPS": "GPS",
    "Thumbnail": "IFD1",
}
# Order in which ExifTool meets the groups; a later group overrides a tag of the same
# name, except that IFD0 wins over everything (ExifTool's PRIORITY_DIR), which is why
# `XResolution` is IFD0's even when IFD1 has one too.
_GROUP_ORDER = ("IFD0", "ExifIFD", "InteropIFD", "GPS", "IFD1")

# Pointer tags (ExifOffset, GPSInfo, InteropOffset) go through exifread, which
# follows them; they have no row of their own.
_POINTERS = frozenset({0x8769, 0x8825, 0xA005})

# Bytes per component of each TIFF field type, and the struct code that decodes it.
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_STRUCT_CODES = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 11: "f", 12: "d", 13: "I"}
_RATIONAL, _SRATIONAL, _FLOAT, _DOUBLE = 5, 10, 11, 12

_EXIF_APP1 = b"Exif\0"


@dataclass(frozen=True, slots=True)
class ExifData:
    """EXIF of one image, as ExifTool prints it plus parsed fields for storage.

    `tags` maps ExifTool tag names to ExifTool's printed values (numbers where
    `exiftool -j` prints numbers). The other fields are None when the file does
    not carry the information or it cannot be parsed.
    """

    tags: dict[str, TagValue]
    make: str | None = None
    model: str | None = None
    lens_model: str | None = None
    iso: int | None = None
    f_number: float | None = None
    exposure_time: float | None = None  # seconds
    focal_length: float | None = None  # mm as recorded (not the 35 mm equivalent)
    taken_at: datetime | None = None  # timezone-aware only when EXIF records the offset
    gps_latitude: float | None = None  # decimal degrees, south negative
    gps_longitude: float | None = None  # decimal degrees, west negative
    gps_altitude: float | None = None  # metres, below sea level negative
    orientation: int | None = None  # 1-8, EXIF/TIFF orientation


@dataclass(frozen=True, slots=True)
class _Entry:
    group: str  # ExifTool group: IFD0, ExifIFD, InteropIFD, GPS or IFD1
    tag: int  # tag id within the group's table
    raw: Raw  # decoded value and bytes


def read_exif(data: bytes) -> ExifData | None:
    """Read EXIF from an image (JPEG, TIFF, PNG, WebP, HEIC...); None if it has none."""
    try:
        located = _find_tiff(data)
    except Exception as exc:
        log.debug("exif: could not locate an EXIF block: %s", exc)
        return None
    if located is None or len(located[0]) < 8:
        return None
    tiff, base = located
    entries = _read_entries(tiff)
    if not entries:
        return None
    return _build(entries, tiff, base)


# --------------------------------------------------------------------------------------
# Locating the TIFF block
# --------------------------------------------------------------------------------------


def _find_tiff(data: bytes) -> tuple[bytes, int] | None:
    """The TIFF structure that holds the EXIF IFDs, and its position in the file."""
    if data[:2] == b"\xff\xd8":
        return _find_tiff_in_jpeg(data)
    if data[:4] in (b"II*\0", b"MM\0*"):
        return data, 0
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _find_tiff_in_chunks(data, 12, b"EXIF", little=True, crc=0)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return _find_tiff_in_chunks(data, 8, b"eXIf", little=False, crc=4)
    # Other containers: exifread knows where HEIC/AVIF and JPEG XL keep it.
    offset, _endian, _fake = determine_type(io.BytesIO(data))
    return (data[offset:], offset) if 0 < offset < len(data) else None


def _find_tiff_in_jpeg(data: bytes) -> tuple[bytes, int] | None:
    """Walk the JPEG markers up to the image data; the first APP1 Exif payload and its offset."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            log.debug("exif: lost JPEG marker sync at %d", pos)
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image: no more metadata
            return None
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xE1 and data[pos + 4:pos + 9] == _EXIF_APP1:
            return data[pos + 10:pos + 2 + length], pos + 10
        pos += 2 + length
    return None


def _find_tiff_in_chunks(data: bytes, pos: int, wanted: bytes, *, little: bool,
                         crc: int) -> tuple[bytes, int] | None:
    """The EXIF chunk of a RIFF (WebP) or PNG file.

    Done here rather than by exifread because writers disagree on whether the
    chunk starts with an "Exif\\0\\0" header (exifread assumes it always does).
    """
    while pos + 8 <= len(data):
        if little:  # RIFF: fourcc, little-endian size, data padded to even
            fourcc, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        else:  # PNG: big-endian size, type, data, CRC
            size, fourcc = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        start = pos + 8
        if fourcc == wanted:
            if data[start:start + 6] == b"Exif\0\0":
                start += 6
            return data[start:pos + 8 + size], start
        pos = start + size + crc + (size & 1 if little else 0)
    return None


# --------------------------------------------------------------------------------------
# Walking the IFDs with exifread
# --------------------------------------------------------------------------------------


class _Walker(ExifHeader):
    """exifread's IFD walker, recording the entries we have rows for, in file order.

    exifread lists the IFDs (stopping on loops) and follows the ExifIFD, GPS and
    Interop pointers; every other entry is decoded by `_decode_entry` straight
    from its 12 bytes. Entries without a row in our tables (maker notes, embedded
    XMP/ICC/IPTC blocks) are never read: they can be large and are the usual
    home of broken offsets.
    """

    def __init__(self, tiff: bytes) -> None:
        super().__init__(io.BytesIO(tiff), chr(tiff[0]), 0, 0, strict=False, detailed=True)
        self.data = tiff
        self.found: list[_Entry] = []

    def _process_tag(self, ifd: int, ifd_name: str, tag_entry: Any, entry: int, tag: int,
                     tag_name: str, relative: bool, stop_tag: str) -> None:
        group = _GROUPS.get(ifd_name)
        if group is None:
            return
        if tag in _POINTERS and group != "GPS":
            super()._process_tag(ifd, ifd_name, tag_entry, entry, tag, tag_name, relative, stop_tag)
        elif tag in (GPS_TAGS if group == "GPS" else EXIF_TAGS):
            raw = _decode_entry(self.data, entry)
            if raw is not None:
                self.found.append(_Entry(group, tag, raw))

    def dump_ifd(self, ifd: int, ifd_name: str, tag_dict: Any = None, relative: int = 0,
                 stop_tag: str = "UNDEF") -> None:
        if not isinstance(ifd, int) or not 0 < ifd < len(self.data) - 2:
            log.debug("exif: %s IFD offset %r outside the EXIF block", ifd_name, ifd)
            return
        super().dump_ifd(ifd, ifd_name, tag_dict=tag_dict, relative=relative, stop_tag=stop_tag)


def _read_entries(tiff: bytes) -> list[_Entry]:
    """Every readable entry of the contract's groups, in file order."""
    if tiff[:2] not in (b"II", b"MM"):
        log.debug("exif: no TIFF byte-order mark")
        return []
    walker = _Walker(tiff)
    try:
        for index, ifd in enumerate(walker.list_ifd()[:2]):  # IFD0 and IFD1 only
            walker.dump_ifd(ifd, "Image" if index == 0 else "Thumbnail")
        exif_ifd = walker.tags.get("Image ExifOffset")
        if exif_ifd is not None and exif_ifd.values:
            walker.dump_ifd(exif_ifd.values[0], "EXIF")
    except Exception as exc:  # keep the entries read before the damage
        log.debug("exif: IFD walk stopped: %s", exc)
    return walker.found


def _decode_entry(tiff: bytes, entry: int) -> Raw | None:
    """Decode one 12-byte IFD entry; None if truncated, of unknown type or pointing outside."""
    little = tiff[:2] == b"II"
    order = "<" if little else ">"
    if entry + 12 > len(tiff):
        return None
    _tag, ftype, count = struct.unpack_from(f"{order}HHI", tiff, entry)
    size = _TYPE_SIZES.get(ftype)
    if size is None:
        log.debug("exif: entry at %d has unknown type %d", entry, ftype)
        return None
    length = size * count
    start = entry + 8 if length <= 4 else struct.unpack_from(f"{order}I", tiff, entry + 8)[0]
    if start + length > len(tiff):
        log.debug("exif: entry at %d points outside the EXIF block", entry)
        return None
    blob = tiff[start:start + length]
    values: tuple[Scalar, ...] = ()
    if ftype in (_RATIONAL, _SRATIONAL):
        ints = struct.unpack(f"{order}{count * 2}{'i' if ftype == _SRATIONAL else 'I'}", blob)
        values = tuple(rational(ints[i], ints[i + 1]) for i in range(0, len(ints), 2))
    elif ftype in _STRUCT_CODES:
        values = struct.unpack(f"{order}{count}{_STRUCT_CODES[ftype]}", blob)
        if ftype in (_FLOAT, _DOUBLE):  # as Perl prints a double: 15 significant digits
            values = tuple(float(format(v, ".15g")) for v in values)
    return Raw(type=ftype, values=values, data=blob, little_endian=little)


# --------------------------------------------------------------------------------------
# From entries to ExifTool's tags and our fields
# --------------------------------------------------------------------------------------


def _build(entries: list[_Entry], tiff: bytes, base: int) -> ExifData:
    printed: dict[str, str] = {}
    raws: dict[str, Raw] = {}
    origin: dict[str, str] = {}
    seen: set[tuple[str, int]] = set()
    ordered = sorted(entries, key=lambda e: _GROUP_ORDER.index(e.group))  # stable: file order kept
    for entry in ordered:
        if (entry.group, entry.tag) in seen:  # a duplicate in one IFD: ExifTool keeps the first
            continue
        seen.add((entry.group, entry.tag))
        tagdef = (GPS_TAGS if entry.group == "GPS" else EXIF_TAGS)[entry.tag]
        if origin.get(tagdef.name) == "IFD0" and entry.group != "IFD0":
            continue
        if entry.group == "IFD1" and tagdef.name in NOT_FROM_IFD1:
            continue
        raw = entry.raw
        if tagdef.name in OFFSET_TAGS and base:
            raw = replace(raw, values=tuple(v + base if isinstance(v, int) else v for v in raw.values))
        try:
            value = tagdef.conv(raw)
        except Exception:
            log.debug("exif: cannot print %s", tagdef.name, exc_info=True)
            continue
        if value is None:
            continue
        printed[tagdef.name] = value
        raws[tagdef.name] = raw
        origin[tagdef.name] = entry.group
    try:
        _add_thumbnail(printed, origin, raws, tiff, base)
        _add_gps_composites(printed, raws)
    except Exception:
        log.debug("exif: composite tags failed", exc_info=True)

    return ExifData(
        tags={name: json_value(value) for name, value in printed.items()},
        make=_text_field(raws.get("Make")),
        model=_text_field(raws.get("Model")),
        lens_model=_text_field(raws.get("LensModel")),
        iso=_iso(raws),
        f_number=_f_number(raws),
        exposure_time=_exposure_time(raws),
        focal_length=_positive(raws.get("FocalLength")),
        taken_at=_taken_at(raws),
        gps_latitude=_signed_degrees(raws.get("GPSLatitude"), raws.get("GPSLatitudeRef"), "S"),
        gps_longitude=_signed_degrees(raws.get("GPSLongitude"), raws.get("GPSLongitudeRef"), "W"),
        gps_altitude=_altitude(raws),
        orientation=_orientation(raws.get("Orientation")),
    )


def _add_thumbnail(printed: dict[str, str], origin: dict[str, str], raws: dict[str, Raw],
                   tiff: bytes, base: int) -> None:
    """ThumbnailImage, printed as binary when IFD1's offset and length point inside the block."""
    if origin.get("ThumbnailOffset") != "IFD1" or "ThumbnailLength" not in raws:
        return
    offset, length = _first_int(raws["ThumbnailOffset"]), _first_int(raws["ThumbnailLength"])
    if offset is None or not length:
        return
    offset -= base  # printed relative to the file, read relative to the block
    if offset < 0 or offset + length > len(tiff):
        log.debug("exif: thumbnail outside the EXIF block")
        return
    printed["ThumbnailImage"] = binary(Raw(type=7, values=(), data=tiff[offset:offset + length]))


def _add_gps_composites(printed: dict[str, str], raws: dict[str, Raw]) -> None:
    """ExifTool's Composite GPS tags, which replace the GPS group's tags of the same name.

    `exiftool -j` prints Composite:GPSLatitude ("43 deg 28' 2.81\" N", with the
    reference) rather than GPS:GPSLatitude, and likewise for longitude and
    altitude; GPSPosition and GPSDateTime exist only as Composite tags. The
    rules follow ExifTool's GPS.pm and Exif.pm Composite tables.
    """
    degrees_of: dict[str, float | None] = {}
    for name, ref_name, negative_ref, positive_ref in (
        ("GPSLatitude", "GPSLatitudeRef", "S", "N"),
        ("GPSLongitude", "GPSLongitudeRef", "W", "E"),
        ("GPSDestLatitude", "GPSDestLatitudeRef", "S", "N"),
        ("GPSDestLongitude", "GPSDestLongitudeRef", "W", "E"),
    ):
        raw, ref = raws.get(name), raws.get(ref_name)
        if raw is None:
            continue
        degrees = degrees_of[name] = to_degrees(raw.values)
        if ref is None:  # the Composite needs the reference; the GPS tag stays as printed
            continue
        if degrees is None:
            printed[name] = ""
            continue
        if ref.text.upper().startswith(negative_ref):
            degrees = -degrees
        printed[name] = dms(degrees, negative_ref if degrees < 0 else positive_ref)
    if "GPSLatitude" in printed and "GPSLongitude" in printed and (
        degrees_of.get("GPSLatitude") is not None or degrees_of.get("GPSLongitude") is not None
    ):
        printed["GPSPosition"] = f"{printed['GPSLatitude']}, {printed['GPSLongitude']}"

    altitude, ref_raw = _first_number(raws.get("GPSAltitude")), raws.get("GPSAltitudeRef")
    if altitude is not None and ref_raw is not None:
        ref_printed = printed.get("GPSAltitudeRef", "")
        if "Sea" in ref_printed:
            printed["GPSAltitude"] = f"{fmt_number(math.trunc(altitude * 10) / 10)} m {ref_printed}"
        else:
            signed = -abs(altitude) if _first_int(ref_raw) else altitude
            shown = math.trunc(signed * 10) / 10
            side = "Below" if shown < 0 else "Above"
            printed["GPSAltitude"] = f"{fmt_number(abs(shown))} m {side} Sea Level"

    if "GPSDateStamp" in raws and "GPSTimeStamp" in raws:
        date = gps_datestamp(raws["GPSDateStamp"])
        printed["GPSDateTime"] = f"{date} {gps_time_value(raws['GPSTimeStamp'])}Z"


# --------------------------------------------------------------------------------------
# Machine-friendly fields
# --------------------------------------------------------------------------------------


def _first_number(raw: Raw | None) -> float | None:
    if raw is None or not raw.values or isinstance(raw.values[0], str):
        return None
    value = float(raw.values[0])
    return value if math.isfinite(value) else None


def _first_int(raw: Raw | None) -> int | None:
    value = _first_number(raw)
    return None if value is None else int(value)


def _positive(raw: Raw | None) -> float | None:
    value = _first_number(raw)
    return value if value is not None and value > 0 else None


def _text_field(raw: Raw | None) -> str | None:
    if raw is None:
        return None
    value = raw.text.strip()
    return value or None


def _iso(raws: dict[str, Raw]) -> int | None:
    for name in ("ISO", "RecommendedExposureIndex", "StandardOutputSensitivity", "ISOSpeed"):
        value = _first_int(raws.get(name))
        if value and value > 0:
            return value
    return None


def _f_number(raws: dict[str, Raw]) -> float | None:
    value = _positive(raws.get("FNumber"))
    if value is not None:
        return value
    apex = _first_number(raws.get("ApertureValue"))
    return round(2 ** (apex / 2), 2) if apex is not None and abs(apex) < 100 else None


def _exposure_time(raws: dict[str, Raw]) -> float | None:
    value = _positive(raws.get("ExposureTime"))
    if value is not None:
        return value
    apex = _first_number(raws.get("ShutterSpeedValue"))
    return 2 ** (-apex) if apex is not None and abs(apex) < 100 else None


def _signed_degrees(raw: Raw | None, ref: Raw | None, negative_ref: str) -> float | None:
    if raw is None:
        return None
    degrees = to_degrees(raw.values)
    if degrees is None or not math.isfinite(degrees):
        return None
    if ref is not None and ref.text.upper().startswith(negative_ref):
        degrees = -degrees
    return degrees + 0.0  # no "-0.0" for a southern zero


def _altitude(raws: dict[str, Raw]) -> float | None:
    """Metres, negative below sea level; None without GPSAltitudeRef (ExifTool's rule too)."""
    ref = raws.get("GPSAltitudeRef")
    value = _first_number(raws.get("GPSAltitude"))
    if value is None or ref is None:
        return None
    return -abs(value) + 0.0 if _first_int(ref) else value


def _orientation(raw: Raw | None) -> int | None:
    value = _first_int(raw)
    return value if value is not None and 1 <= value <= 8 else None


_DATE = re.compile(r"(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET = re.compile(r"([+-])(\d{2}):(\d{2})")


def _taken_at(raws: dict[str, Raw]) -> datetime | None:
    """DateTimeOriginal, else CreateDate, else ModifyDate, each with its own offset time."""
    for name, offset_name in (
        ("DateTimeOriginal", "OffsetTimeOriginal"),
        ("CreateDate", "OffsetTimeDigitized"),
        ("ModifyDate", "OffsetTime"),
    ):
        raw = raws.get(name)
        match = _DATE.match(raw.text.strip()) if raw is not None else None
        if match is None:
            continue
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        try:
            moment = datetime(year, month, day, hour, minute, second)
        except ValueError:  # "0000:00:00 00:00:00" and other placeholders
            continue
        offset_raw = raws.get(offset_name)
        offset = _OFFSET.fullmatch(offset_raw.text.strip()) if offset_raw is not None else None
        if offset is not None:
            delta = timedelta(hours=int(offset.group(2)), minutes=int(offset.group(3)))
            if delta < timedelta(hours=24):
                moment = moment.replace(tzinfo=timezone(-delta if offset.group(1) == "-" else delta))
        return moment
    return None
