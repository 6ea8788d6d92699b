"""Turning stored photo bytes into the upright 8-bit RGB array the models expect.

EXIF orientation is applied first (a phone photo stored sideways must be analysed
upright), then any mode (CMYK, greyscale, palette, 16-bit) becomes 8-bit RGB.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

__all__ = ["rgb_array"]


def rgb_array(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
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
