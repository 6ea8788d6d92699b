"""``disgorge demo``: the whole story, in a fresh pair of temporary workspaces.

A dating app ingests its users' photos under a 2013 privacy policy (matching only) with
per-user consent; broken and hostile files are refused; nothing personal is stored in
clear. In 2014 the app gave the photos to a vision vendor, which the policy did not
allow: the transfer is backfilled under a recorded override and the violation audit
finds it. The vendor (a second workspace) trained a SISA face-identification model on
them next to photos it licensed elsewhere. One user asks to be erased: the request
reaches the vendor over HTTP on loopback, the vendor's model forgets them and its
copies are destroyed, and the vendor's signed certificate comes back inside the app's.
Then a regulator orders disgorgement of the whole 2014 transfer, and the same happens
for every photo of it. Both certificates verify offline with a public key alone.

Photos: the project ships no one's photos, so by default the demo draws its own
portraits (:func:`disgorge.samples.synthetic_photo`) and embeds them with the
``portrait`` embedder, which honestly computes from those pixels (it is no face
recogniser; see :mod:`disgorge.vision.portrait`). ``photos=DIR`` runs the same story
on real face photos in the LFW layout (``DIR/Person_Name/*.jpg``) with dlib.

Every claim the story makes is checked; :func:`run_demo` returns the checks, and the
command exits 0 only if all of them passed.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import struct
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .dsr.export import verify_export
from .erasure import scan_tree
from .erasure.certificate import verify_certificate
from .erasure.forensics import MIN_NEEDLE_BYTES
from .errors import ConsentDenied, InvalidInput
from .samples import synthetic_photo
from .workspace import Workspace

__all__ = ["run_demo"]

Say = Callable[[str], None]

APP_USERS = 8
STOCK_PEOPLE = 4
PHOTOS_EACH = 4
#: the app's user who files a GDPR Art. 17 request
ASKER = 2
VENDOR = "vision-vendor"
APP = "dating-app"


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


@dataclass
class People:
    """Who is in the story: external ids, their photos, and one held-out photo each."""

    users: list[str]
    stock: list[str]
    photos: dict[str, dict[str, bytes]] = field(default_factory=dict)  # person -> name -> bytes
    held_out: dict[str, bytes] = field(default_factory=dict)
    embedder: str = "portrait"


def _drawn_people() -> People:
    users = [f"user-{n:04d}@dating.example" for n in range(1, APP_USERS + 1)]
    stock = [f"model-{n:02d}@stock.example" for n in range(1, STOCK_PEOPLE + 1)]
    people = People(users, stock)
    for p, person in enumerate(users + stock):
        people.photos[person] = {f"{p:02d}_{i}.jpg": synthetic_photo(p, i) for i in range(PHOTOS_EACH)}
        people.held_out[person] = synthetic_photo(p, 50)
    return people


def _real_people(folder: Path) -> People:
    """LFW layout: the first APP_USERS people with enough photos are the app's users."""
    if not folder.is_dir():
        raise InvalidInput(f"--photos {folder}: no such folder")
    names = sorted(
        d.name
        for d in folder.iterdir()
        if d.is_dir() and len([f for f in d.iterdir() if f.is_file()]) > PHOTOS_EACH
    )
    if len(names) < 4:
        raise InvalidInput(
            f"--photos {folder}: needs at least 4 people with at least {PHOTOS_EACH + 1} photos each "
            f"(LFW layout: one folder per person); found {len(names)}"
        )
    chosen = names[: APP_USERS + STOCK_PEOPLE]
    users = max(ASKER + 1, len(chosen) * 2 // 3)  # two thirds are the app's users
    people = People(chosen[:users], chosen[users:], embedder="dlib")
    for p, person in enumerate(chosen):
        files = sorted(f for f in (folder / person).iterdir() if f.is_file())
        people.photos[person] = {
            f"{p:02d}_{i}{f.suffix.lower()}": f.read_bytes() for i, f in enumerate(files[:PHOTOS_EACH])
        }
        people.held_out[person] = files[PHOTOS_EACH].read_bytes()
    return people


def _write_folder(folder: Path, people: People, who: list[str], *, bad_files: bool = False) -> Path:
    """Write ``who``'s photos and a manifest; return the manifest."""
    folder.mkdir(parents=True)
    rows = []
    for person in who:
        for name, data in people.photos[person].items():
            (folder / name).write_bytes(data)
            rows.append({"path": name, "subject": person, "captured_at": "2013-06-15"})
    if bad_files:  # what a real upload folder also holds
        first = next(iter(people.photos[who[0]].values()))
        (folder / "truncated.jpg").write_bytes(first[: len(first) // 3])
        (folder / "notes.jpg").write_text("this is not a photo\n")
        (folder / "bomb.png").write_bytes(_bomb_png())
        rows += [
            {"path": n, "subject": who[-1], "captured_at": ""}
            for n in ("truncated.jpg", "notes.jpg", "bomb.png")
        ]
    manifest = folder.parent / f"{folder.name}-manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "subject", "captured_at"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def _consent_file(path: Path, rows: list[tuple[str, str, str, str, str]]) -> Path:
    """A consent CSV of (subject, purpose, decision, at, evidence) rows."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["subject", "purpose", "decision", "at", "evidence"])
        writer.writerows(rows)
    return path


class _Story:
    def __init__(self, say: Say) -> None:
        self.say = say
        self.steps: list[tuple[str, str]] = []
        self.checks: dict[str, bool] = {}
        self.n = 0

    def tell(self, text: str) -> None:
        self.n += 1
        self.say(f"{self.n:>2}. {text}")
        self.steps.append((str(self.n), text))

    def more(self, text: str) -> None:
        self.say(f"    {text}")
        self.steps.append(("", text))

    def check(self, name: str, ok: bool) -> bool:
        self.checks[name] = bool(ok)
        if not ok:
            self.more(f"CHECK FAILED: {name}")
        return bool(ok)


def run_demo(
    directory: Path, say: Say = print, *, photos: Path | None = None, vendor_port: int = 0
) -> dict[str, Any]:
    """Run the story in ``directory`` (new or empty); return its numbers and checks.

    The vendor serves on ``vendor_port`` of 127.0.0.1 (0: a free one), the endpoint the
    app records for it (``summary["vendor_url"]``): ``disgorge demo --serve`` serves the
    vendor there again, so erasures started in the app's UI afterwards still reach it."""
    from .api import running_server

    people = _real_people(photos) if photos is not None else _drawn_people()
    story = _Story(say)
    inputs = directory / "inputs"
    app_manifest = _write_folder(inputs / "uploads", people, people.users, bad_files=True)
    vendor_app_manifest = _write_folder(inputs / "vendor-copy", people, people.users)
    stock_manifest = _write_folder(inputs / "stock", people, people.stock)
    n_user_photos = sum(len(people.photos[u]) for u in people.users)
    kind = "drawn portraits" if photos is None else f"real photos from {photos.name}"
    story.tell(
        f"A dating app's upload folder: {n_user_photos} photos ({kind}) of {len(people.users)} users, "
        "plus a truncated JPEG, a text file and a decompression bomb."
    )

    with (
        Workspace.init(directory / APP, at="2013-01-01", actor="dating-app") as app,
        Workspace.init(directory / VENDOR, at="2013-01-01", actor="vision-vendor") as vendor,
        running_server(vendor.root, port=vendor_port) as endpoint,
    ):
        # -- the dating app -----------------------------------------------------------------
        app.add_source(APP, kind="app", description="profile photos", at="2013-01-01")
        app.add_policy(
            APP,
            "2013",
            text=b"2013 privacy policy: your photos show your profile and help us match you.",
            effective_from="2013-01-01",
            allows=["ai_inference"],
            at="2013-01-01",
        )
        consent = [(u, "ai_inference", "granted", "2013-01-10", "signup checkbox") for u in people.users]
        consent += [
            (u, "ai_training", "granted" if i % 3 == 0 else "denied", "2013-01-10", "signup checkbox")
            for i, u in enumerate(people.users)
        ]
        imported = app.import_consent(_consent_file(inputs / "app-consent.csv", consent), at="2013-01-10")
        report = app.ingest(inputs / "uploads", source=APP, manifest=app_manifest, at="2013-07-01", workers=1)
        story.tell(
            "The app's workspace (catalog, encrypted blob store, keys), 2013 policy (ai_inference only), "
            f"{imported.imported} consent records. Ingest: {report.ingested} stored, "
            f"{len(report.rejected)} refused:"
        )
        for r in report.rejected:
            story.more(f"refused {r.path}: {r.reason}")
        story.check(
            "bad files refused",
            {r.path for r in report.rejected} == {"truncated.jpg", "notes.jpg", "bomb.png"},
        )
        story.check("every photo stored", report.ingested == n_user_photos)
        again = app.ingest(inputs / "uploads", source=APP, manifest=app_manifest, at="2013-07-02", workers=1)
        story.more(f"The same folder again: {again.ingested} stored, {again.duplicates} already present.")
        story.check("re-ingest stores nothing new", again.ingested == 0 and again.duplicates == n_user_photos)

        needles = _scan_needles(people)
        short_ids = sum(1 for u in people.users if f"id {u}" not in needles)
        hits = scan_tree(app.config.home, needles)
        asker = people.users[ASKER]
        story.tell(
            f"{asker} is stored only as {app.subject_ref(asker)}. A forensic scan of every file of the app's "
            f"workspace for the photos' bytes and the user ids: {len(hits)} found in clear."
            + (
                f" ({short_ids} id(s) shorter than {MIN_NEEDLE_BYTES} bytes left out: too short to look for.)"
                if short_ids
                else ""
            )
        )
        story.check("nothing personal in clear", not hits)

        matching = app.build_dataset("matching", purpose="ai_inference", at="2013-08-01")
        story.tell(
            f"Dataset matching@{matching.version} built through the consent gate for ai_inference: "
            f"{matching.members} photos."
        )

        # -- 2014: the photos leave for the vendor ------------------------------------------
        app.add_peer(
            "recipient", VENDOR, public_key=vendor.public_key_pem(), endpoint=endpoint, agreement="2014 pilot"
        )
        vendor.add_peer("sender", APP, public_key=app.public_key_pem(), agreement="2014 pilot")
        try:
            app.share(
                f"matching@{matching.version}",
                to=VENDOR,
                purposes=["ai_training", "biometric_processing"],
                at="2014-03-01",
            )
            refused = ""
        except ConsentDenied as exc:
            refused = str(exc)
        story.tell(
            f"2014: the app sends the photos to {VENDOR} for face recognition. The gate refuses: {refused}"
        )
        story.check("the gate refuses the 2014 transfer", bool(refused))
        transfer = app.share(
            f"matching@{matching.version}",
            to=VENDOR,
            purposes=["ai_training", "biometric_processing"],
            at="2014-03-01",
            override=("legal", "backfilling the 2014 transfer to the vision vendor from contract records"),
        )
        story.more(
            f"It happened anyway, so it is backfilled under a recorded legal override: transfer "
            f"{transfer['transfer'][:12]}, {transfer['items']} photos, no bundle (a legacy export)."
        )
        violations = app.violations()
        shared = [v for v in violations["violations"] if v["job"] == f"share:{VENDOR}"]
        story.tell(
            f"Violation audit: {violations['uses_with_violations']} use(s) broke consent; "
            + "; ".join(
                f"{v['job']} ({v['purpose']}, {v['at'][:10]}) used {v['items']} photos "
                f"of {v['subjects']} users"
                for v in violations["violations"]
            )
            + "."
        )
        story.check(
            "the violation audit finds the transfer", bool(shared) and shared[0]["items"] == n_user_photos
        )

        # -- the vendor's side -------------------------------------------------------------
        vendor.add_source(
            f"{APP}-2014", kind="partner", description="photos from the dating app", at="2014-03-02"
        )
        vendor.add_policy(
            f"{APP}-2014",
            "contract-2014",
            text=b"the app warrants its users consented to face recognition research",
            effective_from="2014-03-01",
            allows=["ai_training", "biometric_processing"],
            at="2014-03-02",
        )
        vendor.add_source("stock", kind="partner", description="licensed portraits", at="2014-01-01")
        vendor.add_policy(
            "stock",
            "license-2014",
            text=b"model release: training face recognition allowed",
            effective_from="2014-01-01",
            allows=["ai_training", "biometric_processing"],
            at="2014-01-01",
        )
        claimed = [
            (p, pur, "granted", "2014-03-01", "as warranted by the sender")
            for p in people.users + people.stock
            for pur in ("ai_training", "biometric_processing")
        ]
        vendor.import_consent(_consent_file(inputs / "vendor-consent.csv", claimed), at="2014-03-02")
        vendor.ingest(
            inputs / "vendor-copy",
            source=f"{APP}-2014",
            manifest=vendor_app_manifest,
            at="2014-03-02",
            workers=1,
        )
        # where they came from: the app's erasure requests reach what the app sent, nothing else
        vendor.receive_legacy(APP, source=f"{APP}-2014", at="2014-03-02")
        vendor.ingest(inputs / "stock", source="stock", manifest=stock_manifest, at="2014-03-02", workers=1)
        analysis = vendor.analyze(workers=1, embedder=people.embedder)
        faces = vendor.build_dataset("faces", purpose="ai_training", at="2014-04-01")
        model = vendor.train_model(
            "face-id", dataset=f"faces@{faces.version}", shards=4, slices=2, at="2014-04-02"
        )
        known_before = _identified(vendor, people, people.users)
        story.tell(
            f"The vendor's own workspace: it ingested the {n_user_photos} photos and "
            f"{len(people.stock) * PHOTOS_EACH} licensed ones, embedded {analysis.embedded_faces} faces "
            f"({people.embedder} embedder), and trained "
            f"{model['model']} (SISA, 4 shards x 2 slices) on faces@{faces.version}. It recognises "
            f"{len(known_before)}/{len(people.users)} app users on photos it never saw."
        )
        story.check("the vendor's model knows the app's users", len(known_before) >= len(people.users) // 2)

        # -- the user first asks what the app holds about them (GDPR Art. 15) ----------------
        export = app.export_subject(asker, directory / "access-export.zip")
        with zipfile.ZipFile(export["path"]) as archive:
            exported = {n: archive.read(n) for n in archive.namelist()}
        document = json.loads(exported["export.json"])
        export_check = verify_export(document, app.public_key_pem(), files=exported)
        story.tell(
            f"{app.subject_ref(asker)} first asks what the app holds about them (GDPR Art. 15) and receives "
            f"{Path(export['path']).name}: a page to read offline and the same signed, with their "
            f"{export['photo_files']} photos, {export['consent_records']} consent records, "
            f"{export['datasets']} dataset version(s) and {export['recipients']} recipient(s) their photos "
            f"went to. Signature: {'valid' if export_check.ok else 'INVALID'}."
        )
        story.check("the access export verifies offline", export_check.ok)
        story.check(
            "the access export holds exactly the user's photos",
            sorted(d for n, d in exported.items() if n.startswith("photos/"))
            == sorted(people.photos[asker].values()),
        )

        # -- one user asks to be erased ------------------------------------------------------
        plan = app.erasure_plan("subject", asker)
        story.tell(
            f"{app.subject_ref(asker)} asks to be erased (GDPR Art. 17). Dry run: "
            + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in plan["by_kind"].items())
            + "."
        )
        first = app.erase("subject", asker, reason="GDPR Art. 17 request 2026-001", wait=120)
        answer: Mapping[str, Any] = first["recipients"][0] if first["recipients"] else {}
        story.more(
            f"Erasure {first['id'][:12]}: {first['state']}; {VENDOR} was asked over HTTP ({endpoint}) and "
            f"answered '{answer.get('state')}' with its own signed certificate."
        )
        story.check("the first erasure completes", first["state"] == "completed")
        story.check("the vendor completed it", answer.get("state") == "completed")
        story.check("the vendor's model forgot the user", asker not in _identified(vendor, people, [asker]))
        story.check("the app's copies are gone", not _readable(app, people.photos[asker]))
        story.check("the vendor's copies are gone", not _readable(vendor, people.photos[asker]))

        # -- the regulator: disgorge the whole 2014 transfer ---------------------------------
        second = app.erase(
            "transfer",
            transfer["transfer"],
            reason="regulator order 2026-17: disgorge the 2014 transfer",
            wait=120,
        )
        vendor_part: Mapping[str, Any] = second["recipients"][0] if second["recipients"] else {}
        known_after = _identified(vendor, people, people.users)
        stock_known = _identified(vendor, people, people.stock)
        story.tell(
            f"A regulator orders disgorgement of the whole 2014 transfer. Erasure {second['id'][:12]}: "
            f"{second['state']}; {VENDOR} answered '{vendor_part.get('state')}'. Its model now recognises "
            f"{len(known_after)}/{len(people.users)} app users and still "
            f"{len(stock_known)}/{len(people.stock)} licensed people."
        )
        story.check("the transfer erasure completes", second["state"] == "completed")
        story.check("the vendor's model forgot every app user", not known_after)
        story.check("the vendor keeps what it may keep", len(stock_known) >= len(people.stock) // 2)
        story.check(
            "the app keeps its own photos", len(_readable(app, people.photos[people.users[0]])) == PHOTOS_EACH
        )
        vendor_hits = scan_tree(vendor.config.home, needles)
        story.more(
            f"Forensic scan of every file of the vendor's workspace for the app's photos and user ids: "
            f"{len(vendor_hits)} found."
        )
        story.check("nothing of the app's users is left at the vendor", not vendor_hits)

        # -- proof ---------------------------------------------------------------------------
        certificate = app.erasure_certificate(second["id"])
        cert_file = directory / "certificate.json"
        cert_file.write_text(json.dumps(certificate, indent=1, sort_keys=True))
        key_file = directory / "dating-app.pub.pem"
        key_file.write_bytes(app.public_key_pem())
        check = verify_certificate(json.loads(cert_file.read_text()), key_file.read_bytes())
        tampered = json.loads(cert_file.read_text())
        tampered["body"]["counts"]["items_at_recipients"] += 1
        bad = verify_certificate(tampered, key_file.read_bytes())
        story.tell(
            f"The app's certificate ({cert_file.name}) verifies offline with {key_file.name} alone: "
            f"{'valid' if check.ok else 'INVALID'} ({check.reason}). With one number changed: "
            f"{'valid' if bad.ok else 'invalid'} at {bad.where}."
        )
        story.check("the certificate verifies offline", check.ok)
        story.check("an altered certificate fails", not bad.ok)
        story.check(
            "the vendor's certificate is inside",
            bool(certificate["body"]["recipients"])
            and certificate["body"]["recipients"][0]["certificate"] is not None,
        )
        chains = [app.verify_audit(), vendor.verify_audit()]
        story.tell(
            "Audit chains: "
            + ", ".join(
                f"{name} {'intact' if c.ok else 'BROKEN'} ({c.events} events)"
                for name, c in zip((APP, VENDOR), chains, strict=True)
            )
            + "."
        )
        story.check("both audit chains intact", all(c.ok for c in chains))
        summary = {
            "photos": kind,
            "embedder": people.embedder,
            "app": str(app.root),
            "vendor": str(vendor.root),
            "vendor_url": endpoint,
            "ingested": report.ingested,
            "refused": [{"path": r.path, "reason": r.reason} for r in report.rejected],
            "clear_text_hits": len(hits),
            "violations": violations["uses_with_violations"],
            "transfer": {"id": transfer["transfer"], "items": transfer["items"]},
            "known_before": len(known_before),
            "known_after": len(known_after),
            "stock_known_after": len(stock_known),
            "erasures": [
                {
                    "id": e["id"],
                    "scope": e["scope"],
                    "state": e["state"],
                    "recipients": [r["state"] for r in e["recipients"]],
                }
                for e in (first, second)
            ],
            "vendor_scan_hits": len(vendor_hits),
            "certificate": str(cert_file),
            "public_key": str(key_file),
            "certificate_ok": check.ok,
            "access_export": export["path"],
            "checks": story.checks,
            "ok": all(story.checks.values()),
        }
    report_file = directory / "report.html"
    report_file.write_text(_html(story, summary), encoding="utf-8")
    summary["report"] = str(report_file)
    say(
        f"{'Every check passed' if summary['ok'] else 'SOME CHECKS FAILED'} ({sum(story.checks.values())}/"
        f"{len(story.checks)})."
    )
    return summary


def _scan_needles(people: People) -> dict[str, bytes]:
    """What the forensic scans look for: a 48-byte window of each user's photos, and each
    user id long enough to mean something.

    An id shorter than ``MIN_NEEDLE_BYTES`` (LFW-style folders named ``ab``) turns up by
    chance in ciphertext and SQLite pages: it is left out, not reported as a leak.
    """
    needles = {
        f"photo {n}": d[len(d) // 2 : len(d) // 2 + 48]
        for p in people.users
        for n, d in people.photos[p].items()
    }
    needles.update({f"id {u}": u.encode() for u in people.users if len(u.encode()) >= MIN_NEEDLE_BYTES})
    return needles


def _identified(ws: Workspace, people: People, who: list[str]) -> list[str]:
    """Which of ``who`` the vendor's model names correctly on their held-out photo."""
    found = []
    for person in who:
        faces = ws.predict("face-id", people.held_out[person])["faces"]
        ref = ws.subject_ref(person)
        if any(f["subject"] == ref for f in faces):
            found.append(person)
    return found


def _readable(ws: Workspace, photos: dict[str, bytes]) -> list[str]:
    out = []
    for name, data in photos.items():
        try:
            ws.read_asset(hashlib.sha256(data).hexdigest())
            out.append(name)
        except Exception:  # noqa: BLE001 - gone, unknown or unreadable: not readable
            continue
    return out


def _html(story: _Story, summary: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{html.escape(text)}</td></tr>" for n, text in story.steps
    )
    checks = "".join(
        f"<li class={'ok' if ok else 'fail'}>{'&#10003;' if ok else '&#10007;'} {html.escape(name)}</li>"
        for name, ok in story.checks.items()
    )
    verdict = "Every check passed" if summary["ok"] else "Some checks FAILED"
    passed = f"{sum(story.checks.values())}/{len(story.checks)}"
    rest = html.escape(json.dumps({k: v for k, v in summary.items() if k != "checks"}, indent=1))
    style = (
        "body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
        "td{vertical-align:top;padding:.2em .6em} .ok{color:#176117} .fail{color:#a11} li{list-style:none}"
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>disgorge demo</title>'
        f"<style>{style}</style></head><body>"
        "<h1>disgorge demo: from a photo into a model, and back out</h1>"
        f"<p><strong>{verdict}</strong> ({passed}); photos: {html.escape(summary['photos'])}.</p>"
        f"<table>{rows}</table><h2>Checks</h2><ul>{checks}</ul>"
        f"<h2>Summary</h2><pre>{rest}</pre></body></html>\n"
    )
