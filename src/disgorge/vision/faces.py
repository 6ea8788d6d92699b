"""Face detection, landmarks, embeddings and crops for one image (runs in workers).

HOG at one upsampling finds frontal faces of 80+ pixels; small faces (the 92x112 AT&T
set, thumbnails) are missed, so when nothing is found in a small image the detector is
run again with more upsampling before concluding "no face" — the answer decides whether
a photo is treated as biometric data, so a miss is the costly error.

``embedder="portrait"`` replaces detection and embedding with the portrait descriptor of
:mod:`disgorge.vision.portrait` (one "face": the centre of the frame) — a documented
stand-in for drawn sample portraits, not a face recogniser; it needs no dlib.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from .image import rgb_array
from .models import dlib_models
from .phash import CENTRE_CROPS, centre_crop, pdq
from .portrait import portrait_face
from .results import CROP_SIZE, Face, ImageAnalysis

__all__ = ["EMBEDDERS", "Face", "ImageAnalysis", "analyze", "analyze_many", "check_embedder"]

#: larger photos are shrunk to this many pixels a side for detection and embedding
DETECT_MAX_SIDE = 1600
#: retry upsampling only while the upsampled image stays below this many pixels a side
_RETRY_MAX_SIDE = 1200
#: "dlib": HOG/CNN detection and dlib's ResNet embedding (extra ``faces``);
#: "portrait": the portrait descriptor stand-in (core dependencies only)
EMBEDDERS = ("dlib", "portrait")


def check_embedder(embedder: str) -> str:
    if embedder not in EMBEDDERS:
        from ..errors import InvalidInput

        raise InvalidInput(f"embedder {embedder!r}: expected one of {', '.join(EMBEDDERS)}")
    return embedder


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


def _shrunk(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    side = max(rgb.shape[0], rgb.shape[1])
    if side <= DETECT_MAX_SIDE:
        return rgb, 1.0
    scale = DETECT_MAX_SIDE / side
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    small = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS), dtype=np.uint8)
    return np.ascontiguousarray(small), scale


def analyze(
    data: bytes,
    *,
    embed: bool,
    faces: bool = True,
    phash: bool = True,
    cnn: bool = False,
    embedder: str = "dlib",
) -> ImageAnalysis:
    """Analyse one photo. ``embed=False`` detects only (no embedding, no crop).

    ``embedder="portrait"`` takes the centre of the frame as the one face and describes it
    with :func:`disgorge.vision.portrait.portrait_embedding` (no dlib; ``cnn`` is ignored).
    """
    check_embedder(embedder)
    try:
        rgb = rgb_array(data)
    except Exception as exc:  # noqa: BLE001 - a photo that cannot be decoded is reported, not fatal
        return ImageAnalysis(0, 0, 0, error=f"cannot decode ({type(exc).__name__})")
    height, width = rgb.shape[:2]
    result = ImageAnalysis(width, height, 0)
    if phash and min(width, height) >= 2:
        result.phash, result.phash_quality = pdq(rgb)
        if min(width, height) >= 20:
            result.phash_crops = [pdq(centre_crop(rgb, keep))[0] for keep in CENTRE_CROPS]
    if not faces:
        return result
    if embedder == "portrait":
        result.upsample = 1
        result.faces.append(portrait_face(rgb, embed=embed))
        return result
    import dlib

    models = dlib_models(cnn)
    # Very large photos are analysed at DETECT_MAX_SIDE: HOG time grows with the pixels,
    # and a face that fills 80+ pixels there is still found; if nothing is, the full image
    # is tried before concluding "no face". Boxes and landmarks are in full-size pixels.
    work, scale = _shrunk(rgb)
    rects, result.upsample = _detect(models, work, cnn)
    if not rects and scale != 1.0:
        work, scale = rgb, 1.0
        rects, result.upsample = _detect(models, work, cnn)
    for rect in rects:
        shape = models["landmarks"](work, rect)
        face = Face(
            box=(
                max(int(rect.left() / scale), 0),
                max(int(rect.top() / scale), 0),
                min(int(rect.right() / scale), width),
                min(int(rect.bottom() / scale), height),
            ),
            landmarks=[(int(p.x / scale), int(p.y / scale)) for p in shape.parts()],
        )
        rgb_for_embedding = work
        if embed:
            vector = np.asarray(
                models["embedder"].compute_face_descriptor(rgb_for_embedding, shape), dtype="<f4"
            )
            face.embedding = vector.tobytes()
            chip = dlib.get_face_chip(rgb_for_embedding, shape, size=CROP_SIZE)
            out = io.BytesIO()
            Image.fromarray(chip).save(out, "JPEG", quality=90)
            face.crop = out.getvalue()
        result.faces.append(face)
    return result


def analyze_many(
    items: list[tuple[bytes, bool]], faces: bool, cnn: bool, embedder: str = "dlib"
) -> list[ImageAnalysis]:
    """Batch entry point for worker processes: ``(data, embed)`` pairs."""
    return [analyze(data, embed=embed, faces=faces, cnn=cnn, embedder=embedder) for data, embed in items]
