"""The forgetting audit measures something: LiRA over the SISA shards, and the retrain proof.

Issue 12, defect 12: on a model trained on every analysed photo, the audit had no
non-members and printed ``AUC None``. Here every one of the ten LFW people is trained on
(nobody is held back), and the audit must still report real numbers: the forgotten
person's photos against the photos of people their shard never learned, scored against
the shards that never saw them; and the shard retrained from scratch without them must
have the unlearned model's weights digest. Real dlib embeddings of the shared LFW photos;
one analysed workspace per module, copied for each test that changes it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import SGDClassifier
from sqlalchemy import select

from conftest import add_source_with_policy, cli, import_consent_csv, shared_faces_dir
from disgorge import Workspace
from disgorge.catalog.models import Asset
from disgorge.training import MemoryCheckpoints, SISAClassifier
from disgorge.training.face_id import FaceIdClassifier
from disgorge.training.forgetting import lira_audit, weights_digest
from disgorge.training.registry import load_training_data

FORGET = "Tony_Blair"


@dataclass
class Lfw:
    template: Path  # closed, analysed, dataset faces@1.0.0 of all 100 photos; copy before changing
    X: np.ndarray
    y: np.ndarray  # names
    ids: list[str]


@pytest.fixture(scope="module")
def lfw(tmp_path_factory: pytest.TempPathFactory) -> Lfw:
    folder = shared_faces_dir("lfw10x10")
    root = tmp_path_factory.mktemp("forgetting")
    names = sorted(p.name for p in folder.iterdir() if p.is_dir())
    with Workspace.init(root / "ws", actor="tester") as ws:
        add_source_with_policy(ws, "lfw")
        ws.ingest(folder, source="lfw", subject_from="dirname", at="2013-02-01")
        granted = [f"{n},biometric_processing,granted,2013-01-05" for n in names]
        import_consent_csv(ws, root / "consent.csv", granted, at="2013-01-05")
        ws.analyze(workers=2)
        build = ws.build_dataset("faces", purpose="ai_training", at="2014-01-01")
        assert build.members == 100  # every analysed photo is in the training set
        name_of = {ws.subject_ref(n): n for n in names}
        with ws.reader() as session:
            data = load_training_data(session, ws.vault, sorted(session.scalars(select(Asset.id))))
    y = np.asarray([name_of[r] for r in data.labels])
    return Lfw(root / "ws", data.X, y, list(data.asset_ids))


@pytest.fixture
def ws(lfw: Lfw, tmp_path: Path):
    shutil.copytree(lfw.template, tmp_path / "ws")
    w = Workspace.open(tmp_path / "ws", actor="tester")
    yield w
    w.close()


def _ran(audit: dict) -> dict:
    assert audit["ran"] is True, audit.get("reason")
    assert audit["members"] == 10 and audit["non_members"] > 0
    assert all(isinstance(audit[k], float) for k in ("auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr"))
    assert len(audit["member_scores"]) == 10
    return audit


def test_a_model_trained_on_everyone_is_audited_with_numbers(ws: Workspace) -> None:
    ws.train_model("face-id", dataset="faces@1.0.0", shards=4, slices=2)
    # before forgetting: they are members, and the attack sees it
    audit = ws.model_audit("face-id", forgotten=[FORGET])
    assert (audit["photos"], audit["ever_trained_on"], audit["still_trained_on_them"]) == (10, 10, 10)
    mia = _ran(audit["membership_inference"])
    assert mia["non_members"] >= 60  # the people of the three other shards
    assert mia["auc"] > 0.9 and mia["tpr_at_1pct_fpr"] > 0
    assert audit["retrained_from_scratch"]["identical"] is False  # it still holds them
    assert audit["forgotten_exactly"] is False

    result = ws.unlearn_model("face-id", subjects=[FORGET], reason="art. 17 request")
    fa = result["forgetting_audit"]
    before, after = _ran(fa["before"]), _ran(fa["after"])
    assert before["auc"] == mia["auc"]
    # after: every photo's score falls (the AUC of one person against many varies with who
    # shares their shard: 0.33-0.89 on these photos at 4, 5, 8 shards; LiRA reads the
    # low-FPR end, and the proof is the digest below)
    assert after["auc"] < before["auc"] and after["tpr_at_1pct_fpr"] <= before["tpr_at_1pct_fpr"]
    assert np.mean(after["member_scores"]) < np.mean(before["member_scores"]) - 2
    assert after["mean_confidence_members"] < before["mean_confidence_members"]
    proof = fa["retrained_from_scratch"]
    assert proof["ran"] and proof["identical"] is True
    assert [r["shard"] for r in proof["shards"]] == result["shards_retrained"]

    again = ws.model_audit("face-id@2", forgotten=[FORGET])
    assert (again["ever_trained_on"], again["still_trained_on_them"]) == (10, 0)
    assert again["membership_inference"]["auc"] == after["auc"]
    assert again["retrained_from_scratch"]["identical"] is True and again["forgotten_exactly"] is True
    assert again["retrained_from_scratch"]["model_digest"] == proof["model_digest"]
    # the audit is recorded with the model version
    assert ws.model("face-id@2")["forgetting_audit"] == json.loads(json.dumps(fa))


def test_the_audit_says_why_when_it_cannot_run(ws: Workspace, lfw: Lfw) -> None:
    ws.train_model("face-id", dataset="faces@1.0.0", shards=2, slices=2)
    audit = ws.model_audit("face-id", forgotten=[FORGET])
    mia = audit["membership_inference"]
    assert mia["ran"] is False and "at least 3" in mia["reason"] and mia["members"] == 10
    assert "auc" not in mia  # no number rather than a null one
    # the retrain check needs no non-members: it runs on two shards too
    assert audit["retrained_from_scratch"]["ran"] is True
    result = ws.unlearn_model("face-id", subjects=[FORGET])
    assert result["forgetting_audit"]["after"]["ran"] is False
    assert result["forgetting_audit"]["retrained_from_scratch"]["identical"] is True
    # a person this model never trained on
    ws.train_model("other", dataset="faces@2.0.0", shards=4, slices=2)
    never = ws.model_audit("other", forgotten=[FORGET])
    assert never["ever_trained_on"] == 0 and never["forgotten_exactly"] is None
    assert never["membership_inference"]["ran"] is False
    assert "trained on any of their photos" in never["membership_inference"]["reason"]


def test_the_certificate_carries_the_numbers_and_the_proof(ws: Workspace) -> None:
    ws.train_model("face-id", dataset="faces@1.0.0", shards=4, slices=2)
    erasure = ws.erase("subject", FORGET, reason="GDPR Art. 17 #12")
    [forgetting] = ws.erasure_certificate(erasure["id"])["body"]["forgetting"]
    fa = forgetting["forgetting_audit"]
    assert fa["before"]["ran"] and fa["after"]["ran"]
    assert fa["before"]["non_members"] > 0 and fa["before"]["auc"] > 0.9
    assert fa["after"]["auc"] < fa["before"]["auc"]
    assert fa["retrained_from_scratch"]["identical"] is True
    # later, their photos are gone: the attack has nothing to attack with, and says so;
    # the retrain proof still runs
    audit = ws.model_audit("face-id", forgotten=[FORGET])
    assert audit["membership_inference"]["ran"] is False
    assert "erased" in audit["membership_inference"]["reason"]
    assert audit["retrained_from_scratch"]["identical"] is True and audit["forgotten_exactly"] is True


def test_incremental_shards_retrained_from_scratch_have_the_same_digest(lfw: Lfw) -> None:
    """partial_fit shards restart from a checkpoint: the digest shows that is exact."""
    model = SISAClassifier(
        SGDClassifier(loss="log_loss", alpha=1e-3, random_state=0),
        n_shards=4,
        n_slices=4,
        random_state=7,
        checkpoints=MemoryCheckpoints(),
    ).fit(lfw.X, lfw.y, sample_ids=lfw.ids, groups=list(lfw.y))
    where = {i: k for k, i in enumerate(lfw.ids)}

    def loader(ids):
        rows = [where[i] for i in ids]
        return lfw.X[rows], lfw.y[rows]

    # one photo from the last slice of a shard that keeps its classes: it restarts late
    shard = max(model.shards_, key=lambda s: len(s.slices[-1]))
    photo = shard.slices[-1][0]
    digests = model.shard_digests()
    assert model.retrain_from_scratch([shard.index], loader)[shard.index] == digests[shard.index]
    assert (
        model.retrain_from_scratch([shard.index], loader, without=[photo])[shard.index]
        != digests[shard.index]
    )
    report = model.unlearn([photo], loader)
    assert report.slices_retrained == 1  # from the last checkpoint, not from scratch
    assert (
        model.retrain_from_scratch([shard.index], loader)[shard.index] == model.shard_digests()[shard.index]
    )
    assert weights_digest(None) != weights_digest(shard.model)


def test_lira_scores_members_above_non_members_on_shards(lfw: Lfw) -> None:
    model = SISAClassifier(
        FaceIdClassifier(),
        n_shards=5,
        n_slices=1,
        aggregation="max_score",
        random_state=3,
        checkpoints=MemoryCheckpoints(),
    ).fit(lfw.X, lfw.y, sample_ids=lfw.ids, groups=list(lfw.y))
    home = {str(c): s.index for s in model.shards_ for c in s.classes}
    mine = [k for k, n in enumerate(lfw.y) if n == FORGET]
    rest = [k for k, n in enumerate(lfw.y) if n != FORGET]
    audit = lira_audit(
        model,
        members_X=lfw.X[mine],
        member_shards=[home[FORGET]] * len(mine),
        member_subjects=[FORGET] * len(mine),
        others_X=lfw.X[rest],
        other_subjects=lfw.y[rest].tolist(),
        subject_shard=home,
    )
    assert audit["ran"] and audit["reference_models"] == 4
    # photos of the attacked shard's other people are members of it, not non-members
    assert audit["non_members"] == sum(1 for k in rest if home[lfw.y[k]] != home[FORGET])
    assert audit["auc"] > 0.9
    nothing = lira_audit(
        model,
        members_X=lfw.X[:0],
        member_shards=[],
        member_subjects=[],
        others_X=lfw.X[rest],
        other_subjects=lfw.y[rest].tolist(),
        subject_shard=home,
    )
    assert nothing["ran"] is False and "no member photos" in nothing["reason"]


def test_cli_model_audit_prints_numbers_or_reasons(ws: Workspace) -> None:
    ws.train_model("face-id", dataset="faces@1.0.0", shards=4, slices=2)
    ws.unlearn_model("face-id", subjects=[FORGET])
    home = str(ws.config.home)
    ws.close()
    w = ["--workspace", home]
    out = cli("model", "audit", "face-id@2", "--forgotten", FORGET, "--json", *w)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert isinstance(result["membership_inference"]["auc"], float)
    assert result["forgotten_exactly"] is True and FORGET not in out.stdout
    out = cli("model", "audit", "face-id@2", "--forgotten", FORGET, *w)
    assert out.returncode == 0, out.stderr
    assert "None" not in out.stdout and "AUC 0." in out.stdout and "identical" in out.stdout
    out = cli("model", "show", "face-id@2", *w)
    assert out.returncode == 0, out.stderr


def test_forgetting_one_photo_of_a_person_still_known_is_noted(ws: Workspace, lfw: Lfw) -> None:
    ws.train_model("face-id", dataset="faces@1.0.0", shards=4, slices=2)
    photo = next(i for i, n in zip(lfw.ids, lfw.y, strict=True) if n == FORGET)
    fa = ws.unlearn_model("face-id", asset_ids=[photo])["forgetting_audit"]
    before, after = fa["before"], fa["after"]
    assert before["ran"] and before["members"] == 1 and "note" not in before
    # the shard still knows the face from nine photos: the attack says so, the proof decides
    assert after["ran"] and "still learned from other photos" in after["note"]
    assert fa["retrained_from_scratch"]["identical"] is True
