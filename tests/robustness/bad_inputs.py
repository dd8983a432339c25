"""A generated corpus of bad inputs (issue 16, "Tests and figures"): image files and dataset
archives an attacker or a clumsy user sends, each a few kB, made in memory.

`image_corpus()` goes through every entry point that takes an image file; `archive_corpus()`
through the dataset import (zip and labels only). Each input says what must happen to it:
ACCEPT (a polyglot whose image part is valid is an image; a hostile name is made safe) or
REFUSE (with the entry point's verdict and a reason; an archive: the job fails, naming each
problem). test_bad_input_corpus.py checks the rest (no 500, no temp file, nothing outside
MEDIA_ROOT, no job left running, batch-mates land).
"""

from __future__ import annotations

import base64
import io
import json
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass, field

from PIL import Image as PILImage

ACCEPT, REFUSE = "accept", "refuse"

# Where a zip-slip entry would land if a reader wrote it: a name nothing else uses.
SLIP_NAME = "loupe-corpus-slip-6f1c.png"


@dataclass(frozen=True)
class BadImage:
    id: str
    data: bytes
    expect: str
    filename: str | bytes = "image.png"  # bytes: sent raw (not UTF-8) where the wire allows
    upright: tuple[int, int] | None = None  # ACCEPT: the size after EXIF orientation


@dataclass(frozen=True)
class BadArchive:
    id: str
    data: bytes
    format: str  # coco, voc, yolo, csv, folders
    expect: str  # ACCEPT: the job ends done; REFUSE: refused up front, or the job names problems
    labels_only: bool = False
    upload_name: str = "dataset.zip"
    slip_targets: tuple[str, ...] = field(default=())  # entry names that point outside


def _colour(n: int) -> tuple[int, int, int]:
    return (n * 53 % 256, n * 101 % 256, 255 - n * 29 % 256)


