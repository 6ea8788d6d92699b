"""The audit log proves itself outside the workspace (issue 12, defect 5; invariant 11).

The hash chain alone is checked against itself: cutting the tail and rolling the head
back, or rewriting every row with a recomputed chain, still passes `audit verify`. A
signed tree head kept outside (a file, a certificate, an answer to a sender) and a
consistency proof (RFC 9162) catch both. Real workspaces, real SQLite edits made from
outside with the sqlite3 module, the real `disgorge` command; the proofs are checked
against a naive recomputation of the Merkle tree from its definition.
"""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import cli, sql
from disgorge import InvalidInput, Workspace
from disgorge.audit.log import event_hash
from disgorge.audit.transparency import (
    EMPTY_ROOT,
    Frontier,
    check_tree_head,
    consistency_ranges,
    inclusion_ranges,
    leaf_hash,
    mth,
    verify_consistency,
    verify_inclusion,
    verify_proof,
)
from disgorge.samples import synthetic_photo
from disgorge.sharing.documents import RESPONSE_TYPE, verify_document


# -- helpers -----------------------------------------------------------------------------------
def add_sources(ws: Workspace, names: list[str]) -> None:
    for name in names:
        ws.add_source(name)


def truncate(ws: Workspace, keep: int) -> None:
    """Delete every event after ``keep`` and roll the chain head back to match."""
    sql(ws, "DELETE FROM audit_events WHERE seq > ?", keep)
    (last,) = sql(ws, "SELECT hash FROM audit_events WHERE seq = ?", keep)[0]
    sql(ws, "UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", keep, last)


def rewrite_from(ws: Workspace, seq: int) -> None:
    """Edit event ``seq``'s payload and recompute the chain from there on: a full rewrite."""
    events = {e["seq"]: e for e in ws.audit_events(limit=10**6)}
    rows = sql(ws, "SELECT seq, action, actor, payload, prev_hash FROM audit_events ORDER BY seq")
    prev = None
    for n, action, actor, payload, prev_hash in rows:
        if n < seq:
            prev = None
            continue
        if n == seq:
            payload = json.dumps(
                {"source": "rewritten", "kind": "app"}, sort_keys=True, separators=(",", ":")
            )
            prev = prev_hash
        at = datetime.fromisoformat(events[n]["at"].replace("Z", "+00:00"))
        recorded = datetime.fromisoformat(events[n]["recorded_at"].replace("Z", "+00:00"))
        digest = event_hash(n, at, recorded, action, actor, payload, prev)
        sql(
            ws,
            "UPDATE audit_events SET payload = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            payload,
            prev,
            digest,
            n,
        )
        prev = digest
    last = rows[-1][0]
    sql(ws, "UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", last, prev)


def leaves_of(n: int, salt: str = "") -> list[bytes]:
    return [leaf_hash(hashlib.sha256(f"{salt}{i}".encode()).hexdigest()) for i in range(n)]


# -- the proofs, against RFC 6962's test vectors and the definition ----------------------------
RFC_LEAVES = [
    hashlib.sha256(b"\x00" + bytes.fromhex(d)).digest()
    for d in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]


