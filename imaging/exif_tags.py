"""EXIF tag knowledge as data: tag id -> ExifTool name and print conversion.

Clients of ImgKit read EXIF with ExifTool's tag names and ExifTool's *printed*
values (`exiftool -j`), so this module mirrors the relevant rows of ExifTool's
`Image::ExifTool::Exif::Main` and `Image::ExifTool::GPS::Main` tables. The
tables are plain dicts: a new tag is a new row, and most rows reuse one of the
small conversions below (rational to `1/250`, focal length to `35.0 mm`,
enumerations as dicts...).

A conversion receives a `Raw` (the decoded values of one IFD entry plus its
bytes) and returns ExifTool's printed string, or None when ExifTool would not
print the tag at all. `json_value` then turns the strings that ExifTool's JSON
writer prints as numbers into numbers, so `"FNumber": 10.0` stays a number and
`"ExifVersion": "0230"` stays a string.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

# A decoded value of one component: ints for integer types, floats for rationals
# and floating-point types, or ExifTool's "inf"/"undef" for rationals with a zero
# denominator.
Scalar = int | float | str


@dataclass(frozen=True, slots=True)
class Raw:
    """One IFD entry as read from the file, before ExifTool's conversions."""

    type: int  # TIFF field type (1 BYTE, 2 ASCII, 3 SHORT, 5 RATIONAL, 7 UNDEFINED...)
    values: tuple[Scalar, ...]  # decoded components; empty for ASCII and UNDEFINED
    data: bytes  # the entry's bytes exactly as stored (byte order of the file)
    little_endian: bool = True  # byte order of the file, for fields that pack numbers in bytes

    @property
    def text(self) -> str:
        """The value as a string, cut at the first NUL like ExifTool's `string` format."""
        return decode_text(self.data.split(b"\0", 1)[0])


Conversion = Callable[[Raw], str | None]


@dataclass(frozen=True, slots=True)
class TagDef:
    """One row of a tag table: ExifTool's name and how ExifTool prints the value."""

    name: str
    conv: Conversion


ASCII, UNDEFINED = 2, 7

# --------------------------------------------------------------------------------------
# Formatting helpers shared by the conversions
# --------------------------------------------------------------------------------------


def decode_text(data: bytes) -> str:
    """Decode text like ExifTool: UTF-8, each byte that is not valid UTF-8 becomes '?'."""
    return data.decode("utf-8", errors="replace").replace("\ufffd", "?")


def rational(num: int, den: int) -> Scalar:
    """ExifTool's value of a rational: 10 significant digits, 'inf'/'undef' for x/0."""
    if den == 0:
        return "inf" if num else "undef"
    return float(format(num / den, ".10g"))


def fmt_number(value: Scalar) -> str:
    """Print one value the way Perl stringifies it (ints plain, floats like %.15g)."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return format(value, ".15g")
    return str(value)


def joined(raw: Raw) -> str:
    """Space-separated components: ExifTool's printing of a multi-value tag."""
    return " ".join(fmt_number(v) for v in raw.values)


def first_float(raw: Raw) -> float | None:
    """The first component as a float, or None for 'inf'/'undef'/missing values."""
    if not raw.values or isinstance(raw.values[0], str):
        return None
    return float(raw.values[0])


_JSON_NUMBER = re.compile(r"^-?(\d|[1-9]\d{1,14})(\.\d{1,16})?([eE][-+]?\d{1,3})?$")


def json_value(printed: str) -> str | int | float:
    """Return the printed value as `exiftool -j` writes it: a number if it looks like one.

    This is ExifTool's own test (`EscapeJSON`): `"4.1"` and `"100"` become
    numbers, `"0230"`, `"+1/3"` and `"1/250"` stay strings.
    """
    if _JSON_NUMBER.match(printed):
        if "." in printed or "e" in printed or "E" in printed:
            return float(printed)
        return int(printed)
    return printed


# --------------------------------------------------------------------------------------
# Reusable print conversions (each a `Conversion`, or a factory of one)
# --------------------------------------------------------------------------------------


def plain(raw: Raw) -> str:
    """No print conversion: text for ASCII, space-joined numbers otherwise."""
    if raw.type == ASCII:
        return raw.text
    if raw.type == UNDEFINED and not raw.values:
        return binary(raw)
    return joined(raw)


def text(raw: Raw) -> str:
    """A string tag, whatever type the camera wrote it with (some write UNDEFINED)."""
    return raw.text


def trimmed(raw: Raw) -> str:
    """Make, Model, Software, Artist: text with trailing whitespace removed (ExifTool's RawConv)."""
    return raw.text.rstrip()


