"""``disgorge demo``: the story so far, in a fresh temporary workspace.

A dating app's photos are ingested under its 2013 privacy policy (which allows matching,
not ML training) with per-user consent; broken and hostile files are refused; nothing
personal is stored in clear; a matching dataset is built through the consent gate; the
2014 vendor training is backfilled, refused by the gate, recorded under override and
found by the violation audit; one user is crypto-shredded; the audit chain holds. Later
issues extend the story to the vendor's own workspace and the disgorgement order.
"""

from __future__ import annotations

import csv
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .erasure import scan_tree
from .errors import ConsentDenied, KeyDestroyed
from .samples import synthetic_photo
from .workspace import Workspace

__all__ = ["run_demo"]

USERS = [f"user-{n:04d}@dating.example" for n in range(1, 9)]
PHOTOS_PER_USER = 4

Say = Callable[[str], None]


def _bomb_png(width: int = 40_000, height: int = 40_000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _write_inputs(folder: Path) -> tuple[Path, Path, dict[str, bytes]]:
    photos = folder / "photos"
    photos.mkdir(parents=True)
    originals: dict[str, bytes] = {}
    rows = []
    for u, user in enumerate(USERS):
        for i in range(PHOTOS_PER_USER):
            name = f"{u:02d}_{i}.jpg"
            data = synthetic_photo(u, i)
            (photos / name).write_bytes(data)
            originals[name] = data
            rows.append({"path": name, "subject": user, "depicted": "", "captured_at": f"2013-0{1 + i}-15"})
    # a couple photo: owned by user 0, also showing user 1
    couple = synthetic_photo(0, 99)
    (photos / "couple.jpg").write_bytes(couple)
    originals["couple.jpg"] = couple
    rows.append(
        {"path": "couple.jpg", "subject": USERS[0], "depicted": USERS[1], "captured_at": "2013-06-01"}
    )
    # what a real upload folder also holds
    (photos / "truncated.jpg").write_bytes(synthetic_photo(9, 0)[:2000])
    (photos / "notes.jpg").write_text("this is not a photo\n")
    (photos / "bomb.png").write_bytes(_bomb_png())
    for name in ("truncated.jpg", "notes.jpg", "bomb.png"):
        rows.append({"path": name, "subject": USERS[2], "depicted": "", "captured_at": ""})
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "subject", "depicted", "captured_at"])
        writer.writeheader()
        writer.writerows(rows)
    consent = folder / "consent.csv"
    with consent.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["subject", "purpose", "decision", "at", "policy_version", "evidence"])
        for u, user in enumerate(USERS):
            writer.writerow([user, "ai_inference", "granted", "2013-01-10", "2013", "signup checkbox"])
            decision = "granted" if u % 3 == 0 else "denied"
            writer.writerow([user, "ai_training", decision, "2013-01-10", "2013", "signup checkbox"])
        writer.writerow([USERS[0], "ai_training", "revoked", "2015-05-01", "2013", "settings page"])
    return photos, manifest, originals


