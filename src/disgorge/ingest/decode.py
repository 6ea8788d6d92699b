"""Safe image decoding: the gate every photo passes before it is stored.

A file is accepted only if Pillow decodes it completely, in an allowed format, with no
more pixels than the limit. The pixel limit is checked from the header, before any pixel
is decoded, so a decompression bomb (a small file claiming gigapixels) costs nothing.
Runs in worker processes: it takes bytes and returns plain data.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageFile, UnidentifiedImageError

__all__ = ["ALLOWED_FORMATS", "DEFAULT_MAX_PIXELS", "Probe", "probe", "probe_many"]

#: Pillow format name -> media type
ALLOWED_FORMATS: dict[str, str] = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
    "GIF": "image/gif",
    "PPM": "image/x-portable-anymap",
}

#: Pillow's own default; a 12,000 x 7,500 photo fits
DEFAULT_MAX_PIXELS = 89_478_485


@dataclass(frozen=True)
class Probe:
    sha256: str
    size: int
    ok: bool
    media_type: str = ""
    width: int = 0
    height: int = 0
    reason: str | None = None


def probe(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Probe:
    sha = hashlib.sha256(data).hexdigest()
    size = len(data)
    if size == 0:
        return Probe(sha, 0, False, reason="empty file (0 bytes)")
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS)) as im:
                fmt = im.format or ""
                width, height = im.size
                if width * height > max_pixels:
                    return Probe(sha, size, False, reason=_bomb(width, height, max_pixels))
                im.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            return Probe(sha, size, False, reason=f"decompression bomb: more than {max_pixels} pixels")
        except UnidentifiedImageError:
            return Probe(sha, size, False, reason="not an image (or not an allowed format)")
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            return Probe(sha, size, False, reason=f"truncated or corrupt image ({_short(exc)})")
        except Exception as exc:  # noqa: BLE001 - any decoder failure is a refusal, not a crash
            return Probe(sha, size, False, reason=f"undecodable image ({type(exc).__name__})")
    return Probe(sha, size, True, ALLOWED_FORMATS.get(fmt, "application/octet-stream"), width, height)


def probe_many(items: list[bytes], max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Probe]:
    """Probe a batch (one round trip to a worker process per batch, not per photo)."""
    return [probe(data, max_pixels) for data in items]


def _bomb(width: int, height: int, limit: int) -> str:
    return f"decompression bomb: {width} x {height} pixels exceeds the {limit}-pixel limit"


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:120]