def copyright_text(raw: Raw) -> str:
    """Copyright: 'photographer NUL editor NUL' becomes 'photographer\\neditor'."""
    value = raw.data
    value = re.sub(rb" *\0", b"\n", value, count=1)
    value = re.sub(rb" *\0.*", b"", value, flags=re.S)
    return decode_text(re.sub(rb"\n$", b"", value))


def undef_text(raw: Raw) -> str:
    """Version-like UNDEFINED fields (ExifVersion "0230"): bytes as text, trailing NULs dropped."""
    return decode_text(raw.data.rstrip(b"\0"))


def binary(raw: Raw) -> str:
    """What ExifTool prints for a binary block it does not decode."""
    return f"(Binary data {len(raw.data)} bytes, use -b option to extract)"


def enum(mapping: Mapping[Any, str]) -> Conversion:
    """An enumeration: known values by name, others as ExifTool's 'Unknown (v)'."""

    def conv(raw: Raw) -> str:
        key: Scalar
        if raw.type == ASCII:
            key = raw.text
        elif raw.type == UNDEFINED:  # FileSource, SceneType: one byte written as UNDEFINED
            key = raw.data[0] if raw.data else ""
        else:
            key = raw.values[0] if raw.values else ""
        if key in mapping:
            return mapping[key]
        return f"Unknown ({fmt_number(key)})"

    return conv


def enum_text(mapping: Mapping[str, str]) -> Conversion:
    """An enumeration keyed by the whole space-joined value ('2 2' -> 'YCbCr4:2:0 (2 2)')."""

    def conv(raw: Raw) -> str:
        key = plain(raw)
        return mapping.get(key, f"Unknown ({key})")

    return conv


def exposure_time(seconds: float | None, fallback: str = "") -> str:
    """ExifTool's PrintExposureTime: '1/250' below a quarter second, else '2' or '0.5'."""
    if seconds is None:
        return fallback
    if 0 < seconds < 0.25001:
        return f"1/{int(0.5 + 1 / seconds)}"
    return re.sub(r"\.0$", "", f"{seconds:.1f}")


def exposure(raw: Raw) -> str:
    """ExposureTime: a rational in seconds."""
    return exposure_time(first_float(raw), plain(raw))


def shutter_apex(raw: Raw) -> str:
    """ShutterSpeedValue: APEX Tv, printed as an exposure time."""
    tv = first_float(raw)
    if tv is None:
        return plain(raw)
    return exposure_time(2 ** (-tv) if abs(tv) < 100 else 0.0)


def aperture_apex(raw: Raw) -> str:
    """ApertureValue/MaxApertureValue: APEX Av, printed as an f-number with one decimal."""
    av = first_float(raw)
    if av is None:
        return plain(raw)
    return f"{2 ** (av / 2):.1f}"


def f_number(raw: Raw) -> str:
    """FNumber: one decimal, two below 1.0 (ExifTool's PrintFNumber)."""
    value = first_float(raw)
    if value is None or value <= 0:
        return plain(raw)
    return f"{value:.2f}" if value < 1 else f"{value:.1f}"


def focal_length(raw: Raw) -> str:
    """FocalLength: '35.0 mm'."""
    value = first_float(raw)
    return plain(raw) if value is None else f"{value:.1f} mm"


def suffix(unit: str) -> Conversion:
    """Value followed by a unit ('35 mm', '2.25 m'); 'inf'/'undef' stay bare like ExifTool."""

    def conv(raw: Raw) -> str:
        value = plain(raw)
        return value if value in ("inf", "undef") else f"{value} {unit}"

    return conv


def fraction(raw: Raw) -> str:
    """ExposureCompensation: '+1/3', '-2', '0' or '+0.7' (ExifTool's PrintFraction)."""
    value = first_float(raw)
    if value is None:
        return plain(raw)
    value *= 1.00001  # ExifTool's guard against round-off
    if not value:
        return "0"
    for mult, fmt in ((1, "{:+d}"), (2, "{:+d}/2"), (3, "{:+d}/3")):
        scaled = value * mult
        if int(scaled) / scaled > 0.999:
            return fmt.format(int(scaled))
    return _perl_g(value, 3, sign=True)


def _perl_g(value: float, digits: int, sign: bool = False) -> str:
    """C's %.Ng (and %+.Ng), which Python's format() reproduces exactly."""
    return format(value, ("+" if sign else "") + f".{digits}g")


def components(raw: Raw) -> str:
    """ComponentsConfiguration: 'Y, Cb, Cr, -'."""
    names = {0: "-", 1: "Y", 2: "Cb", 3: "Cr", 4: "R", 5: "G", 6: "B"}
    return ", ".join(names.get(b, f"Unknown ({b})") for b in raw.data)