def test_tree_hashes_and_proofs_match_the_rfc_6962_test_vectors() -> None:
    assert mth(RFC_LEAVES[:1]).hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert mth(RFC_LEAVES).hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    assert mth([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()

    def proof(ranges: list[tuple[int, int]]) -> list[str]:
        return [mth(RFC_LEAVES[a:b]).hex()[:16] for a, b in ranges]

    assert proof(consistency_ranges(1, 8)) == ["96a296d224f285c6", "5f083f0a1a33ca07", "6b47aaf29ee3c2af"]
    assert proof(consistency_ranges(6, 8)) == ["0ebc5d3437fbe2db", "ca854ea128ed050b", "d37ee418976dd957"]
    assert proof(inclusion_ranges(0, 8)) == ["96a296d224f285c6", "5f083f0a1a33ca07", "6b47aaf29ee3c2af"]


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=1, max_value=300).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_consistency_proofs_agree_with_a_naive_recomputation(sizes: tuple[int, int]) -> None:
    old, new = sizes
    leaves = leaves_of(new)
    ranges = consistency_ranges(old, new)
    naive = [mth(leaves[a:b]) for a, b in ranges]
    streamed = Frontier(wanted=set(ranges))
    streamed.extend(leaves)
    assert [streamed.node(r) for r in ranges] == naive
    assert streamed.root() == mth(leaves)
    old_root, new_root = mth(leaves[:old]), mth(leaves)
    assert verify_consistency(old, old_root, new, new_root, naive)
    if old == 0 or old == new:
        return
    # a log whose first `old` events differ (a rewrite) has no proof to the kept root
    forged = leaves_of(new, salt="x")
    forged_ranges = [mth(forged[a:b]) for a, b in ranges]
    assert not verify_consistency(old, old_root, new, mth(forged), forged_ranges)
    # nor does a proof with any one hash changed, cut short, or read backwards
    # (the sizes are bound by the signed heads, not by the proof)
    for i in range(len(naive)):
        bad = list(naive)
        bad[i] = hashlib.sha256(bad[i]).digest()
        assert not verify_consistency(old, old_root, new, new_root, bad)
    assert not verify_consistency(old, old_root, new, new_root, naive[:-1])
    assert not verify_consistency(new, new_root, old, old_root, naive)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=300).flatmap(lambda n: st.tuples(st.integers(0, n - 1), st.just(n)))
)
def test_inclusion_proofs_agree_with_a_naive_recomputation(where: tuple[int, int]) -> None:
    index, size = where
    leaves = leaves_of(size)
    ranges = inclusion_ranges(index, size)
    naive = [mth(leaves[a:b]) for a, b in ranges]
    streamed = Frontier(wanted=set(ranges))
    streamed.extend(leaves)
    assert [streamed.node(r) for r in ranges] == naive
    root = mth(leaves)
    assert verify_inclusion(index, size, leaves[index], naive, root)
    other = leaves_of(1, salt="not-in-the-log")[0]
    assert not verify_inclusion(index, size, other, naive, root)
    if size > 1:
        assert not verify_inclusion((index + 1) % size, size, leaves[index], naive, root)


# -- verify --since on a real workspace ---------------------------------------------------------
def test_truncation_with_the_head_rolled_back_passes_the_chain_but_not_since(ws: Workspace) -> None:
    add_sources(ws, [f"s{i}" for i in range(6)])
    head = ws.audit_checkpoint()
    size = head["body"]["tree_size"]
    assert size == ws.status()["audit_events"] == 8  # init, source app, six more sources
    truncate(ws, 5)
    assert ws.verify_audit().ok  # the chain alone cannot tell (the defect)
    report = ws.verify_audit(since=head)
    assert not report.ok and report.anchor is not None and not report.anchor["ok"]
    assert "removed (truncation or rollback)" in report.reason
    assert report.first_bad_seq == 6 and report.anchor["tree_size"] == 5


def test_rollback_then_new_events_past_the_old_size_is_caught(ws: Workspace) -> None:
    add_sources(ws, ["a", "b", "c"])
    head = ws.audit_checkpoint()
    truncate(ws, 3)
    add_sources(ws, ["x", "y", "z", "w"])  # the log grows past the kept head again
    assert ws.verify_audit().ok
    report = ws.verify_audit(since=head)
    assert not report.ok and "no longer hash to the root" in report.reason


def test_a_rewrite_of_every_row_with_a_recomputed_chain_is_caught(ws: Workspace) -> None:
    add_sources(ws, [f"s{i}" for i in range(5)])
    head = ws.audit_checkpoint()
    add_sources(ws, ["later"])
    rewrite_from(ws, 2)
    assert ws.verify_audit().ok  # a recomputed chain is a valid chain (the defect)
    report = ws.verify_audit(since=head)
    assert not report.ok and "rewritten" in report.reason
    assert report.to_dict()["anchor"]["since"]["tree_size"] == head["body"]["tree_size"]


