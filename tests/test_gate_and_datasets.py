"""The consent gate and dataset versions built through it."""

from __future__ import annotations

import hashlib
import multiprocessing
from pathlib import Path

import pytest

from conftest import tiny_photos
from disgorge import ConsentDenied, InvalidInput, NotFound, Workspace
from disgorge._merkle import merkle_root
from disgorge.samples import synthetic_photo

PEOPLE = ["ann", "ben", "cat", "dan"]


def _setup(
    ws: Workspace,
    tmp_path: Path,
    consent: str,
    allows=("ai_training", "ai_inference", "biometric_processing"),
):
    ws.add_policy("app", "2013", text=b"policy", effective_from="2013-01-01", allows=list(allows))
    folder = tiny_photos(tmp_path / "photos", PEOPLE, 3)
    ws.ingest(folder, source="app", subject_from="dirname", at="2013-02-01")
    path = tmp_path / "consent.csv"
    path.write_text("subject,purpose,decision,at\n" + consent)
    ws.import_consent(path)


def _shas(person: int) -> set[str]:
    return {hashlib.sha256(synthetic_photo(person, i, size=64)).hexdigest() for i in range(3)}


def test_dataset_excludes_exactly_the_refusals_with_reasons(ws: Workspace, tmp_path: Path) -> None:
    _setup(ws, tmp_path, "ben,ai_training,denied,2013-01-05\ncat,ai_training,constrained,2013-01-05\n")
    build = ws.build_dataset("faces", purpose="ai_training", at="2014-01-01")
    assert (build.version, build.members, build.excluded) == ("1.0.0", 6, 6)
    assert build.excluded_by_rule == {"consent_denied": 3, "consent_constrained": 3}
    excluded = {i["sha256"]: i for i in build.excluded_items}
    assert set(excluded) == _shas(1) | _shas(2)
    ben = ws.subject_ref("ben")
    assert all(ben in excluded[s]["reason"] and "denied" in excluded[s]["reason"] for s in _shas(1))
    info = ws.dataset("faces@1.0.0", members=True)
    assert set(info["member_sha256"]) == _shas(0) | _shas(3)
    assert info["merkle_root"] == merkle_root(_shas(0) | _shas(3))
    assert info["purpose"] == "ai_training" and info["built_at"] == "2014-01-01T00:00:00Z"


def test_consent_is_judged_as_it_stood_at_the_time(ws: Workspace, tmp_path: Path) -> None:
    _setup(
        ws,
        tmp_path,
        "ann,ai_training,denied,2013-01-05\nann,ai_training,granted,2015-01-01\n"
        "dan,ai_training,granted,2013-01-05\ndan,ai_training,revoked,2016-01-01\n",
    )
    early = ws.build_dataset("faces", purpose="ai_training", at="2014-06-01")
    assert {i["sha256"] for i in early.excluded_items} == _shas(0)  # ann's later grant does not reach back
    late = ws.build_dataset("faces", purpose="ai_training", at="2017-01-01")
    assert {i["sha256"] for i in late.excluded_items} == _shas(3)
    assert late.version == "2.0.0"  # dan's photos dropped: MAJOR
    diff = ws.dataset_diff("faces@1.0.0", "faces@2.0.0")
    assert set(diff["added"]) == _shas(0) and set(diff["removed"]) == _shas(3)


def test_versions_minor_on_additions_and_unchanged_when_same(ws: Workspace, tmp_path: Path) -> None:
    _setup(ws, tmp_path, "ann,ai_training,denied,2013-01-05\n")
    first = ws.build_dataset("faces", purpose="ai_training", at="2014-01-01")
    again = ws.build_dataset("faces", purpose="ai_training", at="2014-02-01")
    assert (first.version, first.created) == ("1.0.0", True)
    assert (again.version, again.created) == ("1.0.0", False)
    (tmp_path / "more" / "eve").mkdir(parents=True)
    (tmp_path / "more" / "eve" / "1.jpg").write_bytes(synthetic_photo(9, 1, size=64))
    ws.ingest(tmp_path / "more", source="app", subject_from="dirname")
    added = ws.build_dataset("faces", purpose="ai_training")
    assert (added.version, added.members) == ("1.1.0", 10)
    assert ws.dataset("faces")["versions"] == ["1.0.0", "1.1.0"]
    other_purpose = ws.build_dataset("faces", purpose="ai_inference")
    assert other_purpose.version == "2.0.0"


