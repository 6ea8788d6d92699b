"""The forgetting audit: does a model still behave as if it saw the forgotten photos?

Two checks, the second one the proof:

1. **Membership inference, LiRA offline with a fixed variance** (Carlini et al., "Membership
   Inference Attacks From First Principles", S&P 2022). A SISA model brings its own shadow
   models: shards are cut by subject, so for any photo every shard except its subject's
   never saw it, nor anyone like it in its data. For a photo ``x`` and the shard ``t``
   under attack, the reference ("OUT") models are the other shards that never saw ``x``'s
   subject; the attack's score is how far ``t``'s logit-scaled confidence on ``x`` lies
   above theirs: ``z = (phi_t(x) - mean_j phi_j(x)) / sigma``, with one ``sigma`` pooled
   over all photos (the fixed-variance variant: a handful of references per photo give no
   usable per-photo variance). Members are the forgotten photos, scored against the shard
   that trained them; non-members are other analysed photos that shard never saw (people
   of other shards, and photos never trained on at all), scored against the same shards.
   No photo has to be held out at training time. Reported: AUC, TPR at 1% and 0.1% FPR,
   and each forgotten photo's score. After exact unlearning the forgotten photos score
   like non-members (AUC near 0.5 when whole subjects were forgotten).
2. **Retraining from scratch gives the same weights.** The shards that unlearning touched
   are trained again from their first slice, without the forgotten photos, into
   throw-away checkpoints; the digest of their learned weights must equal the unlearned
   model's (SISA training is deterministic: fixed partition, hash order, seeded estimator).

Every result says plainly when it could not be computed, and why (``ran: false`` and a
``reason``), instead of ``null`` numbers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["METHOD", "MIN_SHARDS", "lira_audit", "retrain_check", "weights_digest"]

METHOD = "lira-offline-fixed-variance over SISA shards"
#: the shard under attack, the subject's own shard, and at least one that never saw them
MIN_SHARDS = 3
_EPS = 1e-6
_SIGMA_FLOOR = 1e-3


def weights_digest(estimator: Any) -> str:
    """sha256 over an estimator's learned state: every attribute ending in ``_`` (the
    scikit-learn convention), arrays by dtype, shape and bytes, nested estimators
    recursively. ``None`` (an empty shard) has a digest too."""
    h = hashlib.sha256()
    _feed(h, estimator, depth=0)
    return h.hexdigest()


def _feed(h: Any, value: Any, depth: int) -> None:
    if depth > 8:
        raise ValueError("estimator state nested too deep to digest")
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        h.update(f"{type(value).__name__}:{value!r};".encode())
    elif isinstance(value, np.generic):
        _feed(h, value.item(), depth)
    elif isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        h.update(f"ndarray:{arr.dtype.str}:{arr.shape};".encode())
        if arr.dtype == object:
            for item in arr.ravel().tolist():
                _feed(h, item, depth + 1)
        else:
            h.update(arr.tobytes())
    elif isinstance(value, (list, tuple)):
        h.update(f"{type(value).__name__}:{len(value)};".encode())
        for item in value:
            _feed(h, item, depth + 1)
    elif isinstance(value, dict):
        h.update(f"dict:{len(value)};".encode())
        for key in sorted(value, key=repr):
            _feed(h, key, depth + 1)
            _feed(h, value[key], depth + 1)
    elif hasattr(value, "__dict__"):
        learned = {k: v for k, v in vars(value).items() if k.endswith("_") and not k.startswith("_")}
        h.update(f"{type(value).__module__}.{type(value).__qualname__}:{len(learned)};".encode())
        for key in sorted(learned):
            _feed(h, key, depth + 1)
            _feed(h, learned[key], depth + 1)
    else:
        h.update(f"{type(value).__name__}:{value!r};".encode())


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def shard_confidences(model: Any, X: np.ndarray) -> np.ndarray:
    """(shards, photos): each shard model's top score on each photo (gated for face-id);
    an empty shard is sure of nothing (0)."""
    out = np.zeros((len(model.shards_), len(X)))
    if not len(X):
        return out
    for shard in model.shards_:
        if shard.model is not None:
            scores, _ = model._shard_scores(shard, X)
            out[shard.index] = np.asarray(scores, dtype=float).max(axis=1)
    return out


def _rates(member: np.ndarray, non_member: np.ndarray) -> dict[str, float]:
    """AUC (ties count half) and TPR at FPR <= 1% and <= 0.1% of telling members from
    non-members by score (higher: member). With fewer than 1/FPR non-members the
    threshold is the highest non-member score: the TPR is then at zero false positives."""
    s_out = np.sort(non_member)
    lo = np.searchsorted(s_out, member, side="left")
    hi = np.searchsorted(s_out, member, side="right")
    auc = (lo.sum() + 0.5 * (hi - lo).sum()) / (len(member) * len(non_member))
    out = {"auc": round(float(auc), 4)}
    for name, fpr in (("tpr_at_1pct_fpr", 0.01), ("tpr_at_0.1pct_fpr", 0.001)):
        allowed = int(np.floor(fpr * len(s_out)))  # non-members that may score above
        threshold = s_out[len(s_out) - 1 - allowed]
        out[name] = round(float((member > threshold).mean()), 4)
    return out


def lira_audit(
    model: Any,
    *,
    members_X: np.ndarray,
    member_shards: Sequence[int],
    member_subjects: Sequence[str],
    others_X: np.ndarray,
    other_subjects: Sequence[str],
    subject_shard: dict[str, int],
    member_ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """LiRA (offline, fixed variance) against the shards that trained the members.

    ``member_shards[i]`` is the shard that trained (or had trained) member photo ``i``
    (``member_ids[i]``, when given, lets the result note photo-level forgetting);
    ``subject_shard`` maps every subject any shard of this model ever learned to its shard
    (the partition is fixed at first training); ``others_X`` are candidate non-members:
    for each attacked shard, those whose subject it never learned are scored against it.
    """
    targets = sorted(set(int(k) for k in member_shards))
    base: dict[str, Any] = {
        "method": METHOD,
        "members": len(members_X),
        "non_members": 0,
        "reference_models": 0,
        "shards_attacked": targets,
    }
    n_shards = len(model.shards_)
    if not len(members_X):
        return {**base, "ran": False, "reason": "no member photos: none of them was trained on (or analysed)"}
    if n_shards < MIN_SHARDS:
        return {
            **base,
            "ran": False,
            "reason": f"{n_shards} shard(s): the attack needs at least {MIN_SHARDS}, so that each photo has "
            "a reference model that never saw its subject besides the one attacked",
        }
    X = np.concatenate(
        [np.asarray(members_X, float), np.asarray(others_X, float).reshape(-1, members_X.shape[1])]
    )
    conf = shard_confidences(model, X)
    phi = _logit(conf)
    live = {s.index for s in model.shards_ if s.model is not None}
    n_members = len(members_X)
    home = [subject_shard.get(str(s), -1) for s in list(member_subjects) + list(other_subjects)]
    # (photo row, attacked shard, reference shards, is member)
    games: list[tuple[int, int, list[int], bool]] = []
    for i, t in enumerate(member_shards):
        games.append((i, int(t), [j for j in sorted(live) if j not in (int(t), home[i])], True))
    for i in range(n_members, len(X)):
        for t in targets:
            if home[i] != t:  # shard t never learned this person: a non-member of t
                games.append((i, t, [j for j in sorted(live) if j not in (t, home[i])], False))
    games = [g for g in games if g[2]]
    member_games = [g for g in games if g[3]]
    other_games = [g for g in games if not g[3]]
    base["non_members"] = len({g[0] for g in other_games})
    base["reference_models"] = len(live) - 1
    if len(member_games) < n_members:
        return {
            **base,
            "ran": False,
            "reason": f"{n_members - len(member_games)} member photo(s) have no reference model: every other "
            "shard is empty or learned their subject",
        }
    if not other_games:
        return {
            **base,
            "ran": False,
            "reason": "no non-members: no other analysed photo of a person the attacked shard never learned",
        }
    means = np.asarray([phi[refs, i].mean() for i, _, refs, _ in games])
    dev = [phi[refs, i] - m for (i, _, refs, _), m in zip(games, means, strict=True) if len(refs) > 1]
    dof = sum(len(d) - 1 for d in dev)
    sigma = float(np.sqrt(sum(float((d**2).sum()) for d in dev) / dof)) if dof else _SIGMA_FLOOR
    sigma = max(sigma, _SIGMA_FLOOR)
    z = np.asarray([(phi[t, i] - m) / sigma for (i, t, _, _), m in zip(games, means, strict=True)])
    is_member = np.asarray([g[3] for g in games])
    member_z, other_z = z[is_member], z[~is_member]
    member_conf = np.asarray([conf[t, i] for i, t, _, m in games if m])
    other_conf = np.asarray([conf[t, i] for i, t, _, m in games if not m])
    # photo-level forgetting: a photo gone from its shard whose person the shard still knows
    learned = {s.index: {str(c) for c in s.classes} for s in model.shards_ if s.model is not None}
    held = {s.index: set(s.ids) for s in model.shards_}
    still_known = sum(
        1
        for i, t in enumerate(member_shards)
        if member_ids is not None
        and str(member_ids[i]) not in held[int(t)]
        and str(member_subjects[i]) in learned.get(int(t), set())
    )
    result = {
        **base,
        "ran": True,
        "non_member_scores": len(other_z),
        "sigma": round(sigma, 4),
        **_rates(member_z, other_z),
        "lowest_measurable_fpr": round(1.0 / len(other_z), 6),
        "member_scores": sorted(round(float(v), 3) for v in member_z),
        "median_non_member_score": round(float(np.median(other_z)), 3),
        "mean_confidence_members": round(float(member_conf.mean()), 4),
        "mean_confidence_non_members": round(float(other_conf.mean()), 4),
    }
    if still_known:
        result["note"] = (
            f"{still_known} forgotten photo(s) show a person the attacked shard still learned from other "
            "photos: the attack also sees that it knows the person, so its AUC stays high even when the "
            "photos were forgotten exactly; the retrain check is the proof"
        )
    return result


def retrain_check(
    model: Any, shards: Sequence[int], loader: Any, *, without: Sequence[str] | set[str] = ()
) -> dict[str, Any]:
    """Retrain ``shards`` from scratch (without ``without``) and compare weights digests
    with ``model``'s: identical digests are the proof that unlearning was exact."""
    shards = sorted({int(k) for k in shards})
    if not shards:
        return {"ran": False, "reason": "no shard was retrained: nothing to compare"}
    now = model.shard_digests()
    fresh = model.retrain_from_scratch(shards, loader, without=list(without))
    rows = [{"shard": k, "unlearned": now[k], "retrained": fresh[k]} for k in shards]
    return {
        "ran": True,
        "shards": rows,
        "identical": all(r["unlearned"] == r["retrained"] for r in rows),
        "model_digest": model.weights_digest(),
    }
