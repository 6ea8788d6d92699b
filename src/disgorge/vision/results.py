"""What analysing one image finds: its faces (box, landmarks, embedding, crop) and its
perceptual hashes.

Its own module so that the detectors that produce these records — dlib's in
:mod:`.faces`, the portrait stand-in in :mod:`.portrait` — both import it and not each
other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CROP_SIZE", "Face", "ImageAnalysis"]

#: side in pixels of a face crop (the aligned chip, stored as JPEG)
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
    #: hashes of the centre crops (CENTRE_CROPS), for copies cut by a few percent
    phash_crops: list[bytes] = field(default_factory=list)
    error: str | None = None