def test_an_edit_that_keeps_the_old_hash_is_named_by_the_chain_under_since(ws: Workspace) -> None:
    """The tree commits to the chain hashes, the chain binds each event to its hash: an
    edited payload with its old hash left in place passes the tree and fails the chain."""
    add_sources(ws, ["a", "b", "c"])
    head = ws.audit_checkpoint()
    sql(ws, "UPDATE audit_events SET payload = '{}' WHERE seq = 3")
    report = ws.verify_audit(since=head)
    assert not report.ok and report.first_bad_seq == 3 and "edited" in report.reason
    assert report.anchor is not None and report.anchor["ok"]


def test_a_valid_extension_passes_with_its_proof(ws: Workspace) -> None:
    first = ws.audit_checkpoint()
    same = ws.verify_audit(since=first)
    assert same.ok and same.anchor["consistency"] == []  # the log extends itself
    add_sources(ws, [f"s{i}" for i in range(9)])
    report = ws.verify_audit(since=first)
    assert report.ok and report.anchor["ok"] and report.anchor["tree_size"] == report.events == 11
    # the proof in the report convinces with the two roots alone
    assert verify_consistency(
        first["body"]["tree_size"],
        bytes.fromhex(first["body"]["root_hash"]),
        report.anchor["tree_size"],
        bytes.fromhex(report.anchor["root_hash"]),
        [bytes.fromhex(h) for h in report.anchor["consistency"]],
    )
    # and the third party's route: a proof document checked with the public key only
    proved = ws.audit_prove(since=first, event=3)
    key = ws.public_key().public_bytes_raw().hex()
    new = verify_proof(first, proved, key)
    assert new.tree_size == 11
    inc = proved["inclusion"]
    (chain_hash,) = sql(ws, "SELECT hash FROM audit_events WHERE seq = 3")[0]
    assert inc["event_hash"] == chain_hash
    assert verify_inclusion(2, 11, leaf_hash(chain_hash), [bytes.fromhex(p) for p in inc["path"]], new.root)


def test_the_cached_frontier_gives_the_same_root_as_a_fresh_computation(ws: Workspace) -> None:
    heads = []
    for i in range(5):
        add_sources(ws, [f"c{i}a", f"c{i}b", f"c{i}c"])
        heads.append(ws.audit_checkpoint())  # extends the frontier kept in this process
    fresh = ws.audit_prove()["head"]["body"]  # recomputed from every event
    assert (heads[-1]["body"]["tree_size"], heads[-1]["body"]["root_hash"]) == (
        fresh["tree_size"],
        fresh["root_hash"],
    )
    for older in heads:
        assert ws.verify_audit(since=older).ok


def test_a_tampered_or_foreign_head_is_refused(ws: Workspace, tmp_path: Path) -> None:
    add_sources(ws, ["a", "b"])
    head = ws.audit_checkpoint()
    check_tree_head(head, ws.public_key().public_bytes_raw().hex())
    smaller = copy.deepcopy(head)
    smaller["body"]["tree_size"] = 2  # "the log was only 2 events long": the signature says no
    with pytest.raises(InvalidInput, match="signature does not match"):
        ws.verify_audit(since=smaller)
    other_alg = copy.deepcopy(head)
    other_alg["algorithm"] = "Ed24519"
    with pytest.raises(InvalidInput, match="only Ed25519"):
        ws.verify_audit(since=other_alg)
    with Workspace.init(tmp_path / "other", actor="tester") as other:
        foreign = other.audit_checkpoint()
    with pytest.raises(InvalidInput, match="another key"):
        ws.verify_audit(since=foreign)
    with pytest.raises(InvalidInput, match="not a signed audit tree head"):
        ws.verify_audit(since={"body": {"type": "something else"}})


