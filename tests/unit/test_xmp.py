"""XMP comes out as `prefix:Name` properties: attributes, elements, arrays and structures."""

from __future__ import annotations

import io
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

from imaging.xmp import parse_xmp, read_xmp

# What Lightroom Classic writes: develop settings as attributes of rdf:Description,
# arrays and structures as elements; a non-standard prefix for dc to check that keys
# use the conventional one.
LIGHTROOM_PACKET = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0-c000">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"
    xmlns:d="http://purl.org/dc/elements/1.1/"
    xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"
    xmlns:stEvt="http://ns.adobe.com/xap/1.0/sType/ResourceEvent#"
    xmp:CreatorTool="Adobe Photoshop Lightroom Classic 10.0 (Macintosh)"
    xmp:Rating="4"
    crs:Version="13.0"
    crs:ProcessVersion="11.0"
    crs:WhiteBalance="As Shot"
    crs:Exposure2012="+0.50"
    crs:Contrast2012="-12"
    crs:Highlights2012="-100"
    crs:Shadows2012="+65"
    crs:HasSettings="True">
   <d:subject>
    <rdf:Bag>
     <rdf:li>street</rdf:li>
     <rdf:li>Berlin</rdf:li>
    </rdf:Bag>
   </d:subject>
   <d:title>
    <rdf:Alt>
     <rdf:li xml:lang="de">Strasse</rdf:li>
     <rdf:li xml:lang="x-default">Street</rdf:li>
    </rdf:Alt>
   </d:title>
   <crs:ToneCurvePV2012>
    <rdf:Seq>
     <rdf:li>0, 0</rdf:li>
     <rdf:li>255, 255</rdf:li>
    </rdf:Seq>
   </crs:ToneCurvePV2012>
   <crs:Look rdf:parseType="Resource">
    <crs:Name>Adobe Color</crs:Name>
    <crs:Amount>1.000000</crs:Amount>
   </crs:Look>
   <xmpMM:History>
    <rdf:Seq>
     <rdf:li stEvt:action="saved" stEvt:when="2020-11-21T13:25:33+01:00"/>
     <rdf:li>
      <rdf:Description stEvt:action="derived">
       <stEvt:parameters>converted</stEvt:parameters>
      </rdf:Description>
     </rdf:li>
    </rdf:Seq>
   </xmpMM:History>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""


def _jpeg_with_app1(payloads: list[bytes]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(out, "JPEG")
    jpeg = out.getvalue()
    segments = b"".join(b"\xff\xe1" + (len(p) + 2).to_bytes(2, "big") + p for p in payloads)
    return jpeg[:2] + segments + jpeg[2:]


def _xmp_jpeg(packet: str) -> bytes:
    return _jpeg_with_app1([b"http://ns.adobe.com/xap/1.0/\0" + packet.encode()])


def test_lightroom_packet_in_jpeg() -> None:
    props = read_xmp(_xmp_jpeg(LIGHTROOM_PACKET))
    assert props is not None
    assert props["xmp:CreatorTool"] == "Adobe Photoshop Lightroom Classic 10.0 (Macintosh)"
    assert props["xmp:Rating"] == "4"
    crs = {k: v for k, v in props.items() if k.startswith("crs:")}
    assert crs == {
        "crs:Version": "13.0",
        "crs:ProcessVersion": "11.0",
        "crs:WhiteBalance": "As Shot",
        "crs:Exposure2012": "+0.50",
        "crs:Contrast2012": "-12",
        "crs:Highlights2012": "-100",
        "crs:Shadows2012": "+65",
        "crs:HasSettings": "True",
        "crs:ToneCurvePV2012": ["0, 0", "255, 255"],
        "crs:Look": {"crs:Name": "Adobe Color", "crs:Amount": "1.000000"},
    }
    assert props["dc:subject"] == ["street", "Berlin"]
    assert props["dc:title"] == "Street"
    assert props["xmpMM:History"] == [
        {"stEvt:action": "saved", "stEvt:when": "2020-11-21T13:25:33+01:00"},
        {"stEvt:action": "derived", "stEvt:parameters": "converted"},
    ]


def test_extended_xmp_is_merged() -> None:
    guid = "0123456789ABCDEF0123456789ABCDEF"
    main = LIGHTROOM_PACKET.replace(
        'crs:HasSettings="True"',
        f'crs:HasSettings="True" xmlns:xmpNote="http://ns.adobe.com/xmp/note/" '
        f'xmpNote:HasExtendedXMP="{guid}"')
    extended = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
                b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
                b'xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/" crs:Texture="+20" '
                b'crs:Clarity2012="+15"/></rdf:RDF></x:xmpmeta>')
    half = len(extended) // 2
    header = b"http://ns.adobe.com/xmp/extension/\0" + guid.encode() + len(extended).to_bytes(4, "big")
    parts = [header + half.to_bytes(4, "big") + extended[half:],  # out of order on purpose
             header + (0).to_bytes(4, "big") + extended[:half]]
    blob = _jpeg_with_app1([b"http://ns.adobe.com/xap/1.0/\0" + main.encode(), *parts])
    props = read_xmp(blob)
    assert props is not None
    assert props["crs:Texture"] == "+20" and props["crs:Clarity2012"] == "+15"
    assert props["crs:Exposure2012"] == "+0.50"


