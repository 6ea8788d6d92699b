"""Turning stored photo bytes into the upright 8-bit RGB array the models expect.

EXIF orientation is applied first (a phone photo stored sideways must be analysed
upright), then any mode (CMYK, greyscale, palette, 16-bit) becomes 8-bit RGB.

:func:`unframed` strips a plain frame (a border added around a copy) for copy search.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

__all__ = ["rgb_array", "unframed"]


def rgb_array(data: bytes, *, max_side: int | None = None) -> np.ndarray:
    """``max_side``: shrink the image to fit that square first (a JPEG is decoded at a
    reduced scale: far faster for a large photo)."""
    with Image.open(io.BytesIO(data)) as im:
        if max_side is not None and max(im.size) > max_side:
            im.draft(None, (max_side, max_side))  # a JPEG: decoded at 1/2, 1/4 or 1/8 scale
            im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=None)
        im.load()
        upright = ImageOps.exif_transpose(im)
        if upright.mode in ("I;16", "I;16B", "I;16L", "I"):
            # 16/32-bit greyscale: scale to 8 bits by the actual range, then to RGB
            arr = np.asarray(upright, dtype=np.float64)
            top = arr.max() or 1.0
            grey = np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
            return np.ascontiguousarray(np.stack([grey] * 3, axis=-1))
        if upright.mode != "RGB":
            upright = upright.convert("RGB")
        return np.ascontiguousarray(np.asarray(upright, dtype=np.uint8))


#: a line (row or column) is "plain" when its mean distance from its median colour is at most this
_PLAIN_LINE = 6.0


def _plain_box(a: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) inside the plain lines along the edges, never under half a side."""
    h, w = a.shape[:2]

    def plain(line: np.ndarray) -> bool:
        return float(np.abs(line - np.median(line, axis=0)).mean()) <= _PLAIN_LINE

    top, bottom, left, right = 0, h, 0, w
    while True:  # peel again after each pass: a frame can sit around a plain band of the photo
        before = (top, bottom, left, right)
        while bottom - top > h // 2 and plain(a[top, left:right]):
            top += 1
        while bottom - top > h // 2 and plain(a[bottom - 1, left:right]):
            bottom -= 1
        while right - left > w // 2 and plain(a[top:bottom, left]):
            left += 1
        while right - left > w // 2 and plain(a[top:bottom, right - 1]):
            right -= 1
        if (top, bottom, left, right) == before:
            return top, bottom, left, right


def unframed(rgb: np.ndarray) -> list[np.ndarray]:
    """Views of ``rgb`` without a plain frame around it; empty when its edges are not plain.

    A border added around a copy moves every PDQ bit, and trimming it is ambiguous when the
    photo itself has a plain band along an edge (LFW's black bands), so two candidates are
    given: the same width trimmed from every side (a border added evenly), and every plain
    line trimmed. Copy search queries with these besides the image itself.
    """
    h, w = rgb.shape[:2]
    if min(h, w) < 8:  # nothing to trim in a thumbnail-of-a-thumbnail
        return []
    a = rgb.astype(np.int16)
    top, bottom, left, right = _plain_box(a)
    even = min(top, h - bottom, left, w - right)
    boxes: list[tuple[int, int, int, int]] = []
    for box in ((even, h - even, even, w - even), (top, bottom, left, right)):
        if box != (0, h, 0, w) and box not in boxes:
            boxes.append(box)
    return [np.ascontiguousarray(rgb[t:b, l_:r_]) for t, b, l_, r_ in boxes]