def _save(image: PILImage.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def png(n: int, size: tuple[int, int] = (12, 10)) -> bytes:
    return _save(PILImage.new("RGB", size, _colour(n)), "PNG")


def jpeg(n: int, size: tuple[int, int] = (16, 12), **kwargs: object) -> bytes:
    return _save(PILImage.new("RGB", size, _colour(n)), "JPEG", **kwargs)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_claiming(width: int, height: int) -> bytes:
    """A valid-looking PNG that declares width x height and carries a few bytes of pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    pixels = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", pixels)
        + _chunk(b"IEND", b"")
    )


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) is rewritten to declare width x height."""
    data = bytearray(jpeg(90, (16, 16)))
    at = data.index(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _gif_claiming(width: int, height: int) -> bytes:
    data = bytearray(_save(PILImage.new("P", (8, 8), 3), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)  # the logical screen
    return bytes(data)


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _exif_jpeg(n: int, orientation: int) -> bytes:
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    return jpeg(n, (30, 20), exif=exif.tobytes())


def _animated(fmt: str, n: int) -> bytes:
    frames = [PILImage.new("RGB", (10, 10), _colour(n + i)) for i in range(3)]
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, loop=0)


def _palette_alpha(n: int) -> bytes:
    image = PILImage.new("P", (10, 10), 1)
    image.putpalette([*_colour(n), 0, 0, 0, *_colour(n + 1)] + [0] * 759)
    image.info["transparency"] = 0
    image.putpixel((0, 0), 0)
    return _save(image, "PNG", transparency=0)


def _i16(n: int) -> bytes:
    image = PILImage.new("I;16", (10, 8), 1000 + n * 500)
    return _save(image, "PNG")


def _bad_crc(n: int) -> bytes:
    data = bytearray(png(n))
    data[29] ^= 0xFF  # the IHDR CRC
    return bytes(data)


def _corrupt_exif_jpeg(n: int) -> bytes:
    data = jpeg(n)
    garbage = b"Exif\0\0" + b"II*\0" + b"\xff" * 40
    segment = b"\xff\xe1" + struct.pack(">H", len(garbage) + 2) + garbage
    return data[:2] + segment + data[2:]


def image_corpus() -> list[BadImage]:
    """Image files, each distinct (never a duplicate of another or of a batch-mate)."""
    return [
        BadImage("zero-byte", b"", REFUSE),
        BadImage("truncated-jpeg", jpeg(2, (40, 30))[:200], REFUSE),
        BadImage("truncated-png", png(3, (40, 30))[:60], REFUSE),
        BadImage("png-signature-only", b"\x89PNG\r\n\x1a\n", REFUSE),
        BadImage("text-named-png", b"just some text, not an image\n" * 4, REFUSE),
        BadImage("html-named-png", b"<!doctype html><script>alert(1)</script>", REFUSE),
        BadImage("svg-named-png", b'<svg xmlns="http://www.w3.org/2000/svg"/>', REFUSE),
        BadImage("pdf-named-png", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n", REFUSE),
        BadImage("png-bad-crc", _bad_crc(4), REFUSE),
        BadImage("png-zero-width", _png_claiming(0, 10), REFUSE),
        BadImage(
            "polyglot-gif-zip",
            _save(PILImage.new("P", (9, 9), 5), "GIF") + _zip({"x.txt": b"hi"}),
            ACCEPT,
        ),
        BadImage("polyglot-jpeg-html", jpeg(5) + b"<html><script>alert(1)</script></html>", ACCEPT),
        BadImage("polyglot-png-zip", png(6) + _zip({"evil.sh": b"rm -rf /"}), ACCEPT),
        BadImage("bomb-png-100k-square", _png_claiming(100_000, 100_000), REFUSE),
        BadImage("bomb-png-60k-strip", _png_claiming(60_000, 60_000), REFUSE),
        BadImage("bomb-jpeg-65k-square", _jpeg_claiming(65_000, 65_000), REFUSE),
        BadImage("bomb-gif-screen", _gif_claiming(65_535, 65_535), REFUSE),
        BadImage(
            "cmyk-jpeg",
            _save(PILImage.new("CMYK", (12, 9), (10, 200, 30, 5)), "JPEG"),
            ACCEPT,
            "cmyk.jpg",
            (12, 9),
        ),
        BadImage("png-16-bit-grey", _i16(7), ACCEPT, "deep.png", (10, 8)),
        BadImage("animated-gif", _animated("GIF", 8), ACCEPT, "anim.gif", (10, 10)),
        BadImage("animated-png", _animated("PNG", 11), ACCEPT, "anim.png", (10, 10)),
        BadImage("exif-rotated-jpeg", _exif_jpeg(14, 6), ACCEPT, "rotated.jpg", (20, 30)),
        BadImage("exif-orientation-invalid", _exif_jpeg(15, 99), ACCEPT, "odd.jpg", (30, 20)),
        BadImage("exif-corrupt", _corrupt_exif_jpeg(16), ACCEPT, "exif.jpg"),
        BadImage("palette-alpha-png", _palette_alpha(17), ACCEPT, "pal.png", (10, 10)),
        BadImage("one-pixel", png(18, (1, 1)), ACCEPT, "dot.png", (1, 1)),
        BadImage("png-named-jpg", png(19), ACCEPT, "really-a-png.jpg", (12, 10)),
        BadImage("name-dot-dot-slash", png(20), ACCEPT, "../../etc/passwd.png", (12, 10)),
        BadImage("name-absolute-windows", png(21), ACCEPT, "C:\\Windows\\win.ini.png", (12, 10)),
        BadImage("name-very-long", png(22), ACCEPT, "n" * 1000 + ".png", (12, 10)),
        BadImage("name-control-chars", png(23), ACCEPT, "a\x01b\x1b[31mc\x7f.png", (12, 10)),
        BadImage("name-nul", png(24), ACCEPT, "nul\x00.png", (12, 10)),
        BadImage("name-not-utf8", png(25), ACCEPT, b"caf\xe9 \xff\xfe.png", (12, 10)),
        BadImage("name-empty", png(26), ACCEPT, "", (12, 10)),
        BadImage("name-dots-only", png(27), ACCEPT, "..", (12, 10)),
        BadImage("name-html", png(28), ACCEPT, "<img src=x onerror=alert(1)>.png", (12, 10)),
        # A control: each entry point accepts a plain file (else every refusal above is moot).
        BadImage("plain-png-control", png(1), ACCEPT, "plain.png", (12, 10)),
    ]


def batch_mate() -> bytes:
    """The good image sent beside each bad one (a colour no corpus entry uses)."""
    return _save(PILImage.new("RGB", (14, 11), (3, 250, 7)), "PNG")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- Archives ----------------------------------------------------------------------------------


def _zip_raw(entries: list[tuple[zipfile.ZipInfo | str, bytes]], method: int = 8) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for info, data in entries:
            archive.writestr(info, data)
    return buffer.getvalue()


def _symlink(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _coco(images: list, annotations: list, categories: list | None = None) -> bytes:
    return json.dumps(
        {
            "images": images,
            "annotations": annotations,
            "categories": categories if categories is not None else [{"id": 1, "name": "cat"}],
        }
    ).encode()


def _coco_zip(document: bytes, image: bytes | None = None) -> bytes:
    return _zip({"annotations.json": document, "a.png": image or png(40, (40, 20))})


def _one(annotation: dict) -> bytes:
    image = {"id": 1, "file_name": "a.png", "width": 40, "height": 20}
    return _coco([image], [{"id": 1, "image_id": 1, "category_id": 1, **annotation}])


def _lying_size_zip() -> bytes:
    """A member whose header declares 10 bytes but whose deflate stream holds 5 MB of zeros."""
    data = bytearray(_zip({"a.png": png(41), "big.png": b"\0" * 5_000_000}))
    # Rewrite the uncompressed size of big.png in its local and central headers.
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = 0
        while (at := data.find(signature, at)) != -1:
            name_at = at + (30 if signature == b"PK\x03\x04" else 46)
            if data[name_at : name_at + 7] == b"big.png":
                data[at + offset : at + offset + 4] = struct.pack("<I", 10)
            at += 4
    return bytes(data)


def _corrupt_deflate_zip() -> bytes:
    data = bytearray(_zip({"a.png": png(42), "b.png": png(43, (30, 30))}))
    at = data.find(b"b.png") + len("b.png")
    data[at + 2 : at + 12] = b"\xff" * 10  # inside b.png's deflate stream
    return bytes(data)


def _voc(body: str) -> bytes:
    return f'<?xml version="1.0"?>\n{body}'.encode()


_VOC_OK = (
    "<annotation><filename>a.png</filename><size><width>40</width><height>20</height></size>"
    "<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax>"
    "</bndbox></object></annotation>"
)
_LAUGHS = (
    '<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    )
    + "]>"
    + "<annotation><filename>a.png</filename><object><name>&lol9;</name></object></annotation>"
)
_XXE = (
    '<!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    "<annotation><filename>a.png</filename><size><width>40</width><height>20</height></size>"
    "<object><name>&xxe;</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax>"
    "<ymax>9</ymax></bndbox></object></annotation>"
)


def _voc_zip(xml: bytes) -> bytes:
    return _zip({"Annotations/a.xml": xml, "JPEGImages/a.png": png(44, (40, 20))})


def _yolo_zip(label: bytes, classes: bytes = b"cat\n") -> bytes:
    return _zip({"classes.txt": classes, "images/a.png": png(45, (40, 20)), "labels/a.txt": label})


def _csv_zip(text: bytes) -> bytes:
    return _zip({"labels.csv": text, "a.png": png(46), "b.png": png(47)})


def archive_corpus() -> list[BadArchive]:
    huge = 10**400
    slip = f"../../../{SLIP_NAME}"
    return [
        # Archives themselves.
        BadArchive("zip-zero-byte", b"", "coco", REFUSE),
        BadArchive("zip-not-a-zip", b"PK\x03\x04 not really", "coco", REFUSE),
        BadArchive("zip-truncated", _coco_zip(_one({"bbox": [1, 1, 5, 5]}))[:150], "coco", REFUSE),
        BadArchive("zip-empty", _zip({}), "folders", REFUSE),
        BadArchive(
            "zip-slip",
            _zip({"cat/a.png": png(48), f"cat/{slip}": png(49), f"/tmp/{SLIP_NAME}": png(50)}),
            "folders",
            REFUSE,
            slip_targets=(slip, f"/tmp/{SLIP_NAME}"),
        ),
        BadArchive(
            "zip-symlink",
            _zip_raw(
                [
                    ("cat/a.png", png(51)),
                    (_symlink("cat/passwd.png", "/etc/passwd"), b"/etc/passwd"),
                ]
            ),
            "folders",
            REFUSE,
        ),
        BadArchive(
            "zip-bomb",
            _zip({"cat/a.png": png(52), "cat/big.png": b"\0" * 20_000_000}),
            "folders",
            REFUSE,
        ),
        BadArchive("zip-size-lies", _lying_size_zip(), "folders", REFUSE),
        BadArchive("zip-corrupt-deflate", _corrupt_deflate_zip(), "folders", REFUSE),
        BadArchive(
            "zip-nested",
            _zip({"cat/a.png": png(53), "cat/inner.zip": _zip({"b.png": png(54)})}),
            "folders",
            ACCEPT,
        ),
        BadArchive(
            "zip-bad-images",
            _zip({"cat/a.png": png(55), "cat/t.png": png(56)[:40], "cat/z.png": b""}),
            "folders",
            REFUSE,
        ),
        # COCO.
        BadArchive("coco-not-json", _coco_zip(b"{not json"), "coco", REFUSE),
        BadArchive("coco-top-level-list", _coco_zip(b"[1, 2, 3]"), "coco", REFUSE),
        BadArchive("coco-missing-keys", _coco_zip(b"{}"), "coco", REFUSE),
        BadArchive(
            "coco-images-wrong-type",
            _coco_zip(json.dumps({"images": "a.png", "annotations": {}, "categories": 3}).encode()),
            "coco",
            REFUSE,
        ),
        BadArchive(
            "coco-bbox-strings", _coco_zip(_one({"bbox": ["1", "1", "5", "5"]})), "coco", REFUSE
        ),
        BadArchive("coco-bbox-short", _coco_zip(_one({"bbox": [1, 1]})), "coco", REFUSE),
        BadArchive("coco-bbox-huge", _coco_zip(_one({"bbox": [1, 1, huge, 5]})), "coco", REFUSE),
        BadArchive(
            "coco-bbox-nan",
            _coco_zip(_one({"bbox": [1, 1, 1e309, 5]}).replace(b"Infinity", b"NaN")),
            "coco",
            REFUSE,
        ),
        BadArchive(
            "coco-category-id-list",
            _coco_zip(
                _one({"bbox": [1, 1, 5, 5]}).replace(b'"category_id": 1', b'"category_id": [1]')
            ),
            "coco",
            REFUSE,
        ),
        BadArchive(
            "coco-width-huge",
            _coco_zip(_coco([{"id": 1, "file_name": "a.png", "width": huge, "height": 20}], [])),
            "coco",
            REFUSE,
        ),
        BadArchive(
            "coco-file-name-slip",
            _coco_zip(_coco([{"id": 1, "file_name": slip, "width": 40, "height": 20}], [])),
            "coco",
            REFUSE,
            slip_targets=(slip,),
        ),
        BadArchive(
            "coco-labels-only-garbage",
            b"\xff\xfe{not json",
            "coco",
            REFUSE,
            labels_only=True,
            upload_name="annotations.json",
        ),
        BadArchive(
            "coco-labels-only-bbox-strings",
            _one({"bbox": "1,1,5,5"}),
            "coco",
            REFUSE,
            labels_only=True,
            upload_name="annotations.json",
        ),
        # VOC.
        BadArchive("voc-billion-laughs", _voc_zip(_voc(_LAUGHS)), "voc", REFUSE),
        BadArchive("voc-xxe", _voc_zip(_voc(_XXE)), "voc", REFUSE),
        BadArchive(
            "voc-missing-fields",
            _voc_zip(_voc("<annotation><object/></annotation>")),
            "voc",
            REFUSE,
        ),
        BadArchive("voc-not-xml", _voc_zip(b"<annotation><unclosed>"), "voc", REFUSE),
        BadArchive(
            "voc-text-coordinates",
            _voc_zip(_voc(_VOC_OK.replace("<xmin>1</xmin>", "<xmin>one</xmin>"))),
            "voc",
            REFUSE,
        ),
        BadArchive(
            "voc-labels-only-laughs",
            _voc(_LAUGHS),
            "voc",
            REFUSE,
            labels_only=True,
            upload_name="a.xml",
        ),
        # YOLO.
        BadArchive("yolo-wrong-column-count", _yolo_zip(b"0 0.5 0.5\n"), "yolo", REFUSE),
        BadArchive("yolo-text-numbers", _yolo_zip(b"0 a b c d\n"), "yolo", REFUSE),
        BadArchive("yolo-class-out-of-range", _yolo_zip(b"7 0.5 0.5 0.2 0.2\n"), "yolo", REFUSE),
        BadArchive(
            "yolo-huge-numbers", _yolo_zip(b"0 1e999 0.5 " + b"9" * 400 + b" 0.2\n"), "yolo", REFUSE
        ),
        BadArchive("yolo-binary-label", _yolo_zip(b"\xff\xfe\x00\x01" * 50), "yolo", REFUSE),
        # CSV.
        BadArchive(
            "csv-huge-field", _csv_zip(b"file,tags\na.png," + b"x" * 200_000 + b"\n"), "csv", REFUSE
        ),
        BadArchive("csv-wrong-columns", _csv_zip(b"name;label\na.png;cat;extra\n"), "csv", REFUSE),
        BadArchive("csv-not-utf8", _csv_zip(b"file,tags\n\xff\xfe.png,c\xe9t\n"), "csv", REFUSE),
        BadArchive("csv-nul-bytes", _csv_zip(b"file,tags\na.png,c\x00at\n"), "csv", REFUSE),
        BadArchive(
            "csv-labels-only-huge-field",
            b"file,tags\na.png," + b"y" * 200_000 + b"\n",
            "csv",
            REFUSE,
            labels_only=True,
            upload_name="labels.csv",
        ),
    ]