def test_packet_written_by_exiftool(tmp_path: Path) -> None:
    """The element form ExifTool writes reads the same way."""
    exiftool = shutil.which("exiftool")
    if exiftool is None:
        pytest.fail("exiftool is needed to write the test image (apt-get install libimage-exiftool-perl)")
    photo = tmp_path / "x.jpg"
    Image.new("RGB", (8, 8)).save(photo, "JPEG")
    subprocess.run([exiftool, "-q", "-overwrite_original", "-XMP-crs:Exposure2012=+0.50",
                    "-XMP-dc:Subject=cat", "-XMP-dc:Subject=dog", "-XMP-dc:Title=Hello",
                    "-XMP-xmp:CreatorTool=ImgKit test", str(photo)], check=True, timeout=60)
    props = read_xmp(photo.read_bytes())
    assert props is not None
    assert props["crs:Exposure2012"] == "+0.50"
    assert props["dc:subject"] == ["cat", "dog"]
    assert props["dc:title"] == "Hello"
    assert props["xmp:CreatorTool"] == "ImgKit test"


def test_raw_scan_for_other_formats() -> None:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "PNG")
    png = out.getvalue()
    chunk = b"iTXtXML:com.adobe.xmp\0\0\0\0\0" + LIGHTROOM_PACKET.encode()
    blob = png[:33] + len(chunk[4:]).to_bytes(4, "big") + chunk + b"\0\0\0\0" + png[33:]
    props = read_xmp(blob)
    assert props is not None and props["crs:Exposure2012"] == "+0.50"


@pytest.mark.parametrize("data", [b"", b"\xff\xd8\xff\xd9", b"plain bytes", b"<x:xmpmeta>broken"])
def test_no_packet_gives_none(data: bytes) -> None:
    assert read_xmp(data) is None


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>&lol9;</dc:title>
</rdf:Description></rdf:RDF></x:xmpmeta>"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:format="&xxe;"/></rdf:RDF></x:xmpmeta>"""


@pytest.mark.timeout(10)
@pytest.mark.parametrize("packet", [BILLION_LAUGHS, EXTERNAL_ENTITY])
def test_doctype_is_refused_quickly(packet: str) -> None:
    start = time.perf_counter()
    assert read_xmp(_xmp_jpeg(packet)) is None
    assert time.perf_counter() - start < 1.0
    with pytest.raises(ValueError, match="DTD"):
        parse_xmp(packet.encode())


def test_corpus_files_never_raise(corpus_dir: Path) -> None:
    for path in sorted((corpus_dir / "cameras").iterdir()):
        blob = path.read_bytes()
        read_xmp(blob)
        read_xmp(blob[: len(blob) // 3])
