"""The face models: dlib's HOG/CNN detectors, 5-point landmarks, ResNet embeddings.

Weights come from the ``face-recognition-models`` PyPI package (extra ``faces``); nothing
is downloaded. That package's ``__init__`` imports ``pkg_resources``, which new setuptools
no longer ships, so the model files are located from the package folder without
importing it. Models load once per process (workers load their own).
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import DisgorgeError

__all__ = ["FacesUnavailable", "dlib_models", "model_dir"]

INSTALL_HINT = "face analysis needs the faces extra: pip install 'disgorge[faces]'"


class FacesUnavailable(DisgorgeError):
    """The ``faces`` extra (dlib, face-recognition-models, faiss) is not installed."""

    status = 501


def model_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FacesUnavailable(INSTALL_HINT)
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    if not folder.is_dir():
        raise FacesUnavailable(f"face_recognition_models has no models folder at {folder}; reinstall it")
    return folder


@cache
def dlib_models(cnn: bool = False) -> dict[str, Any]:
    """Detector, landmark predictor and embedding network (loaded once per process)."""
    try:
        import dlib
    except ImportError:
        raise FacesUnavailable(INSTALL_HINT) from None
    folder = model_dir()
    models: dict[str, Any] = {
        "hog": dlib.get_frontal_face_detector(),
        "landmarks": dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat")),
        "embedder": dlib.face_recognition_model_v1(str(folder / "dlib_face_recognition_resnet_model_v1.dat")),
    }
    if cnn:
        models["cnn"] = dlib.cnn_face_detection_model_v1(str(folder / "mmod_human_face_detector.dat"))
    return models