def exif_text(raw: Raw) -> str:
    """UserComment-style text: an 8-byte character-code header, then the text.

    Mirrors ExifTool's ConvertExifText: an ASCII or NUL header cuts the text at the
    first NUL, UNICODE is UTF-16 (byte order guessed, as ExifTool does), an unknown
    header is kept as part of the text; trailing blanks are trimmed.
    """
    data = raw.data
    if len(data) < 8:  # too short for a header: ExifTool keeps the bytes, NULs print as nothing
        return decode_text(data.replace(b"\0", b""))
    head, body = data[:8], data[8:]
    if re.match(rb"(ASCII)?(\0|[\0 ]+$)", head):
        result = decode_text(body.split(b"\0", 1)[0])
    elif re.fullmatch(rb"UNICODE[\0 ]", head):
        body = body[: len(body) - len(body) % 2]
        little = body[1::2].count(0) > body[0::2].count(0)
        result = body.decode("utf-16-le" if little else "utf-16-be", errors="replace")
    elif re.fullmatch(rb"JIS[\0 ]{5}", head):
        result = body.decode("euc_jp", errors="replace")
    else:
        result = decode_text(data)
    return result.rstrip(" ")


def lens_info(raw: Raw) -> str:
    """LensInfo: '18-55mm f/3.5-5.6' ('?' for unknown parts), ExifTool's PrintLensInfo."""
    if len(raw.values) != 4:
        return plain(raw)
    parts = [("?" if isinstance(v, str) else fmt_number(v)) for v in raw.values]
    out = parts[0]
    if parts[1] not in ("0", parts[0]):
        out += f"-{parts[1]}"
    out += f"mm f/{parts[2]}"
    if parts[3] not in ("0", parts[2]):
        out += f"-{parts[3]}"
    return out


_CFA_COLOURS = ("Red", "Green", "Blue", "Cyan", "Magenta", "Yellow", "White")


def cfa_pattern(raw: Raw) -> str:
    """CFAPattern: '[Red,Green][Green,Blue]' (ExifTool's DecodeCFAPattern + PrintCFAPattern).

    Two 16-bit sizes in the file's byte order (swapped when they do not fit, as
    some cameras write them the other way), then one colour index per cell.
    """
    data = raw.data
    if len(data) < 4:
        return binary(raw)
    order: Literal["little", "big"] = "little" if raw.little_endian else "big"
    a0, a1 = int.from_bytes(data[0:2], order), int.from_bytes(data[2:4], order)
    cells = list(data[4:])
    if a0 * a1 > len(cells):
        swap: Literal["little", "big"] = "big" if raw.little_endian else "little"
        x, y = int.from_bytes(data[0:2], swap), int.from_bytes(data[2:4], swap)
        if x * y <= len(cells):
            a0, a1 = x, y
    if not a0 or not a1:
        return "<zero pattern size>"
    if a0 * a1 > len(cells):
        return "<invalid pattern size>"
    names = [_CFA_COLOURS[c] if c < len(_CFA_COLOURS) else "Unknown" for c in cells[: a0 * a1]]
    rows = [names[i:i + a1] for i in range(0, len(names), a1)]
    return "".join("[" + ",".join(row) + "]" for row in rows)


def spatial_frequency(raw: Raw) -> str:
    """SpatialFrequencyResponse: 'col=v,v,...; col=...' (ExifTool's PrintSFR).

    Falls back to the raw text when the block does not have the expected shape,
    as ExifTool does.
    """
    data = raw.data
    fallback = decode_text(data)
    if len(data) <= 4:
        return fallback
    order: Literal["little", "big"] = "little" if raw.little_endian else "big"
    n, m = int.from_bytes(data[0:2], order), int.from_bytes(data[2:4], order)
    cols = data[4:].split(b"\0", n)
    pos = len(data) - 8 * n * m
    if len(cols) != n + 1 or pos < 4:
        return fallback
    out = []
    for i in range(n):
        rows = []
        for j in range(m):
            at = pos + 8 * (i + j * n)
            num = int.from_bytes(data[at:at + 4], order)
            den = int.from_bytes(data[at + 4:at + 8], order)
            rows.append(fmt_number(rational(num, den)))
        out.append(decode_text(cols[i]) + "=" + ",".join(rows))
    return "; ".join(out)


def dms(degrees: float, ref: str = "") -> str:
    """ExifTool's ToDMS with its default CoordFormat: 43 deg 28' 2.81" [N]."""
    value = abs(degrees)
    d = int(value)
    m_full = (value - d) * 60
    m = int(m_full)
    s = (value - d - m / 60) * 3600
    if float(f"{s:.2f}") >= 60:  # carry the rounding up, as ExifTool does
        s, m = 0.0, m + 1
    if m >= 60:
        m, d = m - 60, d + 1
    out = f"{d} deg {m}' {s:.2f}\""
    return f"{out} {ref}" if ref else out


