"""Face detection, landmarks, embeddings and crops for one image (runs in workers).

HOG at one upsampling finds frontal faces of 80+ pixels; small faces (the 92x112 AT&T
set, thumbnails) are missed, so when nothing is found in a small image the detector is
run again with more upsampling before concluding "no face" — the answer decides whether
a photo is treated as biometric data, so a miss is the costly error.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .image import rgb_array
from .models import dlib_models
from .phash import pdq

__all__ = ["Face", "ImageAnalysis", "analyze", "analyze_many"]

#: retry upsampling only while the upsampled image stays below this many pixels a side
_RETRY_MAX_SIDE = 1200
CROP_SIZE = 150


@dataclass
class Face:
    box: tuple[int, int, int, int]  # left, top, right, bottom
    landmarks: list[tuple[int, int]]
    embedding: bytes | None = None  # 128 float32, little-endian
    crop: bytes | None = None  # JPEG of the aligned face chip


@dataclass
class ImageAnalysis:
    width: int
    height: int
    upsample: int
    faces: list[Face] = field(default_factory=list)
    phash: bytes | None = None
    phash_quality: int = 0
    error: str | None = None


def _detect(models: dict, rgb: np.ndarray, cnn: bool) -> tuple[list, int]:
    detector = models["cnn"] if cnn else models["hog"]
    side = max(rgb.shape[0], rgb.shape[1])
    upsample = 1
    while True:
        found = detector(rgb, upsample)
        rects = [d.rect for d in found] if cnn else list(found)
        if rects or side * (2 ** (upsample + 1)) > _RETRY_MAX_SIDE or upsample >= 4:
            return rects, upsample
        upsample += 1


def analyze(
    data: bytes, *, embed: bool, faces: bool = True, phash: bool = True, cnn: bool = False
) -> ImageAnalysis:
    """Analyse one photo. ``embed=False`` detects only (no embedding, no crop)."""
    try:
        rgb = rgb_array(data)
    except Exception as exc:  # noqa: BLE001 - a photo that cannot be decoded is reported, not fatal
        return ImageAnalysis(0, 0, 0, error=f"cannot decode ({type(exc).__name__})")
    height, width = rgb.shape[:2]
    result = ImageAnalysis(width, height, 0)
    if phash and min(width, height) >= 2:
        result.phash, result.phash_quality = pdq(rgb)
    if not faces:
        return result
    import dlib

    models = dlib_models(cnn)
    rects, result.upsample = _detect(models, rgb, cnn)
    for rect in rects:
        shape = models["landmarks"](rgb, rect)
        face = Face(
            box=(
                max(rect.left(), 0),
                max(rect.top(), 0),
                min(rect.right(), width),
                min(rect.bottom(), height),
            ),
            landmarks=[(p.x, p.y) for p in shape.parts()],
        )
        if embed:
            vector = np.asarray(models["embedder"].compute_face_descriptor(rgb, shape), dtype="<f4")
            face.embedding = vector.tobytes()
            chip = dlib.get_face_chip(rgb, shape, size=CROP_SIZE)
            out = io.BytesIO()
            Image.fromarray(chip).save(out, "JPEG", quality=90)
            face.crop = out.getvalue()
        result.faces.append(face)
    return result


def analyze_many(items: list[tuple[bytes, bool]], faces: bool, cnn: bool) -> list[ImageAnalysis]:
    """Batch entry point for worker processes: ``(data, embed)`` pairs."""
    return [analyze(data, embed=embed, faces=faces, cnn=cnn) for data, embed in items]