# -- witnesses travel: certificates and answers to senders --------------------------------------
def test_an_erasure_certificate_carries_a_verifiable_tree_head(ws: Workspace, photo_dir: Path) -> None:
    from disgorge.erasure.certificate import verify_certificate

    ws.ingest(photo_dir, source="app", subject_from="dirname")
    done = ws.erase("subject", "Ada_Lovelace", reason="GDPR Art. 17 request 2026-7")
    certificate = ws.erasure_certificate(done["id"])
    assert verify_certificate(certificate, ws.public_key_pem()).ok
    witness = certificate["body"]["audit_tree_head"]
    key = ws.public_key().public_bytes_raw().hex()
    kept = check_tree_head(witness, key)
    assert kept.workspace_id == ws.workspace_id and 0 < kept.tree_size < ws.status()["audit_events"]
    assert "audit_tree_head" in certificate["body"]["section_digests"]
    assert ws.verify_audit(since=witness).ok
    truncate(ws, kept.tree_size - 1)  # whoever keeps the certificate catches the cut
    assert ws.verify_audit().ok and not ws.verify_audit(since=witness).ok


def test_a_signed_answer_to_a_sender_carries_a_verifiable_tree_head(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    rows, consent = ["path,subject"], ["subject,purpose,decision,at"]
    for i in range(3):
        (folder / f"{i}.jpg").write_bytes(synthetic_photo(70, i, size=128))
        rows.append(f"{i}.jpg,person-{i}@app.example")
        consent += [
            f"person-{i}@app.example,third_party_sharing,granted,2020-01-01",
            f"person-{i}@app.example,biometric_processing,granted,2020-01-01",
        ]
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "consent.csv").write_text("\n".join(consent) + "\n")
    with (
        Workspace.init(tmp_path / "app", actor="tester") as app,
        Workspace.init(tmp_path / "vendor", actor="tester") as vendor,
    ):
        app.add_source("app", at="2020-01-01")
        app.add_policy(
            "app",
            "2020",
            text=b"we share photos with partners",
            effective_from="2020-01-01",
            allows=["ai_training", "biometric_processing", "third_party_sharing"],
            at="2020-01-01",
        )
        app.import_consent(tmp_path / "consent.csv", at="2020-01-01")
        app.ingest(folder, source="app", manifest=tmp_path / "manifest.csv", at="2020-02-01", workers=1)
        app.build_dataset("faces", purpose="ai_training", at="2020-03-01")
        app.add_peer("recipient", "vendor", public_key=vendor.public_key_pem(), agreement="DSA-1")
        vendor.add_peer("sender", "app", public_key=app.public_key_pem())
        app.share(
            "faces@1.0.0", to="vendor", purposes=["ai_training"], out=tmp_path / "b.zip", at="2021-01-01"
        )
        vendor.receive_bundle(tmp_path / "b.zip")
        resting = app.erase("subject", "person-1@app.example", reason="GDPR Art. 17 request", wait=0)
        request = app.erasure_request_document(resting["id"], "vendor")
        answer = vendor.receive_erasure_request(request)
        body = verify_document(answer, RESPONSE_TYPE)
        vendor_key = vendor.public_key().public_bytes_raw().hex()
        witness = body["audit_tree_head"]
        kept = check_tree_head(witness, vendor_key)
        assert kept.workspace_id == vendor.workspace_id
        assert vendor.verify_audit(since=witness).ok
        # the sender keeps the answer, and with it the witness, without doing anything
        app.erasure_ack(answer)
        assert app.erasure_certificate(resting["id"])["body"]["recipients"][0]["certificate"] is not None
        inner = app.erasure_certificate(resting["id"])["body"]["recipients"][0]["certificate"]
        check_tree_head(inner["body"]["audit_tree_head"], vendor_key)
        truncate(vendor, kept.tree_size - 1)
        assert not vendor.verify_audit(since=witness).ok