def to_degrees(values: Sequence[Scalar]) -> float | None:
    """GPS deg/min/sec rationals to decimal degrees; None if any part is inf/undef."""
    if not values or any(isinstance(v, str) for v in values):
        return None
    parts = [float(v) for v in values[:3]] + [0.0, 0.0]
    return parts[0] + (parts[1] + parts[2] / 60) / 60


def gps_coordinate(raw: Raw) -> str:
    """GPSLatitude/GPSLongitude (no reference: the Composite tag adds N/S/E/W)."""
    degrees = to_degrees(raw.values)
    return "" if degrees is None else dms(degrees)


def gps_time_value(raw: Raw) -> str:
    """GPSTimeStamp's value: h m s rationals to 'HH:MM:SS[.fff]' (ExifTool's ConvertTimeStamp)."""
    if any(isinstance(v, str) for v in raw.values) or not raw.values:
        return plain(raw)
    h, m, s = ([float(v) for v in raw.values] + [0.0, 0.0])[:3]
    total = (h * 60 + m) * 60 + s
    hh = int(total / 3600)
    total -= hh * 3600
    mm = int(total / 60)
    total -= mm * 60
    secs = f"{total:012.9f}"
    if float(secs) >= 60:
        secs = "00"
        mm += 1
        if mm >= 60:
            mm, hh = mm - 60, hh + 1
    else:
        secs = re.sub(r"\.?0+$", "", secs)
    return f"{hh:02d}:{mm:02d}:{secs}"


def gps_timestamp(raw: Raw) -> str:
    """GPSTimeStamp as printed: seconds rounded to the microsecond (ExifTool's PrintTimeStamp)."""
    value = gps_time_value(raw)
    match = re.fullmatch(r"(.*):(\d{2}\.\d+)", value)
    if not match:
        return value
    secs = int(float(match.group(2)) * 1_000_000 + 0.5) / 1_000_000
    shown = fmt_number(secs)
    return f"{match.group(1)}:{'0' if secs < 10 else ''}{shown}"


def gps_datestamp(raw: Raw) -> str:
    """GPSDateStamp: 'YYYY:MM:DD' (ExifTool turns '-' or '/' separators into ':')."""
    value = raw.text.strip()
    match = re.fullmatch(r"(\d{4})[-:/ ](\d{2})[-:/ ](\d{2})", value)
    return ":".join(match.groups()) if match else value


def dotted(raw: Raw) -> str:
    """GPSVersionID: '2.2.0.0'."""
    return ".".join(fmt_number(v) for v in raw.values)


def ucs2(raw: Raw) -> str:
    """Windows XP tags (XPTitle...): UCS-2 little-endian text."""
    data = raw.data[: len(raw.data) - len(raw.data) % 2]
    return data.decode("utf-16-le", errors="replace").split("\0", 1)[0]


# --------------------------------------------------------------------------------------
# Enumerations
# --------------------------------------------------------------------------------------

