"""Location metadata leaves no workspace by default: what ``share`` strips from each photo.

A photo's EXIF GPS block, its XMP packet (which may hold ``exif:GPS*``, ``photoshop:City``,
``Iptc4xmpCore:Location`` ...) and its IPTC record (city, sublocation, country) say where a
person was; a recipient never needs that to train or match faces. The pixels are never
re-encoded (a JPEG stays byte-for-byte the same image): only the metadata segments change,
and a photo with nothing to strip keeps its exact bytes (and sha256).

What is removed, by format:

* JPEG: the GPS IFD of the EXIF segment (the rest of EXIF, orientation included, stays),
  every XMP segment (standard and extended), and the APP13 Photoshop/IPTC segment;
* PNG: the GPS IFD of an ``eXIf`` chunk, and XMP text chunks;
* WebP: the GPS IFD of the ``EXIF`` chunk, and the ``XMP`` chunk;
* TIFF: the GPS IFD (the image is re-written by Pillow, losslessly; one Pillow cannot
  re-write is refused with :class:`InvalidInput` rather than shipped with its GPS);
* GIF and BMP carry none of these as disgorge reads them, and are returned unchanged.

An EXIF block that cannot be parsed is dropped whole rather than shipped unread.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

from ..errors import InvalidInput

__all__ = ["strip_location"]

_GPS_IFD = 0x8825
_XMP_PREFIXES = (b"http://ns.adobe.com/xap/1.0/\x00", b"http://ns.adobe.com/xmp/extension/\x00")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def strip_location(data: bytes, media_type: str) -> bytes:
    """``data`` without location metadata (the same object when there was none)."""
    if media_type == "image/jpeg":
        return _jpeg(data)
    if media_type == "image/png":
        return _png(data)
    if media_type == "image/webp":
        return _webp(data)
    if media_type == "image/tiff":
        return _tiff(data)
    return data


def _exif_without_gps(payload: bytes, prefix: bytes) -> bytes | None:
    """The EXIF block without its GPS IFD; ``payload`` itself if it had none; None: drop it."""
    exif = Image.Exif()
    try:
        exif.load(payload if prefix else b"Exif\x00\x00" + payload)
        if _GPS_IFD not in exif:
            return payload
        for tag in (0x8769, 0xA005):  # load the sub-IFDs so that they are written back
            exif.get_ifd(tag)
        del exif[_GPS_IFD]
        out = exif.tobytes()
    except Exception:  # noqa: BLE001 - unreadable metadata is dropped, never shipped unread
        return None
    return out if prefix else out.removeprefix(b"Exif\x00\x00")


def _jpeg(data: bytes) -> bytes:
    if not data.startswith(b"\xff\xd8"):
        return data
    out = [data[:2]]
    pos, changed = 2, False
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            out.append(data[pos : pos + 1])
            pos += 1
            continue
        if marker == 0xDA or 0xD0 <= marker <= 0xD9:  # start of scan: the rest is image data
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        segment = data[pos : pos + 2 + length]
        payload = segment[4:]
        pos += 2 + length
        if marker == 0xE1 and payload.startswith(b"Exif\x00\x00"):
            new = _exif_without_gps(payload, b"Exif\x00\x00")
            if new is payload:
                out.append(segment)
            else:
                changed = True
                if new is not None and len(new) + 2 <= 0xFFFF:
                    out.append(b"\xff\xe1" + struct.pack(">H", len(new) + 2) + new)
            continue
        if (marker == 0xE1 and payload.startswith(_XMP_PREFIXES)) or marker == 0xED:
            changed = True
            continue
        out.append(segment)
    if not changed:
        return data
    out.append(data[pos:])
    return b"".join(out)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(data: bytes) -> bytes:
    if not data.startswith(_PNG_SIGNATURE):
        return data
    out, pos, changed = [_PNG_SIGNATURE], len(_PNG_SIGNATURE), False
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        chunk = data[pos : pos + 12 + length]
        pos += 12 + length
        if kind == b"eXIf":
            new = _exif_without_gps(body, b"")
            if new is not body:
                changed = True
                if new is not None:
                    out.append(_png_chunk(kind, new))
                continue
        elif kind in (b"iTXt", b"tEXt", b"zTXt") and body.startswith(b"XML:com.adobe.xmp\x00"):
            changed = True
            continue
        out.append(chunk)
        if kind == b"IEND":
            break
    return b"".join(out) if changed else data


def _webp(data: bytes) -> bytes:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return data
    chunks: list[tuple[bytes, bytes]] = []
    pos, changed = 12, False
    while pos + 8 <= len(data):
        kind = data[pos : pos + 4]
        (length,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 8 + length + (length & 1)
        if kind == b"EXIF":
            new = _exif_without_gps(body, b"Exif\x00\x00" if body.startswith(b"Exif\x00\x00") else b"")
            if new is not body:
                changed = True
                if new is None:
                    continue
                body = new
        elif kind == b"XMP ":
            changed = True
            continue
        chunks.append((kind, body))
    if not changed:
        return data
    kinds = {k for k, _ in chunks}
    parts = []
    for kind, body in chunks:
        if kind == b"VP8X" and len(body) >= 1:  # flags: 0x08 EXIF, 0x04 XMP
            flags = body[0] & ~0x04 & ~(0 if b"EXIF" in kinds else 0x08)
            body = bytes([flags]) + body[1:]
        parts.append(kind + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) & 1 else b""))
    payload = b"WEBP" + b"".join(parts)
    return b"RIFF" + struct.pack("<I", len(payload)) + payload


def _tiff(data: bytes) -> bytes:
    try:
        with Image.open(io.BytesIO(data)) as im:
            exif = im.getexif()
            if _GPS_IFD not in exif:
                return data
            del exif[_GPS_IFD]
            buf = io.BytesIO()
            im.save(buf, "TIFF", exif=exif, compression=im.info.get("compression", "raw"))
    except Exception:  # noqa: BLE001 - never ship location metadata we could not remove
        raise InvalidInput(
            "a TIFF photo carries GPS metadata that could not be removed; share with --keep-metadata "
            "or store it in another format"
        ) from None
    return buf.getvalue()
