"""The portrait descriptor: a deliberately simple stand-in for a face embedding.

This is **not a face recogniser**. It exists so that the whole pipeline (consent-gated
analysis, the face index, SISA training, prediction, unlearning, erasure) can run on the
drawn portraits of :func:`disgorge.samples.synthetic_photo` — which dlib does not see as
faces — with only the core dependencies installed, and with embeddings that honestly come
from the pixels of those images.

It assumes every photo is a centred portrait: the "face" is the centre of the frame
(:data:`CENTRE_KEEP` of each side), with no landmarks. The 128-d vector is

* a colour histogram of that region: 32 bins per RGB channel, each pixel shared between
  the two nearest bin centres (96 values, L2-normalised) — it captures skin and feature
  colours, which is what tells the drawn people apart;
* a 4x8 greyscale thumbnail of the same region, mean removed, L2-normalised and weighted
  by :data:`THUMB_WEIGHT` (32 values) — a little coarse layout;

concatenated and L2-normalised, float32. Distances are on the scale the face-id gate and
the index expect from dlib (same person below 0.6). On ``synthetic_photo`` for 20 people
x 6 poses: same person 0.07-0.49 (median 0.37), different people 0.83-1.43 (median
1.35). Among 100 people a few pairs whose random skin colours nearly coincide come
closer than 0.6 (0.03 % of cross-person pairs): colour is all that separates them.

On real photos it says little about who is depicted (lighting and clothes move it more
than identity); use the dlib embedder (extra ``faces``) there.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from .results import CROP_SIZE, Face

__all__ = [
    "CENTRE_KEEP",
    "PORTRAIT_DIM",
    "THUMB_WEIGHT",
    "portrait_box",
    "portrait_embedding",
    "portrait_face",
]

PORTRAIT_DIM = 128
#: the "face" is the centre of the frame: this fraction of its width and of its height
CENTRE_KEEP = 0.4
_HIST_BINS = 32
_THUMB_ROWS, _THUMB_COLS = 4, 8
#: weight of the (pose-sensitive) thumbnail against the (identity-carrying) histogram
THUMB_WEIGHT = 0.3


def portrait_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The centre region (left, top, right, bottom) taken as the portrait's face."""
    w = max(1, round(width * CENTRE_KEEP))
    h = max(1, round(height * CENTRE_KEEP))
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def _soft_histogram(values: np.ndarray) -> np.ndarray:
    """Histogram of values in [0, 1]; each value split linearly between its two nearest bins."""
    pos = values * _HIST_BINS - 0.5
    low = np.floor(pos).astype(np.int64)
    frac = pos - low
    hist = np.bincount(np.clip(low, 0, _HIST_BINS - 1), weights=1.0 - frac, minlength=_HIST_BINS)
    hist += np.bincount(np.clip(low + 1, 0, _HIST_BINS - 1), weights=frac, minlength=_HIST_BINS)
    return hist


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def _centre(rgb: np.ndarray) -> np.ndarray:
    left, top, right, bottom = portrait_box(rgb.shape[1], rgb.shape[0])
    return rgb[top:bottom, left:right]


def _embedding(region: np.ndarray) -> np.ndarray:
    pixels = region.reshape(-1, 3).astype(np.float64) / 255.0
    hist = np.concatenate([_soft_histogram(pixels[:, c]) for c in range(3)])
    grey = Image.fromarray(np.ascontiguousarray(region)).convert("L")
    thumb = np.asarray(grey.resize((_THUMB_COLS, _THUMB_ROWS), Image.Resampling.BOX), dtype=np.float64)
    thumb = thumb.ravel() - thumb.mean()
    vector = np.concatenate([_unit(hist), THUMB_WEIGHT * _unit(thumb)])
    return _unit(vector).astype(np.float32)


def portrait_embedding(image: Image.Image | np.ndarray) -> np.ndarray:
    """The 128-d unit-norm float32 portrait descriptor of an image (a PIL image or an RGB array)."""
    if isinstance(image, Image.Image):
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    else:
        rgb = np.asarray(image, dtype=np.uint8)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an RGB array (height, width, 3), got shape {rgb.shape}")
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError("empty image")
    return _embedding(_centre(rgb))


def portrait_face(rgb: np.ndarray, *, embed: bool) -> Face:
    """The one "face" of a portrait: the centre box, no landmarks; embedding and crop if ``embed``."""
    face = Face(box=portrait_box(rgb.shape[1], rgb.shape[0]), landmarks=[])
    if embed:
        region = _centre(rgb)
        face.embedding = _embedding(region).astype("<f4").tobytes()
        chip = Image.fromarray(np.ascontiguousarray(region)).resize((CROP_SIZE, CROP_SIZE))
        out = io.BytesIO()
        chip.save(out, "JPEG", quality=90)
        face.crop = out.getvalue()
    return face