def run_demo(directory: Path, say: Say = print) -> dict[str, Any]:
    """Run the story in ``directory`` (which must not yet hold a workspace); return a summary."""
    inputs = directory / "inputs"
    photos, manifest, originals = _write_inputs(inputs)
    say(f"1. A dating app's upload folder: {len(originals)} photos of {len(USERS)} users, plus 3 bad files.")

    ws = Workspace.init(directory / "workspace", at="2013-01-01", actor="demo")
    with ws:
        say(f"2. Workspace created: catalog, encrypted blob store, KEK, signing key ({ws.root}).")
        ws.add_source("dating-app", kind="app", description="profile photos", at="2013-01-01")
        policy = b"2013 privacy policy: photos are used to show your profile and match you."
        ws.add_policy(
            "dating-app",
            "2013",
            text=policy,
            effective_from="2013-01-01",
            allows=["ai_inference"],
            at="2013-01-01",
        )
        say("3. Source 'dating-app' with its 2013 privacy policy (allows ai_inference only).")
        consent = ws.import_consent(inputs / "consent.csv", at="2013-01-10")
        say(
            f"4. Consent history imported: {consent.imported} records "
            f"for {consent.subjects_created} subjects."
        )

        report = ws.ingest(photos, source="dating-app", manifest=manifest, at="2013-07-01")
        say(
            f"5. Ingest: {report.ingested} stored, {report.duplicates} already present, "
            f"{len(report.rejected)} refused:"
        )
        for r in report.rejected:
            say(f"     refused {r.path}: {r.reason}")
        again = ws.ingest(photos, source="dating-app", manifest=manifest, at="2013-07-02")
        say(f"6. The same folder again: {again.ingested} stored, {again.duplicates} already present.")

        sample = ws.subject(USERS[0])
        say(
            f"7. {USERS[0]} is stored only as {sample['ref']}: {len(sample['assets'])} photos, "
            f"ai_training now '{sample['consent_now']['ai_training']}'."
        )

        needles = {
            f"photo {name}": data[len(data) // 2 : len(data) // 2 + 48] for name, data in originals.items()
        }
        needles.update({f"id {user}": user.encode() for user in USERS})
        hits = scan_tree(ws.config.home, needles)
        say(
            f"8. Forensic scan of every workspace file for {len(originals)} photos' bytes and "
            f"{len(USERS)} user ids: {len(hits)} found in clear."
        )

        matching = ws.build_dataset("matching", purpose="ai_inference", at="2013-08-01")
        say(
            f"9. Dataset matching@{matching.version} built through the consent gate for ai_inference: "
            f"{matching.members} photos, {matching.excluded} excluded."
        )
        try:
            ws.record_run(
                "vendor-train",
                purpose="ai_training",
                inputs=[f"matching@{matching.version}"],
                outputs=[{"kind": "model", "name": "vendor-face-id"}],
                at="2014-03-01",
            )
        except ConsentDenied as refused:
            say(f"10. 2014: the vendor trains a face model on them. The gate refuses: {refused}")
        vendor = ws.record_run(
            "vendor-train",
            purpose="ai_training",
            inputs=[f"matching@{matching.version}"],
            outputs=[{"kind": "model", "name": "vendor-face-id"}],
            at="2014-03-01",
            override=("legal", "backfilling the 2014 transfer to the vision vendor from contract records"),
        )
        say(
            "    It happened anyway, so it is backfilled under a recorded legal override: "
            f"{vendor['outputs'][0]}."
        )
        violations = ws.violations()
        [use] = violations["violations"]
        say(
            f"11. Violation audit: {violations['uses_with_violations']} of {violations['uses_checked']} uses "
            f"broke consent: {use['job']} ({use['purpose']}, {use['at'][:10]}) used {use['items']} photos of "
            f"{use['subjects']} users ({', '.join(f'{k}: {n}' for k, n in use['by_rule'].items())})."
        )
        downstream = ws.lineage(f"subject:{USERS[0]}")
        carried = sorted(n["id"] for n in downstream.nodes if n["kind"] not in ("run", "subject"))
        say(f"12. Lineage downstream of {ws.subject_ref(USERS[0])}: {', '.join(carried)}.")

        victim = USERS[1]
        victim_assets = [a["sha256"] for a in ws.subject(victim)["assets"] if a["role"] == "owner"]
        ws.destroy_subject_key(victim, at="2026-01-01")
        unreadable = 0
        for sha in victim_assets:
            try:
                ws.read_asset(sha)
            except KeyDestroyed:
                unreadable += 1
        readable = len(ws.read_asset(ws.subject(USERS[2])["assets"][0]["sha256"]))
        say(
            f"13. Crypto-shredding {ws.subject_ref(victim)}: {unreadable}/{len(victim_assets)} of their "
            f"photos can no longer be decrypted; other users' photos still read ({readable} bytes)."
        )

        chain = ws.verify_audit()
        say(
            f"14. Audit chain: {'intact' if chain.ok else 'BROKEN'}, {chain.events} events, "
            f"head {chain.head[:16]}."
        )
        status = ws.status()
    return {
        "workspace": str(directory / "workspace"),
        "ingested": report.ingested,
        "refused": [{"path": r.path, "reason": r.reason} for r in report.rejected],
        "duplicates_on_reingest": again.duplicates,
        "clear_text_hits": len(hits),
        "shredded_unreadable": unreadable,
        "dataset": f"matching@{matching.version}",
        "violations": violations["uses_with_violations"],
        "violating_items": violations["items"],
        "downstream_of_first_user": carried,
        "audit_ok": chain.ok,
        "audit_events": chain.events,
        "status": status,
    }
