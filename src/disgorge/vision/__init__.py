"""Eyes for the catalog: faces, embeddings, crops, PDQ hashes, copy and person search.

Face analysis needs the ``faces`` extra (dlib, face-recognition-models, faiss); PDQ
hashing and copy search need only the core dependencies.
"""

from .analyze import AnalyzeReport, reconcile_index, run_analyze
from .index import SAME_PERSON_DISTANCE, FaceIndex
from .models import FacesUnavailable
from .phash import DEFAULT_MAX_DISTANCE, HashMatrix, pdq, pdq_dihedral
from .search import Match, find_copies, find_faces, load_hash_matrix

__all__ = [
    "DEFAULT_MAX_DISTANCE",
    "SAME_PERSON_DISTANCE",
    "AnalyzeReport",
    "FaceIndex",
    "FacesUnavailable",
    "HashMatrix",
    "Match",
    "find_copies",
    "find_faces",
    "load_hash_matrix",
    "pdq",
    "pdq_dihedral",
    "reconcile_index",
    "run_analyze",
]