# -- the real command ---------------------------------------------------------------------------
def test_cli_checkpoint_verify_since_prove_and_check_round_trip(tmp_path: Path) -> None:
    ws_path = tmp_path / "ws"
    assert cli("init", ws_path).returncode == 0
    assert cli("source", "add", "app", "-w", ws_path).returncode == 0
    head = tmp_path / "kept" / "head.json"

    missing = cli("audit", "checkpoint", "-o", head, "-w", ws_path)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr and len(missing.stderr.strip().splitlines()) == 1

    head.parent.mkdir()
    made = cli("audit", "checkpoint", "-o", head, "-w", ws_path)
    assert made.returncode == 0, made.stderr
    kept = json.loads(head.read_text())
    assert kept["body"]["tree_size"] == 2 and "signed tree head of 2 event(s)" in made.stdout
    printed = json.loads(cli("audit", "checkpoint", "--json", "-w", ws_path).stdout)
    assert printed["body"]["root_hash"] == kept["body"]["root_hash"]

    for name in ("b", "c", "d"):
        assert cli("source", "add", name, "-w", ws_path).returncode == 0
    ok = cli("audit", "verify", "--since", head, "-w", ws_path)
    assert ok.returncode == 0 and "extends the signed head of 2 event(s)" in ok.stdout
    as_json = json.loads(cli("audit", "verify", "--since", head, "--json", "-w", ws_path).stdout)
    assert as_json["ok"] and as_json["anchor"]["ok"] and as_json["anchor"]["tree_size"] == 5

    # a third party: the proof document and the public key, no workspace
    proof = tmp_path / "proof.json"
    proved = cli("audit", "prove", "--from", head, "--event", "4", "-o", proof, "-w", ws_path)
    assert proved.returncode == 0 and json.loads(proved.stdout)["head"]["body"]["tree_size"] == 5
    with Workspace.open(ws_path) as ws:
        (tmp_path / "ws.pub.pem").write_bytes(ws.public_key_pem())
    checked = cli("audit", "check", head, proof, "--public-key", tmp_path / "ws.pub.pem")
    assert checked.returncode == 0 and "extends the head you kept" in checked.stdout
    forged = json.loads(proof.read_text())
    forged["consistency"][0] = "00" * 32
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    refused = cli("audit", "check", head, tmp_path / "forged.json", "--public-key", tmp_path / "ws.pub.pem")
    assert refused.returncode == 1 and "consistency proof fails" in refused.stderr

    # plain verify still passes the truncated log; --since does not, in one line
    with Workspace.open(ws_path) as ws:
        truncate(ws, 1)
    assert cli("audit", "verify", "-w", ws_path).returncode == 0
    cut = cli("audit", "verify", "--since", head, "-w", ws_path)
    assert cut.returncode == 1 and "Traceback" not in cut.stderr
    assert "does not extend the signed head" in cut.stderr and "truncation or rollback" in cut.stderr
    cut_json = cli("audit", "verify", "--since", head, "--json", "-w", ws_path)
    assert cut_json.returncode == 1 and json.loads(cut_json.stdout)["anchor"]["ok"] is False

    tampered = json.loads(head.read_text())
    tampered["body"]["tree_size"] = 1
    (tmp_path / "tampered.json").write_text(json.dumps(tampered))
    bad = cli("audit", "verify", "--since", tmp_path / "tampered.json", "-w", ws_path)
    assert bad.returncode == 1 and "signature does not match" in bad.stderr and "Traceback" not in bad.stderr
    (tmp_path / "junk.json").write_text("{not json")
    junk = cli("audit", "verify", "--since", tmp_path / "junk.json", "-w", ws_path)
    assert junk.returncode == 2 and "not JSON" in junk.stderr and "Traceback" not in junk.stderr


def test_the_python_in_docs_audit_md_checks_a_real_proof(ws: Workspace) -> None:
    """The stand-alone verifier docs/audit.md gives third parties works on what disgorge emits."""
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "audit.md").read_text(encoding="utf-8")
    [code] = re.findall(r"```python\n(.*?)```", text, re.S)
    ns: dict = {}
    exec(compile(code, "docs/audit.md", "exec"), ns)
    kept = ws.audit_checkpoint()
    add_sources(ws, [f"s{i}" for i in range(6)])
    proved = ws.audit_prove(since=kept)
    key = ws.public_key().public_bytes_raw().hex()
    first, first_hash = ns["head"](kept, key)
    second, second_hash = ns["head"](proved["head"], key)
    proof = [bytes.fromhex(h) for h in proved["consistency"]]
    assert (first, second) == (2, 8) and ns["consistent"](first, first_hash, second, second_hash, proof)
    assert not ns["consistent"](first, first_hash, second, second_hash, proof[::-1])
