"""Training that can forget: SISA exact unlearning over any scikit-learn style classifier."""

from .checkpoints import CheckpointStore, DirectoryCheckpoints, MemoryCheckpoints
from .sisa import AGGREGATIONS, SISAClassifier, UnlearnReport

__all__ = [
    "AGGREGATIONS",
    "CheckpointStore",
    "DirectoryCheckpoints",
    "MemoryCheckpoints",
    "SISAClassifier",
    "UnlearnReport",
]
