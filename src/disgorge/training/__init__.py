"""Training that can forget: SISA exact unlearning over any scikit-learn style classifier,
or a PyTorch module (:class:`TorchEstimator`, in the ``torch`` extra)."""

from .checkpoints import CheckpointStore, DirectoryCheckpoints, MemoryCheckpoints
from .sisa import AGGREGATIONS, PARTITIONS, SISAClassifier, UnlearnReport
from .torch_adapter import TorchEstimator  # imports torch only when used

__all__ = [
    "AGGREGATIONS",
    "PARTITIONS",
    "CheckpointStore",
    "DirectoryCheckpoints",
    "MemoryCheckpoints",
    "SISAClassifier",
    "TorchEstimator",
    "UnlearnReport",
]
