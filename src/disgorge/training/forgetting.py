"""The forgetting audit: does a model still behave as if it saw the forgotten photos?

A membership-inference test with the simplest strong attack: the model's confidence
(its top aggregated score) on a photo. Photos it was trained on score higher than photos
it never saw; the attack's AUC and its true-positive rate at 1% false positives measure
how well membership can be told. After exact unlearning, the forgotten photos must look
like never-seen ones — the same AUC as a model retrained from scratch without them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["membership_inference"]


def _roc(scores_in: np.ndarray, scores_out: np.ndarray) -> tuple[float, float]:
    """(AUC, TPR at 1% FPR) of telling ``scores_in`` (members) from ``scores_out``."""
    if not len(scores_in) or not len(scores_out):
        return float("nan"), float("nan")
    s_in = np.sort(scores_in)
    s_out = np.sort(scores_out)
    # AUC = P(member score > non-member score) + 0.5 P(tie)
    greater = np.searchsorted(s_out, s_in, side="left").sum()
    ties = (np.searchsorted(s_out, s_in, side="right") - np.searchsorted(s_out, s_in, side="left")).sum()
    auc = (greater + 0.5 * ties) / (len(s_in) * len(s_out))
    threshold = np.quantile(s_out, 0.99, method="higher")
    tpr = float((scores_in > threshold).mean())
    return float(auc), tpr


def membership_inference(model: Any, members: np.ndarray, non_members: np.ndarray) -> dict[str, Any]:
    """Attack ``model`` with confidence scores; members are the (possibly forgotten) photos."""
    conf_in = model.predict_proba(members).max(axis=1) if len(members) else np.zeros(0)
    conf_out = model.predict_proba(non_members).max(axis=1) if len(non_members) else np.zeros(0)
    auc, tpr = _roc(conf_in, conf_out)
    return {
        "members": len(members),
        "non_members": len(non_members),
        "auc": None if np.isnan(auc) else round(auc, 4),
        "tpr_at_1pct_fpr": None if np.isnan(tpr) else round(tpr, 4),
        "mean_confidence_members": round(float(conf_in.mean()), 4) if len(conf_in) else None,
        "mean_confidence_non_members": round(float(conf_out.mean()), 4) if len(conf_out) else None,
    }
