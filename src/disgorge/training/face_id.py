"""The built-in face-identification estimator: a linear classifier with an open-set gate.

SISA shards by subject, and in face identification the label *is* the subject, so each
shard model knows a disjoint set of people. A plain classifier would still answer with
one of its own people for any face, and aggregating such answers drowns the one shard
that knows the person. So each class score is multiplied by a gate: how close the face
is to that shard's nearest class centroid (a logistic step around dlib's same-person
distance, 0.6). A shard that knows nobody like the face scores near zero, and the
ensemble (aggregation ``max_score``) takes the best gated score.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["FaceIdClassifier"]


class FaceIdClassifier:
    """scikit-learn style: ``fit(X, y)`` returns self; learned state ends in ``_``."""

    def __init__(
        self,
        C: float = 10.0,
        max_iter: int = 2000,
        gate_distance: float = 0.6,
        gate_softness: float = 0.05,
        random_state: int | None = None,
    ) -> None:
        self.C = C
        self.max_iter = max_iter
        self.gate_distance = gate_distance
        self.gate_softness = gate_softness
        self.random_state = random_state

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {
            "C": self.C,
            "max_iter": self.max_iter,
            "gate_distance": self.gate_distance,
            "gate_softness": self.gate_softness,
            "random_state": self.random_state,
        }

    def set_params(self, **params: Any) -> FaceIdClassifier:
        for key, value in params.items():
            setattr(self, key, value)
        return self

    def fit(self, X: np.ndarray, y: np.ndarray) -> FaceIdClassifier:
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        self.centroids_ = np.stack([X[y == c].mean(axis=0) for c in self.classes_])
        self.linear_ = None
        if len(self.classes_) >= 2:
            from sklearn.linear_model import LogisticRegression

            self.linear_ = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(X, y)
        return self

    def gate(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        # |x - c|^2 = |x|^2 + |c|^2 - 2 x.c, in blocks of rows: never an (n, classes, 128)
        # array (for 1,000 faces against 5,000 people that would be 5 GB)
        c2 = (self.centroids_**2).sum(axis=1)
        d = np.empty(len(X))
        for start in range(0, len(X), 1024):
            block = X[start : start + 1024]
            sq = (block**2).sum(axis=1)[:, None] + c2[None, :] - 2.0 * (block @ self.centroids_.T)
            d[start : start + 1024] = np.sqrt(np.maximum(sq.min(axis=1), 0.0))
        z = np.clip((d - self.gate_distance) / self.gate_softness, -50, 50)
        return 1.0 / (1.0 + np.exp(z))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities times the gate (rows sum to at most 1)."""
        X = np.asarray(X, dtype=np.float64)
        base = self.linear_.predict_proba(X) if self.linear_ is not None else np.ones((len(X), 1))
        return base * self.gate(X)[:, None]

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