ORIENTATION = {
    1: "Horizontal (normal)",
    2: "Mirror horizontal",
    3: "Rotate 180",
    4: "Mirror vertical",
    5: "Mirror horizontal and rotate 270 CW",
    6: "Rotate 90 CW",
    7: "Mirror horizontal and rotate 90 CW",
    8: "Rotate 270 CW",
}
RESOLUTION_UNIT = {1: "None", 2: "inches", 3: "cm"}
FOCAL_PLANE_UNIT = {1: "None", 2: "inches", 3: "cm", 4: "mm", 5: "um"}
COMPRESSION = {
    1: "Uncompressed", 2: "CCITT 1D", 3: "T4/Group 3 Fax", 4: "T6/Group 4 Fax", 5: "LZW",
    6: "JPEG (old-style)", 7: "JPEG", 8: "Adobe Deflate", 9: "JBIG B&W", 10: "JBIG Color",
    99: "JPEG", 32773: "PackBits", 34712: "JPEG 2000", 34892: "Lossy JPEG", 50001: "WebP",
}
PHOTOMETRIC = {
    0: "WhiteIsZero", 1: "BlackIsZero", 2: "RGB", 3: "RGB Palette", 4: "Transparency Mask",
    5: "CMYK", 6: "YCbCr", 8: "CIELab", 9: "ICCLab", 10: "ITULab",
    32803: "Color Filter Array", 34892: "Linear Raw",
}
PLANAR = {1: "Chunky", 2: "Planar"}
YCBCR_POSITIONING = {1: "Centered", 2: "Co-sited"}
YCBCR_SUBSAMPLING = {
    "1 1": "YCbCr4:4:4 (1 1)", "2 1": "YCbCr4:2:2 (2 1)", "2 2": "YCbCr4:2:0 (2 2)",
    "4 1": "YCbCr4:1:1 (4 1)", "4 2": "YCbCr4:1:0 (4 2)", "1 2": "YCbCr4:4:0 (1 2)",
    "1 4": "YCbCr4:4:1 (1 4)", "2 4": "YCbCr4:2:1 (2 4)",
}
EXPOSURE_PROGRAM = {
    0: "Not Defined", 1: "Manual", 2: "Program AE", 3: "Aperture-priority AE",
    4: "Shutter speed priority AE", 5: "Creative (Slow speed)", 6: "Action (High speed)",
    7: "Portrait", 8: "Landscape", 9: "Bulb",
}
METERING_MODE = {
    0: "Unknown", 1: "Average", 2: "Center-weighted average", 3: "Spot", 4: "Multi-spot",
    5: "Multi-segment", 6: "Partial", 255: "Other",
}
LIGHT_SOURCE = {
    0: "Unknown", 1: "Daylight", 2: "Fluorescent", 3: "Tungsten (Incandescent)", 4: "Flash",
    9: "Fine Weather", 10: "Cloudy", 11: "Shade", 12: "Daylight Fluorescent",
    13: "Day White Fluorescent", 14: "Cool White Fluorescent", 15: "White Fluorescent",
    16: "Warm White Fluorescent", 17: "Standard Light A", 18: "Standard Light B",
    19: "Standard Light C", 20: "D55", 21: "D65", 22: "D75", 23: "D50",
    24: "ISO Studio Tungsten", 255: "Other",
}
FLASH = {
    0x00: "No Flash", 0x01: "Fired", 0x05: "Fired, Return not detected",
    0x07: "Fired, Return detected", 0x08: "On, Did not fire", 0x09: "On, Fired",
    0x0D: "On, Return not detected", 0x0F: "On, Return detected", 0x10: "Off, Did not fire",
    0x14: "Off, Did not fire, Return not detected", 0x18: "Auto, Did not fire",
    0x19: "Auto, Fired", 0x1D: "Auto, Fired, Return not detected",
    0x1F: "Auto, Fired, Return detected", 0x20: "No flash function",
    0x30: "Off, No flash function", 0x41: "Fired, Red-eye reduction",
    0x45: "Fired, Red-eye reduction, Return not detected",
    0x47: "Fired, Red-eye reduction, Return detected", 0x49: "On, Red-eye reduction",
    0x4D: "On, Red-eye reduction, Return not detected",
    0x4F: "On, Red-eye reduction, Return detected", 0x50: "Off, Red-eye reduction",
    0x58: "Auto, Did not fire, Red-eye reduction", 0x59: "Auto, Fired, Red-eye reduction",
    0x5D: "Auto, Fired, Red-eye reduction, Return not detected",
    0x5F: "Auto, Fired, Red-eye reduction, Return detected",
}
COLOR_SPACE = {1: "sRGB", 2: "Adobe RGB", 0xFFFD: "Wide Gamut RGB", 0xFFFE: "ICC Profile",
               0xFFFF: "Uncalibrated"}
SENSING_METHOD = {
    1: "Not defined", 2: "One-chip color area", 3: "Two-chip color area",
    4: "Three-chip color area", 5: "Color sequential area", 7: "Trilinear",
    8: "Color sequential linear",
}
FILE_SOURCE = {1: "Film Scanner", 2: "Reflection Print Scanner", 3: "Digital Camera"}
SCENE_TYPE = {1: "Directly photographed"}
CUSTOM_RENDERED = {0: "Normal", 1: "Custom", 2: "HDR (no original saved)",
                   3: "HDR (original saved)", 4: "Original (for HDR)", 6: "Panorama",
                   7: "Portrait HDR", 8: "Portrait"}
EXPOSURE_MODE = {0: "Auto", 1: "Manual", 2: "Auto bracket"}
WHITE_BALANCE = {0: "Auto", 1: "Manual"}
SCENE_CAPTURE_TYPE = {0: "Standard", 1: "Landscape", 2: "Portrait", 3: "Night", 4: "Other"}
GAIN_CONTROL = {0: "None", 1: "Low gain up", 2: "High gain up", 3: "Low gain down",
                4: "High gain down"}
