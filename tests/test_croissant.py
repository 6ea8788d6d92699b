"""Croissant 1.1 export of dataset versions, validated by mlcroissant (MLCommons' own checks)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import mlcroissant as mlc
import pytest
import rdflib
from typer.testing import CliRunner

from conftest import DENIED, PEOPLE, smoke_workspace
from disgorge import NotFound, Workspace
from disgorge.cli import app
from disgorge.interop.croissant import CONFORMS_TO, DISGORGE_CONTEXT

#: mlcroissant parses JSON-LD with rdflib's ConjunctiveGraph, which rdflib 7 deprecates; not ours
pytestmark = pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning")


@pytest.fixture
def lfw(tmp_path: Path) -> Iterator[Workspace]:
    """3 people x 2 photos from a scraped source; one person denied ai_training."""
    ws = smoke_workspace(tmp_path, kind="scrape")
    ws.build_dataset("faces", purpose="ai_training", at="2014-01-01")
    yield ws
    ws.close()


def load(path: Path) -> mlc.Dataset:
    """Load with mlcroissant; it raises ValidationError on any error. No warnings either."""
    dataset = mlc.Dataset(jsonld=path)
    issues = dataset.metadata.ctx.issues
    assert not issues.errors, issues.report()
    assert not issues.warnings, issues.report()
    return dataset


def test_export_validates_and_matches_the_catalog(lfw: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "faces.croissant.json"
    doc = lfw.export_croissant("faces@1.0.0", path)
    assert json.loads(path.read_text(encoding="utf-8")) == doc
    dataset = load(path)

    info = lfw.dataset("faces@1.0.0", members=True)
    meta = dataset.metadata
    assert meta.name == "faces"
    assert meta.version == "1.0.0"
    assert doc["conformsTo"] == CONFORMS_TO
    assert meta.ctx.is_v1_1()
    assert doc["datePublished"] == info["built_at"]
    assert doc["url"] == f"disgorge://{lfw.workspace_id}/dataset/faces@1.0.0"
    assert doc["@context"]["rai"] == "http://mlcommons.org/croissant/RAI/"
    assert doc["@context"]["disgorge"] == DISGORGE_CONTEXT

    # the records mlcroissant reads back are exactly the members, with their properties
    records = list(dataset.records("members"))
    assert sorted(r["members/sha256"] for r in records) == info["member_sha256"]
    assert len(records) == info["members"] == 4
    for r in records:
        asset = lfw.asset(r["members/sha256"])
        assert r["members/media_type"] == asset["media_type"]
        assert (r["members/width"], r["members/height"]) == (asset["width"], asset["height"])
        assert r["members/source"] == "lfw"

    # the disgorge extension carries the consent coverage the catalog holds
    coverage = doc["disgorge:consentCoverage"]
    for key in ("purpose", "built_at", "members", "excluded", "excluded_by_rule", "merkle_root"):
        assert coverage[f"disgorge:{key}"] == info[key], key
    assert coverage["disgorge:excluded"] == 2
    assert coverage["disgorge:excluded_by_rule"] == {"consent_denied": 2}

    # RAI fields
    assert doc["rai:dataUseCases"][0].startswith("ai_training")
    assert doc["rai:personalSensitiveInformation"]
    assert "lfw" in doc["rai:dataCollection"]
    assert doc["rai:dataCollectionType"] == ["Web Scraping"]


def test_extension_is_linked_data_in_the_disgorge_namespace(lfw: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "faces.json"
    doc = lfw.export_croissant("faces", path)
    graph = rdflib.Graph().parse(data=path.read_text(encoding="utf-8"), format="json-ld")
    ns = rdflib.Namespace(DISGORGE_CONTEXT)
    (coverage,) = graph.objects(predicate=ns.consentCoverage)
    assert (coverage, rdflib.RDF.type, ns.ConsentCoverage) in graph
    assert (
        str(graph.value(coverage, ns.merkle_root)) == doc["disgorge:consentCoverage"]["disgorge:merkle_root"]
    )
    assert graph.value(coverage, ns.members).toPython() == 4
    by_rule = graph.value(coverage, ns.excluded_by_rule)
    assert json.loads(str(by_rule)) == {"consent_denied": 2}  # a JSON literal
    rai = rdflib.Namespace("http://mlcommons.org/croissant/RAI/")
    assert [str(o) for o in graph.objects(predicate=rai.dataUseCases)] == doc["rai:dataUseCases"]


def test_no_subjects_external_ids_or_excluded_photos_in_the_file(lfw: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "faces.json"
    lfw.export_croissant("faces@1.0.0", path)
    text = path.read_text(encoding="utf-8")
    info = lfw.dataset("faces@1.0.0", members=True)
    excluded = [item["sha256"] for item in info["excluded_items"]]
    assert len(excluded) == 2
    forbidden = [
        *PEOPLE,
        "sub_",
        *(lfw.subject_ref(p) for p in PEOPLE),
        *excluded,
        *(s[:16] for s in excluded),
    ]
    forbidden += [str(tmp_path), "photos/"]
    for secret in forbidden:
        assert secret not in text, secret
    # and what is there: exactly the member sha256s
    member_shas = {
        hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (tmp_path / "photos").rglob("*.jpg")
        if DENIED not in p.name
    }
    assert member_shas == set(info["member_sha256"])
    assert all(sha in text for sha in member_shas)


def test_export_is_deterministic_and_audited(lfw: Workspace, tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    lfw.export_croissant("faces@1.0.0", a)
    lfw.export_croissant("faces", b)
    assert a.read_bytes() == b.read_bytes()
    events = lfw.audit_events(action="dataset.exported")
    assert [e["payload"] for e in events] == [
        {"dataset": "faces@1.0.0", "format": "croissant", "members": 4}
    ] * 2
    assert lfw.verify_audit().ok
    with pytest.raises(NotFound):
        lfw.export_croissant("faces@9.0.0", tmp_path / "c.json")
    assert not (tmp_path / "c.json").exists()


def test_a_later_version_after_withdrawal_exports_its_own_semver(lfw: Workspace, tmp_path: Path) -> None:
    consent = tmp_path / "revoke.csv"
    consent.write_text("subject,purpose,decision,at\nGrace_Hopper,ai_training,revoked,2015-01-01\n")
    lfw.import_consent(consent, at="2015-01-01")
    build = lfw.build_dataset("faces", purpose="ai_training", at="2015-02-01")
    assert build.version == "2.0.0"
    path = tmp_path / "v2.json"
    doc = lfw.export_croissant("faces@2.0.0", path)
    dataset = load(path)
    assert dataset.metadata.version == "2.0.0"
    assert len(list(dataset.records("members"))) == 2
    coverage = doc["disgorge:consentCoverage"]
    assert coverage["disgorge:excluded_by_rule"] == lfw.dataset("faces@2.0.0")["excluded_by_rule"]
    assert coverage["disgorge:merkle_root"] == build.merkle_root


def test_cli_dataset_export(lfw: Workspace, tmp_path: Path) -> None:
    runner = CliRunner()
    path = tmp_path / "out" / "faces.json"
    path.parent.mkdir()
    result = runner.invoke(
        app, ["dataset", "export", "faces@1.0.0", "--croissant", str(path), "-w", str(lfw.root), "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["dataset"] == "faces@1.0.0"
    assert summary["members"] == 4 and summary["excluded"] == 2
    assert summary["format"] == CONFORMS_TO
    load(path)

    result = runner.invoke(app, ["dataset", "export", "faces", "--croissant", str(path), "-w", str(lfw.root)])
    assert result.exit_code == 0, result.output
    assert "exported faces@1.0.0" in result.stdout

    result = runner.invoke(
        app, ["dataset", "export", "nope@1.0.0", "--croissant", str(path), "-w", str(lfw.root)]
    )
    assert result.exit_code == 1
    assert "no dataset named 'nope'" in result.stderr
