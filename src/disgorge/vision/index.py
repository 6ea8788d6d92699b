"""The face-embedding index: real deletion, not tombstones.

A faiss ``IndexIDMap2`` over an exact ``IndexFlatL2`` (128-d dlib embeddings), keyed by
the id of the embedding's catalog row. ``remove`` drops the vectors from the in-memory
arrays and the index file is rewritten whole (written to a temporary file, fsynced, and
renamed over the old one), so a removed vector is not left behind in the file — the
erasure verifier scans the file to prove it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .models import FacesUnavailable

__all__ = ["DIM", "SAME_PERSON_DISTANCE", "FaceIndex"]

DIM = 128
#: dlib's threshold for "same person" (Euclidean distance between embeddings)
SAME_PERSON_DISTANCE = 0.6


def _faiss():
    try:
        import faiss
    except ImportError:
        raise FacesUnavailable(
            "the face index needs the faces extra: pip install 'disgorge[faces]'"
        ) from None
    return faiss


class FaceIndex:
    def __init__(self, path: Path) -> None:
        self.path = path
        faiss = _faiss()
        if path.exists():
            self.index = faiss.read_index(str(path))
        else:
            self.index = faiss.IndexIDMap2(faiss.IndexFlatL2(DIM))

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: list[int], vectors: list[bytes]) -> None:
        if not ids:
            return
        matrix = np.frombuffer(b"".join(vectors), dtype="<f4").reshape(len(ids), DIM).astype(np.float32)
        self.index.add_with_ids(matrix, np.asarray(ids, dtype=np.int64))

    def remove(self, ids: Iterable[int]) -> int:
        wanted = np.asarray(list(ids), dtype=np.int64)
        if not len(wanted):
            return 0
        return int(self.index.remove_ids(wanted))

    def ids(self) -> set[int]:
        faiss = _faiss()
        return set(faiss.vector_to_array(self.index.id_map).tolist())

    def search(
        self, vector: bytes, *, k: int = 50, max_distance: float = SAME_PERSON_DISTANCE
    ) -> list[tuple[int, float]]:
        """Neighbours within ``max_distance`` (Euclidean), nearest first."""
        if not len(self):
            return []
        query = np.frombuffer(vector, dtype="<f4").reshape(1, DIM).astype(np.float32)
        squared, ids = self.index.search(query, min(k, len(self)))
        out = []
        for d2, i in zip(squared[0], ids[0], strict=True):
            if i < 0:
                continue
            dist = float(np.sqrt(max(d2, 0.0)))
            if dist <= max_distance:
                out.append((int(i), dist))
        return out

    def save(self) -> None:
        """Rewrite the index file whole and atomically."""
        faiss = _faiss()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        faiss.write_index(self.index, str(tmp))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