NORMAL_LOW_HIGH = {0: "Normal", 1: "Low", 2: "High"}
SHARPNESS = {0: "Normal", 1: "Soft", 2: "Hard"}
SUBJECT_DISTANCE_RANGE = {0: "Unknown", 1: "Macro", 2: "Close", 3: "Distant"}
SENSITIVITY_TYPE = {
    0: "Unknown", 1: "Standard Output Sensitivity", 2: "Recommended Exposure Index",
    3: "ISO Speed", 4: "Standard Output Sensitivity and Recommended Exposure Index",
    5: "Standard Output Sensitivity and ISO Speed", 6: "Recommended Exposure Index and ISO Speed",
    7: "Standard Output Sensitivity, Recommended Exposure Index and ISO Speed",
}
COMPOSITE_IMAGE = {0: "Unknown", 1: "Not a Composite Image", 2: "General Composite Image",
                   3: "Composite Image Captured While Shooting"}
INTEROP_INDEX = {"R03": "R03 - DCF option file (Adobe RGB)",
                 "R98": "R98 - DCF basic file (sRGB)", "THM": "THM - DCF thumbnail file"}
SUBFILE_TYPE = {0: "Full-resolution image", 1: "Reduced-resolution image",
                2: "Single page of multi-page image"}

GPS_LATITUDE_REF = {"N": "North", "S": "South"}
GPS_LONGITUDE_REF = {"E": "East", "W": "West"}
GPS_ALTITUDE_REF = {0: "Above Sea Level", 1: "Below Sea Level"}
GPS_STATUS = {"A": "Measurement Active", "V": "Measurement Void"}
GPS_MEASURE_MODE = {"2": "2-Dimensional Measurement", "3": "3-Dimensional Measurement"}
GPS_SPEED_REF = {"K": "km/h", "M": "mph", "N": "knots"}
GPS_DIRECTION_REF = {"M": "Magnetic North", "T": "True North"}
GPS_DISTANCE_REF = {"K": "Kilometers", "M": "Miles", "N": "Nautical Miles"}
GPS_DIFFERENTIAL = {0: "No Correction", 1: "Differential Corrected"}

# --------------------------------------------------------------------------------------
# The tables. EXIF_TAGS serves IFD0, IFD1, ExifIFD and InteropIFD (one id space, as in
# ExifTool's Exif::Main); GPS_TAGS serves the GPS IFD, whose ids overlap the others.
# Pointer tags (ExifOffset, GPSInfo, InteropOffset), MakerNote and embedded blocks
# that ExifTool decodes into other groups (XMP, IPTC, ICC, Photoshop, PrintIM) have
# no row: they are not printed in these groups.
# --------------------------------------------------------------------------------------