def test_policy_rules(ws: Workspace, tmp_path: Path) -> None:
    _setup(
        ws,
        tmp_path,
        "ann,biometric_processing,granted,2013-01-05\n",
        allows=("ai_inference", "biometric_processing"),
    )
    with pytest.raises(ConsentDenied, match="policy_disallows: 12"):
        ws.build_dataset("t", purpose="ai_training", at="2014-01-01")
    bio = ws.build_dataset("bio", purpose="biometric_processing", at="2014-01-01")
    # biometric data needs explicit consent: the policy alone is not enough
    assert bio.members == 3 and bio.excluded_by_rule == {"no_explicit_consent": 9}
    with pytest.raises(ConsentDenied, match="no_policy: 12"):
        ws.build_dataset("old", purpose="ai_inference", at="2012-01-01")


def test_depicted_subjects_consent_counts(ws: Workspace, tmp_path: Path) -> None:
    ws.add_policy("app", "2013", text=b"p", effective_from="2013-01-01", allows=["ai_training"])
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "solo.jpg").write_bytes(synthetic_photo(1, 1))
    (folder / "group.jpg").write_bytes(synthetic_photo(1, 2))
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,subject,depicted\nsolo.jpg,owner,\ngroup.jpg,owner,bystander\n")
    ws.ingest(folder, source="app", manifest=manifest)
    consent = tmp_path / "c.csv"
    consent.write_text("subject,purpose,decision,at\nbystander,ai_training,denied,2013-01-01\n")
    ws.import_consent(consent)
    build = ws.build_dataset("d", purpose="ai_training")
    assert build.members == 1
    [item] = build.excluded_items
    assert item["rule"] == "consent_denied" and item["reason"].startswith(
        f"depicted {ws.subject_ref('bystander')}"
    )


def test_per_photo_consent_is_honoured(ws: Workspace, tmp_path: Path) -> None:
    _setup(ws, tmp_path, "ann,ai_training,denied,2013-01-05\n")
    sha = sorted(_shas(0))[0]
    per_photo = tmp_path / "per-photo.csv"
    per_photo.write_text(f"subject,purpose,decision,at,asset\nann,ai_training,granted,2013-03-01,{sha}\n")
    ws.import_consent(per_photo)
    build = ws.build_dataset("d", purpose="ai_training", at="2014-01-01")
    assert sha not in {i["sha256"] for i in build.excluded_items}
    assert len([i for i in build.excluded_items if i["sha256"] in _shas(0)]) == 2


def test_bad_dataset_requests(ws: Workspace, tmp_path: Path) -> None:
    _setup(ws, tmp_path, "")
    with pytest.raises(InvalidInput, match="unknown purpose 'selling'"):
        ws.build_dataset("d", purpose="selling")
    with pytest.raises(NotFound, match="no source named 'nope'"):
        ws.build_dataset("d", purpose="ai_training", source="nope")
    with pytest.raises(InvalidInput, match="no active photos"):
        ws.build_dataset("d", purpose="ai_training", subjects=["nobody-here"])
    with pytest.raises(NotFound, match="no dataset named 'd'"):
        ws.dataset("d@1.0.0")
    ws.build_dataset("d", purpose="ai_training")
    with pytest.raises(NotFound, match=r"no version 9.9.9 \(versions: 1.0.0\)"):
        ws.dataset("d@9.9.9")
    with pytest.raises(InvalidInput, match="'@'"):
        ws.build_dataset("a@b", purpose="ai_training")


def test_zero_eligible_items_builds_no_empty_version(ws: Workspace, tmp_path: Path) -> None:
    _setup(ws, tmp_path, "".join(f"{p},ai_training,revoked,2013-01-05\n" for p in PEOPLE))
    with pytest.raises(
        ConsentDenied, match=r"none of the 12 selected photos .*\(consent_revoked: 12\); no version built"
    ):
        ws.build_dataset("d", purpose="ai_training", at="2014-01-01")
    with pytest.raises(NotFound):
        ws.dataset("d")


def test_subject_selection(ws: Workspace, tmp_path: Path) -> None:
    _setup(ws, tmp_path, "")
    build = ws.build_dataset("two", purpose="ai_training", subjects=["ann", ws.subject_ref("dan")])
    assert set(ws.dataset("two", members=True)["member_sha256"]) == _shas(0) | _shas(3)
    assert build.members == 6


def _build_in_process(root: str, queue) -> None:
    with Workspace.open(root) as ws:
        queue.put(ws.build_dataset("race", purpose="ai_training", at="2014-01-01").to_dict())


