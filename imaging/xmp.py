"""XMP extraction: the packet's properties as a dict keyed by `prefix:Name`.

XMP is RDF/XML. Writers put simple properties either as attributes of
`rdf:Description` (Lightroom and Camera Raw write all `crs:` develop settings this
way) or as child elements, arrays as `rdf:Bag`/`rdf:Seq` (lists here), language
alternatives as `rdf:Alt` (the `x-default` item here), and structures as nested
descriptions (dicts here). Keys use the conventional prefix of each well-known
namespace whatever prefix the writer declared, so `crs:Exposure2012` is always
found under that name.

The packet is located in the JPEG APP1 XMP segment (and its Extended XMP
continuation, where Camera Raw moves large develop settings), or else by scanning
the bytes for `<x:xmpmeta`, which covers PNG iTXt, WebP, TIFF, GIF and others.

Parsing uses the standard library, after a first expat pass that refuses any DTD:
XMP never needs one, and a DOCTYPE is how entity expansion attacks (billion
laughs) and external entities get in.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from typing import Any
from xml.parsers import expat

log = logging.getLogger(__name__)

_XMP_APP1 = b"http://ns.adobe.com/xap/1.0/\0"
_EXTENDED_APP1 = b"http://ns.adobe.com/xmp/extension/\0"
_MAX_PACKET = 16 * 1024 * 1024  # a packet larger than this is not metadata

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_RDF_ABOUT_ATTRS = {f"{{{RDF}}}about", f"{{{RDF}}}ID", f"{{{RDF}}}nodeID", _XML_LANG}

# Conventional prefixes of well-known namespaces, used whatever the writer declared.
PREFIXES: dict[str, str] = {
    RDF: "rdf",
    "adobe:ns:meta/": "x",
    "http://ns.adobe.com/xap/1.0/": "xmp",
    "http://ns.adobe.com/xap/1.0/mm/": "xmpMM",
    "http://ns.adobe.com/xap/1.0/rights/": "xmpRights",
    "http://ns.adobe.com/xap/1.0/bj/": "xmpBJ",
    "http://ns.adobe.com/xap/1.0/t/pg/": "xmpTPg",
    "http://ns.adobe.com/xmp/1.0/DynamicMedia/": "xmpDM",
    "http://ns.adobe.com/xap/1.0/sType/ResourceEvent#": "stEvt",
    "http://ns.adobe.com/xap/1.0/sType/ResourceRef#": "stRef",
    "http://ns.adobe.com/xap/1.0/sType/Dimensions#": "stDim",
    "http://ns.adobe.com/xmp/sType/Area#": "stArea",
    "http://ns.adobe.com/xmp/note/": "xmpNote",
    "http://purl.org/dc/elements/1.1/": "dc",
    "http://ns.adobe.com/camera-raw-settings/1.0/": "crs",
    "http://ns.adobe.com/lightroom/1.0/": "lr",
    "http://ns.adobe.com/photoshop/1.0/": "photoshop",
    "http://ns.adobe.com/tiff/1.0/": "tiff",
    "http://ns.adobe.com/exif/1.0/": "exif",
    "http://ns.adobe.com/exif/1.0/aux/": "aux",
    "http://cipa.jp/exif/1.0/": "exifEX",
    "http://ns.adobe.com/pdf/1.3/": "pdf",
    "http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/": "Iptc4xmpCore",
    "http://iptc.org/std/Iptc4xmpExt/2008-02-29/": "Iptc4xmpExt",
    "http://ns.useplus.org/ldf/xmp/1.0/": "plus",
    "http://www.metadataworkinggroup.com/schemas/regions/": "mwg-rs",
    "http://ns.google.com/photos/1.0/panorama/": "GPano",
    "http://ns.google.com/photos/1.0/camera/": "GCamera",
    "http://ns.google.com/photos/1.0/image/": "GImage",
    "http://ns.google.com/photos/1.0/container/": "GContainer",
    "http://ns.adobe.com/hdr-gain-map/1.0/": "hdrgm",
}


class UnsafeXML(ValueError):
    """The packet declares a DTD or entities, which XMP never needs."""


def read_xmp(data: bytes) -> dict[str, Any] | None:
    """The XMP properties of an image, or None when it has no (readable, safe) packet."""
    try:
        packet, extended = _find_packets(data)
    except Exception as exc:
        log.debug("xmp: cannot locate the packet: %s", exc)
        return None
    if packet is None:
        return None
    try:
        props = parse_xmp(packet)
    except (UnsafeXML, ET.ParseError, expat.ExpatError, ValueError) as exc:
        log.debug("xmp: packet refused or unreadable: %s", exc)
        return None
    guid = props.get("xmpNote:HasExtendedXMP")
    if isinstance(guid, str) and guid in extended:
        try:
            props.update(parse_xmp(extended[guid]))
        except (UnsafeXML, ET.ParseError, expat.ExpatError, ValueError) as exc:
            log.debug("xmp: extended packet refused or unreadable: %s", exc)
    return props


def parse_xmp(packet: bytes) -> dict[str, Any]:
    """Parse one XMP packet into `{prefix:Name: value}`; raises UnsafeXML on any DTD."""
    _refuse_dtd(packet)
    builder = _NamespaceRecorder()
    parser = ET.XMLParser(target=builder)
    parser.feed(packet)
    root = parser.close()
    prefixes = {**{uri: prefix for prefix, uri in builder.declared}, **PREFIXES}
    props: dict[str, Any] = {}
    nested = _nested(root)
    for description in root.iter(f"{{{RDF}}}Description"):
        if description not in nested:
            props.update(_struct(description, prefixes))
    return props


# --------------------------------------------------------------------------------------
# Locating the packet
# --------------------------------------------------------------------------------------


def _find_packets(data: bytes) -> tuple[bytes | None, dict[str, bytes]]:
    """The main packet and the Extended XMP packets by GUID (JPEG only)."""
    if data[:2] == b"\xff\xd8":
        # XMP in a JPEG lives in APP1 segments only (XMP spec part 3), which the marker walk
        # reads; scanning the compressed image data as well cost ~10 ms of GIL per 12 MP photo.
        return _jpeg_packets(data)
    return _scan_packet(data), {}


def _jpeg_packets(data: bytes) -> tuple[bytes | None, dict[str, bytes]]:
    """Walk the JPEG markers up to the image data, collecting XMP APP1 segments."""
    main: bytes | None = None
    chunks: dict[str, dict[int, bytes]] = {}
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker in (0xDA, 0xD9):
            break
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        body = data[pos + 4:pos + 2 + length]
        if marker == 0xE1 and body.startswith(_XMP_APP1) and main is None:
            main = body[len(_XMP_APP1):]
        elif marker == 0xE1 and body.startswith(_EXTENDED_APP1):
            rest = body[len(_EXTENDED_APP1):]
            if len(rest) > 40:  # GUID (32) + full length (4) + offset (4)
                guid = rest[:32].decode("ascii", errors="replace")
                offset = int.from_bytes(rest[36:40], "big")
                chunks.setdefault(guid, {})[offset] = rest[40:]
        pos += 2 + length
    extended = {guid: b"".join(part for _, part in sorted(parts.items()))
                for guid, parts in chunks.items()}
    return main, extended


_XMPMETA = re.compile(rb"<x:xmpmeta\b.*?</x:xmpmeta\s*>", re.S)
_RDF_BLOCK = re.compile(rb"<rdf:RDF\b.*?</rdf:RDF\s*>", re.S)


def _scan_packet(data: bytes) -> bytes | None:
    """A raw scan for the packet in any container (PNG iTXt, WebP, TIFF, GIF, PDF...)."""
    for opening, pattern in ((b"<x:xmpmeta", _XMPMETA), (b"<rdf:RDF", _RDF_BLOCK)):
        start = data.find(opening)  # a plain find is memchr-fast; the regex only runs from there
        if start < 0:
            continue
        match = pattern.search(data, start)
        if match is not None:
            return match.group(0)[:_MAX_PACKET]
    return None


# --------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------


def _refuse_dtd(packet: bytes) -> None:
    """Raise UnsafeXML if the document has a DOCTYPE or declares entities.

    A plain expat pass with handlers that raise as soon as a DTD starts, so nothing
    is expanded, whatever the encoding the packet uses.
    """
    if len(packet) > _MAX_PACKET:
        raise ValueError("XMP packet too large")

    def refuse(*_args: Any) -> None:
        raise UnsafeXML("XMP packet declares a DTD or entities")

    checker = expat.ParserCreate()
    checker.StartDoctypeDeclHandler = refuse
    checker.EntityDeclHandler = refuse
    checker.ExternalEntityRefHandler = refuse  # type: ignore[assignment]
    checker.Parse(packet, True)


class _NamespaceRecorder(ET.TreeBuilder):
    """A TreeBuilder that also remembers the prefixes the document declares."""

    def __init__(self) -> None:
        super().__init__()
        self.declared: list[tuple[str, str]] = []

    def start_ns(self, prefix: str, uri: str) -> None:
        self.declared.append((prefix, uri))


def _nested(root: ET.Element) -> set[ET.Element]:
    """rdf:Description elements that are values of properties, not top-level subjects."""
    rdf = root if root.tag == f"{{{RDF}}}RDF" else root.find(f".//{{{RDF}}}RDF")
    if rdf is None:
        return set()
    top = set(rdf.findall(f"{{{RDF}}}Description"))
    return {d for d in root.iter(f"{{{RDF}}}Description") if d not in top}


def _name(tag: str, prefixes: dict[str, str]) -> str:
    """'{uri}Name' to 'prefix:Name'."""
    if not tag.startswith("{"):
        return tag
    uri, _, local = tag[1:].partition("}")
    prefix = prefixes.get(uri) or "ns"
    return f"{prefix}:{local}"


def _struct(element: ET.Element, prefixes: dict[str, str]) -> dict[str, Any]:
    """Properties of a description (or parseType="Resource" element): attributes and children."""
    props: dict[str, Any] = {}
    for key, value in element.attrib.items():
        if key in _RDF_ABOUT_ATTRS or key.startswith(f"{{{RDF}}}"):
            continue
        props[_name(key, prefixes)] = value
    for child in element:
        props[_name(child.tag, prefixes)] = _value(child, prefixes)
    return props


def _value(element: ET.Element, prefixes: dict[str, str]) -> Any:
    """The value of one property element: text, list, x-default text, or dict."""
    resource = element.get(f"{{{RDF}}}resource")
    if resource is not None:
        return resource
    if element.get(f"{{{RDF}}}parseType") == "Resource":
        return _unwrap(_struct(element, prefixes))
    children = list(element)
    if children:
        first = children[0]
        if first.tag in (f"{{{RDF}}}Bag", f"{{{RDF}}}Seq"):
            return [_value(item, prefixes) for item in first.findall(f"{{{RDF}}}li")]
        if first.tag == f"{{{RDF}}}Alt":
            items = first.findall(f"{{{RDF}}}li")
            chosen = next((i for i in items if i.get(_XML_LANG) == "x-default"),
                          items[0] if items else None)
            return "" if chosen is None else _value(chosen, prefixes)
        if first.tag == f"{{{RDF}}}Description":
            return _unwrap(_struct(first, prefixes))
        return _unwrap(_struct(element, prefixes))
    shorthand = {k: v for k, v in element.attrib.items()
                 if k not in _RDF_ABOUT_ATTRS and not k.startswith(f"{{{RDF}}}")}
    if shorthand and not (element.text or "").strip():
        return _struct(element, prefixes)
    return element.text or ""


def _unwrap(props: dict[str, Any]) -> Any:
    """A qualified simple value (rdf:value plus qualifiers) is its rdf:value."""
    return props.get("rdf:value", props)