EXIF_TAGS: dict[int, TagDef] = {
    # InteropIFD
    0x0001: TagDef("InteropIndex", enum_text(INTEROP_INDEX)),
    0x0002: TagDef("InteropVersion", undef_text),
    0x1000: TagDef("RelatedImageFileFormat", text),
    0x1001: TagDef("RelatedImageWidth", plain),
    0x1002: TagDef("RelatedImageHeight", plain),
    # IFD0 / IFD1 (TIFF)
    0x000B: TagDef("ProcessingSoftware", text),
    0x00FE: TagDef("SubfileType", enum(SUBFILE_TYPE)),
    0x0100: TagDef("ImageWidth", plain),
    0x0101: TagDef("ImageHeight", plain),
    0x0102: TagDef("BitsPerSample", plain),
    0x0103: TagDef("Compression", enum(COMPRESSION)),
    0x0106: TagDef("PhotometricInterpretation", enum(PHOTOMETRIC)),
    0x010D: TagDef("DocumentName", text),
    0x010E: TagDef("ImageDescription", text),
    0x010F: TagDef("Make", trimmed),
    0x0110: TagDef("Model", trimmed),
    0x0111: TagDef("StripOffsets", plain),
    0x0112: TagDef("Orientation", enum(ORIENTATION)),
    0x0115: TagDef("SamplesPerPixel", plain),
    0x0116: TagDef("RowsPerStrip", plain),
    0x0117: TagDef("StripByteCounts", plain),
    0x0144: TagDef("TileOffsets", plain),
    0x0145: TagDef("TileByteCounts", plain),
    0x011A: TagDef("XResolution", plain),
    0x011B: TagDef("YResolution", plain),
    0x011C: TagDef("PlanarConfiguration", enum(PLANAR)),
    0x011D: TagDef("PageName", text),
    0x0128: TagDef("ResolutionUnit", enum(RESOLUTION_UNIT)),
    0x0131: TagDef("Software", trimmed),
    0x0132: TagDef("ModifyDate", text),
    0x013B: TagDef("Artist", trimmed),
    0x013C: TagDef("HostComputer", text),
    0x013E: TagDef("WhitePoint", plain),
    0x013F: TagDef("PrimaryChromaticities", plain),
    0x0201: TagDef("ThumbnailOffset", plain),
    0x0202: TagDef("ThumbnailLength", plain),
    0x0211: TagDef("YCbCrCoefficients", plain),
    0x0212: TagDef("YCbCrSubSampling", enum_text(YCBCR_SUBSAMPLING)),
    0x0213: TagDef("YCbCrPositioning", enum(YCBCR_POSITIONING)),
    0x0214: TagDef("ReferenceBlackWhite", plain),
    0x4746: TagDef("Rating", plain),
    0x4749: TagDef("RatingPercent", plain),
    0x8298: TagDef("Copyright", copyright_text),
    # ExifIFD
    0x829A: TagDef("ExposureTime", exposure),
    0x829D: TagDef("FNumber", f_number),
    0x8822: TagDef("ExposureProgram", enum(EXPOSURE_PROGRAM)),
    0x8824: TagDef("SpectralSensitivity", text),
    0x8827: TagDef("ISO", plain),
    0x882A: TagDef("TimeZoneOffset", plain),
    0x882B: TagDef("SelfTimerMode", plain),
    0x8830: TagDef("SensitivityType", enum(SENSITIVITY_TYPE)),
    0x8831: TagDef("StandardOutputSensitivity", plain),
    0x8832: TagDef("RecommendedExposureIndex", plain),
    0x8833: TagDef("ISOSpeed", plain),
    0x8834: TagDef("ISOSpeedLatitudeyyy", plain),
    0x8835: TagDef("ISOSpeedLatitudezzz", plain),
    0x9000: TagDef("ExifVersion", undef_text),
    0x9003: TagDef("DateTimeOriginal", text),
    0x9004: TagDef("CreateDate", text),
    0x9010: TagDef("OffsetTime", text),
    0x9011: TagDef("OffsetTimeOriginal", text),
    0x9012: TagDef("OffsetTimeDigitized", text),
    0x9101: TagDef("ComponentsConfiguration", components),
    0x9102: TagDef("CompressedBitsPerPixel", plain),
    0x9201: TagDef("ShutterSpeedValue", shutter_apex),
    0x9202: TagDef("ApertureValue", aperture_apex),
    0x9203: TagDef("BrightnessValue", plain),
    0x9204: TagDef("ExposureCompensation", fraction),
    0x9205: TagDef("MaxApertureValue", aperture_apex),
    0x9206: TagDef("SubjectDistance", suffix("m")),
    0x9207: TagDef("MeteringMode", enum(METERING_MODE)),
    0x9208: TagDef("LightSource", enum(LIGHT_SOURCE)),
    0x9209: TagDef("Flash", enum(FLASH)),
    0x920A: TagDef("FocalLength", focal_length),
    0x9214: TagDef("SubjectArea", plain),
    0x9286: TagDef("UserComment", exif_text),
    0x9290: TagDef("SubSecTime", text),
    0x9291: TagDef("SubSecTimeOriginal", text),
    0x9292: TagDef("SubSecTimeDigitized", text),
    0x9400: TagDef("AmbientTemperature", plain),
    0x9401: TagDef("Humidity", plain),
    0x9402: TagDef("Pressure", plain),
    0x9403: TagDef("WaterDepth", plain),
    0x9404: TagDef("Acceleration", plain),
    0x9405: TagDef("CameraElevationAngle", plain),
    0x9C9B: TagDef("XPTitle", ucs2),
    0x9C9C: TagDef("XPComment", ucs2),
    0x9C9D: TagDef("XPAuthor", ucs2),
    0x9C9E: TagDef("XPKeywords", ucs2),
    0x9C9F: TagDef("XPSubject", ucs2),
    0xA000: TagDef("FlashpixVersion", undef_text),
    0xA001: TagDef("ColorSpace", enum(COLOR_SPACE)),
    0xA002: TagDef("ExifImageWidth", plain),
    0xA003: TagDef("ExifImageHeight", plain),
    0xA004: TagDef("RelatedSoundFile", text),
    0xA20B: TagDef("FlashEnergy", plain),
    0xA20C: TagDef("SpatialFrequencyResponse", spatial_frequency),
    0xA20E: TagDef("FocalPlaneXResolution", plain),
    0xA20F: TagDef("FocalPlaneYResolution", plain),
    0xA210: TagDef("FocalPlaneResolutionUnit", enum(FOCAL_PLANE_UNIT)),
    0xA214: TagDef("SubjectLocation", plain),
    0xA215: TagDef("ExposureIndex", plain),
    0xA217: TagDef("SensingMethod", enum(SENSING_METHOD)),
    0xA300: TagDef("FileSource", enum(FILE_SOURCE)),
    0xA301: TagDef("SceneType", enum(SCENE_TYPE)),
    0xA302: TagDef("CFAPattern", cfa_pattern),
    0xA401: TagDef("CustomRendered", enum(CUSTOM_RENDERED)),
    0xA402: TagDef("ExposureMode", enum(EXPOSURE_MODE)),
    0xA403: TagDef("WhiteBalance", enum(WHITE_BALANCE)),
    0xA404: TagDef("DigitalZoomRatio", plain),
    0xA405: TagDef("FocalLengthIn35mmFormat", suffix("mm")),
    0xA406: TagDef("SceneCaptureType", enum(SCENE_CAPTURE_TYPE)),
    0xA407: TagDef("GainControl", enum(GAIN_CONTROL)),
    0xA408: TagDef("Contrast", enum(NORMAL_LOW_HIGH)),
    0xA409: TagDef("Saturation", enum(NORMAL_LOW_HIGH)),
    0xA40A: TagDef("Sharpness", enum(SHARPNESS)),
    0xA40B: TagDef("DeviceSettingDescription", binary),
    0xA40C: TagDef("SubjectDistanceRange", enum(SUBJECT_DISTANCE_RANGE)),
    0xA420: TagDef("ImageUniqueID", text),
    0xA430: TagDef("OwnerName", text),
    0xA431: TagDef("SerialNumber", text),
    0xA432: TagDef("LensInfo", lens_info),
    0xA433: TagDef("LensMake", text),
    0xA434: TagDef("LensModel", text),
    0xA435: TagDef("LensSerialNumber", text),
    0xA460: TagDef("CompositeImage", enum(COMPOSITE_IMAGE)),
    0xA500: TagDef("Gamma", plain),
    0xEA1C: TagDef("Padding", binary),
    0xEA1D: TagDef("OffsetSchema", plain),
}