def test_concurrent_builds_of_one_name_are_serialised(ws: Workspace, tmp_path: Path) -> None:
    _setup(ws, tmp_path, "")
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_build_in_process, args=(str(ws.root), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted(r["created"] for r in results) == [False, True]
    assert {r["version"] for r in results} == {"1.0.0"}
    assert ws.dataset("race")["versions"] == ["1.0.0"]


def test_consent_check_per_subject(ws: Workspace, tmp_path: Path) -> None:
    _setup(ws, tmp_path, "ben,ai_training,granted,2013-01-05\nben,ai_training,revoked,2016-01-01\n")
    then = ws.consent_check("ben", "ai_training", at="2015-01-01")
    now = ws.consent_check("ben", "ai_training")
    assert then["allowed"] and then["covered"] == 3
    assert not now["allowed"] and {i["rule"] for i in now["items"]} == {"consent_revoked"}


def _asset_ids(ws: Workspace, shas: set[str]) -> set[str]:
    from sqlalchemy import select

    from disgorge.catalog.models import Asset

    with ws.reader() as session:
        return set(session.scalars(select(Asset.id).where(Asset.sha256.in_(shas))))


def test_a_derived_version_stores_its_drops_not_a_copy_and_chains_flatten(
    ws: Workspace, tmp_path: Path
) -> None:
    """Deriving a version without a few photos (unlearning, erasure) writes those few rows:
    members, root, diff and lineage read the base's rows minus the drops."""
    from sqlalchemy import func, select

    from disgorge.catalog.models import DatasetDrop, DatasetMemberRow, DatasetVersion
    from disgorge.datasets import derive_without
    from disgorge.datasets.build import find_dataset

    _setup(ws, tmp_path, "")
    ws.build_dataset("faces", purpose="ai_training", at="2014-01-01")
    everyone = _shas(0) | _shas(1) | _shas(2) | _shas(3)
    with ws.sessions.begin() as session:
        second = derive_without(
            session, "faces@1.0.0", _asset_ids(ws, _shas(1)), at=ws_now(), actor="t", reason="r"
        )
        third = derive_without(
            session, f"faces@{second.version}", _asset_ids(ws, _shas(2)), at=ws_now(), actor="t", reason="r"
        )
        again = derive_without(
            session, f"faces@{second.version}", _asset_ids(ws, _shas(2)), at=ws_now(), actor="t", reason="r"
        )
        assert again.artifact_id == third.artifact_id  # idempotent: the same drops give the same version
        base = find_dataset(session, "faces@1.0.0").artifact_id
        assert (second.members_of, third.members_of) == (base, base)  # a chain reads the first rows
        stored = dict(
            session.execute(
                select(DatasetMemberRow.dataset_id, func.count()).group_by(DatasetMemberRow.dataset_id)
            ).all()
        )
        assert stored == {base: 12}
        drops = dict(
            session.execute(
                select(DatasetDrop.dataset_id, func.count()).group_by(DatasetDrop.dataset_id)
            ).all()
        )
        assert drops == {second.artifact_id: 3, third.artifact_id: 6}
        assert session.get(DatasetVersion, third.artifact_id).merkle_root == ""  # computed when asked
    assert (second.version, third.version) == ("2.0.0", "3.0.0")
    info = ws.dataset("faces@3.0.0", members=True)
    assert set(info["member_sha256"]) == _shas(0) | _shas(3) and info["members"] == 6
    assert info["merkle_root"] == merkle_root(_shas(0) | _shas(3))
    assert set(ws.dataset("faces@1.0.0", members=True)["member_sha256"]) == everyone  # untouched
    diff = ws.dataset_diff("faces@1.0.0", "faces@3.0.0")
    assert set(diff["removed"]) == _shas(1) | _shas(2) and diff["added"] == []
    # the gate building the same content again recognises the derived version by its root
    revoked = tmp_path / "revoked.csv"
    revoked.write_text(
        "subject,purpose,decision,at\nben,ai_training,denied,2015-01-01\ncat,ai_training,denied,2015-01-01\n"
    )
    ws.import_consent(revoked)
    same = ws.build_dataset("faces", purpose="ai_training", at="2016-01-01")
    assert (same.version, same.created, same.merkle_root) == ("3.0.0", False, info["merkle_root"])


def ws_now():
    from disgorge._time import utcnow

    return utcnow()