# Tags whose value is an offset: ExifTool prints them relative to the start of the
# file, not of the TIFF block, so the block's position is added before printing.
OFFSET_TAGS = frozenset({"StripOffsets", "ThumbnailOffset", "TileOffsets"})

# Names that IFD1 (the thumbnail's IFD) must not set: in ExifTool's flat output they
# describe the main image (File group), so the thumbnail's values would mislead.
NOT_FROM_IFD1 = frozenset({"ImageWidth", "ImageHeight", "BitsPerSample"})

GPS_TAGS: dict[int, TagDef] = {
    0x0000: TagDef("GPSVersionID", dotted),
    0x0001: TagDef("GPSLatitudeRef", enum(GPS_LATITUDE_REF)),
    0x0002: TagDef("GPSLatitude", gps_coordinate),
    0x0003: TagDef("GPSLongitudeRef", enum(GPS_LONGITUDE_REF)),
    0x0004: TagDef("GPSLongitude", gps_coordinate),
    0x0005: TagDef("GPSAltitudeRef", enum(GPS_ALTITUDE_REF)),
    0x0006: TagDef("GPSAltitude", suffix("m")),
    0x0007: TagDef("GPSTimeStamp", gps_timestamp),
    0x0008: TagDef("GPSSatellites", text),
    0x0009: TagDef("GPSStatus", enum(GPS_STATUS)),
    0x000A: TagDef("GPSMeasureMode", enum(GPS_MEASURE_MODE)),
    0x000B: TagDef("GPSDOP", plain),
    0x000C: TagDef("GPSSpeedRef", enum(GPS_SPEED_REF)),
    0x000D: TagDef("GPSSpeed", plain),
    0x000E: TagDef("GPSTrackRef", enum(GPS_DIRECTION_REF)),
    0x000F: TagDef("GPSTrack", plain),
    0x0010: TagDef("GPSImgDirectionRef", enum(GPS_DIRECTION_REF)),
    0x0011: TagDef("GPSImgDirection", plain),
    0x0012: TagDef("GPSMapDatum", text),
    0x0013: TagDef("GPSDestLatitudeRef", enum(GPS_LATITUDE_REF)),
    0x0014: TagDef("GPSDestLatitude", gps_coordinate),
    0x0015: TagDef("GPSDestLongitudeRef", enum(GPS_LONGITUDE_REF)),
    0x0016: TagDef("GPSDestLongitude", gps_coordinate),
    0x0017: TagDef("GPSDestBearingRef", enum(GPS_DIRECTION_REF)),
    0x0018: TagDef("GPSDestBearing", plain),
    0x0019: TagDef("GPSDestDistanceRef", enum(GPS_DISTANCE_REF)),
    0x001A: TagDef("GPSDestDistance", plain),
    0x001B: TagDef("GPSProcessingMethod", exif_text),
    0x001C: TagDef("GPSAreaInformation", exif_text),
    0x001D: TagDef("GPSDateStamp", gps_datestamp),
    0x001E: TagDef("GPSDifferential", enum(GPS_DIFFERENTIAL)),
    0x001F: TagDef("GPSHPositioningError", suffix("m")),
}
