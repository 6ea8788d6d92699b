"""Each party reaches only its own (DESIGN.md invariant 10, design note 19).

Three real workspaces in tmp_path: two senders ("app-a", "app-b") and a recipient
("vendor") that also holds stock photos of its own, one of whose owners denied
``ai_training``. Some bytes are held by several of them on purpose: "common" by both
senders, "stock" by sender A and the vendor's own stock source. Bundles are real zip files,
requests real signed documents, photos real JPEGs (one with GPS EXIF made with Pillow).
"""

from __future__ import annotations

import hashlib
import io
import secrets
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from disgorge import InvalidInput, NotFound, Workspace
from disgorge.erasure.certificate import verify_certificate
from disgorge.samples import synthetic_photo
from disgorge.sharing.bundle import MANIFEST_NAME
from disgorge.sharing.documents import REQUEST_TYPE, sign_document

ALL = ["ai_training", "ai_inference", "biometric_processing", "third_party_sharing"]
REASON = "GDPR Art. 17 request 2026-99"


def _gps_jpeg() -> bytes:
    img = Image.open(io.BytesIO(synthetic_photo(90, 0, size=128)))
    exif = Image.Exif()
    exif[0x0112] = 1  # orientation: stays
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (52.0, 31.0, 12.5), 3: "E", 4: (13.0, 24.0, 1.0)})
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes(), quality=90)
    return buf.getvalue()


PHOTOS = {
    "a0.jpg": synthetic_photo(60, 0, size=128),
    "a1.jpg": synthetic_photo(60, 1, size=128),
    "b0.jpg": synthetic_photo(61, 0, size=128),
    "common.jpg": synthetic_photo(70, 0, size=128),
    "stock.jpg": synthetic_photo(80, 0, size=128),
    "stock2.jpg": synthetic_photo(81, 0, size=128),
    "gps.jpg": _gps_jpeg(),
}
OWNERS = {
    "app-a": {
        "a0.jpg": "alice@a",
        "a1.jpg": "alice@a",
        "common.jpg": "carol@a",
        "stock.jpg": "dora@a",
        "gps.jpg": "erin@a",
    },
    "app-b": {"b0.jpg": "bob@b", "common.jpg": "cole@b"},
    "vendor": {"stock.jpg": "sam@stock", "stock2.jpg": "tom@stock"},
}


def _sha(name: str) -> str:
    return hashlib.sha256(PHOTOS[name]).hexdigest()


@dataclass
class World:
    root: Path

    def ws(self, name: str) -> Workspace:
        return Workspace.open(self.root / name, actor="tester")


def _ingest(ws: Workspace, folder: Path, source: str, files: dict[str, str], at: str) -> None:
    folder.mkdir(parents=True)
    for name in files:
        (folder / name).write_bytes(PHOTOS[name])
    (folder.parent / f"{folder.name}.csv").write_text(
        "path,subject\n" + "".join(f"{n},{s}\n" for n, s in files.items())
    )
    report = ws.ingest(folder, source=source, manifest=folder.parent / f"{folder.name}.csv", at=at, workers=1)
    assert report.ingested == len(files)


def _make_world(root: Path) -> World:
    with (
        Workspace.init(root / "app-a", actor="tester") as a,
        Workspace.init(root / "app-b", actor="tester") as b,
        Workspace.init(root / "vendor", actor="tester") as v,
    ):
        for name, ws in (("app-a", a), ("app-b", b)):
            ws.add_source(name, at="2020-01-01")
            ws.add_policy(
                name, "2020", text=b"partners", effective_from="2020-01-01", allows=ALL, at="2020-01-01"
            )
            _ingest(ws, root / "in" / name, name, OWNERS[name], "2020-02-01")
            ws.build_dataset("faces", purpose="third_party_sharing", at="2020-03-01")
            ws.add_peer("recipient", "vendor", public_key=v.public_key_pem())
            v.add_peer("sender", name, public_key=ws.public_key_pem())
        v.add_source("stock", kind="partner", at="2019-01-01")
        v.add_policy(
            "stock",
            "license",
            text=b"model release",
            effective_from="2019-01-01",
            allows=["ai_training", "ai_inference"],
            at="2019-01-01",
        )
        (root / "stock-consent.csv").write_text(
            "subject,purpose,decision,at\nsam@stock,ai_training,denied,2019-06-01\n"
        )
        v.import_consent(root / "stock-consent.csv", at="2019-06-01")
        _ingest(v, root / "in" / "stock", "stock", OWNERS["vendor"], "2019-07-01")
    return World(root)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> World:
    return _make_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def world(template: World, tmp_path: Path) -> World:
    for name in ("app-a", "app-b", "vendor"):
        shutil.copytree(template.root / name, tmp_path / name)
    return World(tmp_path)


def _send(world: World, sender: str, purposes: list[str], *, keep_metadata: bool = False) -> Path:
    out = world.root / f"{sender}-{secrets.token_hex(4)}.zip"
    with world.ws(sender) as ws:
        ws.share(
            "faces@1.0.0",
            to="vendor",
            purposes=purposes,
            out=out,
            at="2021-01-01",
            keep_metadata=keep_metadata,
        )
    return out


def _receive(world: World, bundle: Path) -> dict:
    with world.ws("vendor") as v:
        return v.receive_bundle(bundle, at="2021-02-01")


def _erase_at_sender(world: World, sender: str, subject: str) -> dict:
    """The sender erases a subject; its request travels to the vendor as a file; the answer comes back."""
    with world.ws(sender) as ws:
        resting = ws.erase("subject", subject, reason=REASON, wait=0)
        request = ws.erasure_request_document(resting["id"], "vendor")
    with world.ws("vendor") as v:
        answer = v.receive_erasure_request(request)
    with world.ws(sender) as ws:
        assert ws.erasure_ack(answer)["erasure"]["state"] == "completed"
    return answer


def _held(world: World, name: str) -> bool:
    with world.ws("vendor") as v:
        try:
            return v.read_asset(_sha(name)) == PHOTOS[name]
        except NotFound:
            return False


def _members(v: Workspace, name: str, version: str) -> set[str]:
    return set(v.dataset(f"{name}@{version}", members=True)["member_sha256"])


def _asset_id(world: World, name: str) -> str:
    with world.ws("vendor") as v:
        return v.asset(_sha(name))["id"]


# -- defect 2: a sender's request reaches only what that sender sent --------------------------
def test_a_legacy_request_reaches_neither_another_senders_photo_nor_one_held_from_elsewhere(
    world: World,
) -> None:
    _receive(world, _send(world, "app-b", ["ai_inference"]))
    # A's photo a1 reached the vendor outside disgorge; the vendor records where it came from
    with world.ws("vendor") as v:
        v.add_source("bought-from-a", kind="partner", at="2019-06-02")
        _ingest(v, world.root / "bought", "bought-from-a", {"a1.jpg": "alice@a"}, "2019-06-02")
        assert v.receive_legacy("app-a", source="bought-from-a", at="2019-06-02")["items"] == 1
    with world.ws("app-a") as a, world.ws("vendor") as v:
        hostile = sign_document(
            a,
            {
                "type": REQUEST_TYPE,
                "nonce": secrets.token_hex(16),
                "recipient_key": v.public_key().public_bytes_raw().hex(),
                "issued_at": "2026-01-01T00:00:00Z",
                "deadline": "2026-02-01T00:00:00Z",
                "items": [
                    {
                        "transfer": "0" * 32,
                        "id_kind": "sha256",
                        "values": [_sha("b0.jpg"), _sha("stock2.jpg")],
                    }
                ],
            },
        )
        answer = v.receive_erasure_request(hostile)
        assert (answer["body"]["state"], answer["body"]["matched"]) == ("not_found", 0)
        # the same request naming what A did send reaches that, and only that
        legit = sign_document(
            a,
            {
                **hostile["body"],
                "nonce": secrets.token_hex(16),
                "items": [
                    {
                        "transfer": "0" * 32,
                        "id_kind": "sha256",
                        "values": [_sha("b0.jpg"), _sha("stock2.jpg"), _sha("a1.jpg")],
                    }
                ],
            },
        )
        answer = v.receive_erasure_request(legit)
        assert (answer["body"]["state"], answer["body"]["matched"]) == ("completed", 1)
    assert _held(world, "b0.jpg") and _held(world, "stock2.jpg")
    assert not _held(world, "a1.jpg")


# -- defect 3: a bundle's terms apply only to what came in that bundle --------------------------
def test_a_bundle_does_not_relabel_a_photo_the_recipient_already_held(world: World) -> None:
    got = _receive(world, _send(world, "app-a", ["ai_training", "ai_inference"]))
    assert got["duplicates"] == 1  # the stock bytes
    with world.ws("vendor") as v:
        check = v.consent_check("sam@stock", "ai_training")
        assert not check["allowed"]
        [item] = check["items"]
        assert item["rule"] == "consent_denied" and "'stock'" in item["reason"], item
        # what came only through A's bundle is allowed under A's terms
        assert v.consent_check("app-a/" + _ref(world, "alice@a"), "ai_training", at="2021-03-01")["allowed"]
        build = v.build_dataset("train", purpose="ai_training", at="2021-03-01")
        members = _members(v, "train", build.version)
        assert _sha("stock.jpg") not in members and _sha("stock2.jpg") in members
        assert _sha("a0.jpg") in members
        # the violation audit agrees with the gate: nothing was used against a denial
        assert v.violations()["uses_with_violations"] == 0
        # through its own source alone it is still allowed for what the stock licence allows
        assert v.consent_check("sam@stock", "ai_inference", at="2021-03-01")["allowed"]


def test_an_erasure_from_a_sender_removes_only_its_provenance(world: World) -> None:
    _receive(world, _send(world, "app-a", ["ai_training", "ai_inference"]))
    stock_id = _asset_id(world, "stock.jpg")
    answer = _erase_at_sender(world, "app-a", "dora@a")  # dora's photo at A is the stock bytes
    assert answer["body"]["state"] == "completed" and answer["body"]["matched"] == 1
    assert _held(world, "stock.jpg")
    with world.ws("vendor") as v:
        [erasure] = [e for e in v.erasures() if e["scope"]["kind"] == "request"]
        view = v.erasure(erasure["id"])
        assert view["plan"]["kept_for_review"] == [stock_id]
        assert view["plan"]["counts"]["photos"] == 0
        assert verify_certificate(v.erasure_certificate(erasure["id"]), v.public_key_pem()).ok
        # A's provenance is gone: its terms no longer count, the stock terms still do
        assert [t["direction"] for t in v.transfers()] == ["in"]
        assert v.consent_check("sam@stock", "ai_training")["allowed"] is False
        assert v.consent_check("sam@stock", "ai_inference")["allowed"]


def test_two_senders_of_the_same_bytes_each_keep_their_terms(world: World) -> None:
    _receive(world, _send(world, "app-a", ["ai_training", "ai_inference"]))
    _receive(world, _send(world, "app-b", ["ai_inference"]))
    common = _sha("common.jpg")
    with world.ws("vendor") as v:
        build = v.build_dataset("train", purpose="ai_training", at="2021-03-01")
        assert common not in _members(v, "train", build.version)
        [why] = [i for i in build.excluded_items if i["sha256"] == common]
        assert why["rule"] == "policy_disallows" and "'app-b/" in why["reason"], why
        infer = v.build_dataset("infer", purpose="ai_inference", at="2021-03-01")
        assert common in _members(v, "infer", infer.version)
    answer = _erase_at_sender(world, "app-a", "carol@a")
    assert answer["body"]["state"] == "completed"
    assert _held(world, "common.jpg")  # B's provenance still holds it
    with world.ws("vendor") as v:
        # only B's terms are left: inference yes, training no
        build = v.build_dataset("train2", purpose="ai_training", at="2021-03-01")
        assert common not in _members(v, "train2", build.version)
    _erase_at_sender(world, "app-b", "cole@b")
    assert not _held(world, "common.jpg")  # nothing holds it any more: erased


def test_own_bytes_ingested_after_a_bundle_brought_them_are_held_through_both(world: World) -> None:
    """The reverse order: A's bundle brings bytes first, then the vendor's own source meets
    the same bytes. Its ingest records the source as a provenance (not only a duplicate):
    the stock terms and the stock owner's denial apply, and A's request leaves the bytes."""
    with world.ws("vendor") as v:
        v.add_source("stock-late", kind="partner", at="2019-01-01")
        v.add_policy(
            "stock-late",
            "licence",
            text=b"model release",
            effective_from="2019-01-01",
            allows=["ai_training", "ai_inference"],
            at="2019-01-01",
        )
        (world.root / "late-consent.csv").write_text(
            "subject,purpose,decision,at\nlia@late,ai_training,denied,2019-06-01\n"
        )
        v.import_consent(world.root / "late-consent.csv", at="2019-06-01")
    _receive(world, _send(world, "app-a", ["ai_training", "ai_inference"]))
    a0 = _asset_id(world, "a0.jpg")
    folder = world.root / "in" / "late"
    folder.mkdir(parents=True)
    (folder / "a0.jpg").write_bytes(PHOTOS["a0.jpg"])
    (world.root / "in" / "late.csv").write_text("path,subject\na0.jpg,lia@late\n")
    with world.ws("vendor") as v:
        report = v.ingest(
            folder, source="stock-late", manifest=world.root / "in" / "late.csv", at="2021-02-02"
        )
        assert report.duplicates == 1 and report.provenances_added == 1
        assert report.to_dict()["provenances_added"] == 1
        # lia denied ai_training: through the late source the use is refused, whatever A allowed
        build = v.build_dataset("train", purpose="ai_training", at="2021-03-01")
        assert _sha("a0.jpg") not in _members(v, "train", build.version)
        [why] = [i for i in build.excluded_items if i["sha256"] == _sha("a0.jpg")]
        assert why["rule"] == "consent_denied" and "one of 2 provenances" in why["reason"], why
        assert v.consent_check("lia@late", "ai_inference", at="2021-03-01")["allowed"]
    answer = _erase_at_sender(world, "app-a", "alice@a")
    assert answer["body"]["state"] == "completed"
    assert _held(world, "a0.jpg")  # the vendor's own source still holds it
    assert not _held(world, "a1.jpg")  # held only through A: erased
    with world.ws("vendor") as v:
        [erasure] = [e for e in v.erasures() if e["scope"]["kind"] == "request"]
        assert v.erasure(erasure["id"])["plan"]["kept_for_review"] == [a0]


# -- defect 7 (bundle parts) --------------------------------------------------------------
@pytest.mark.parametrize("extra", ["../evil.txt", "photos/" + "0" * 64 + ".jpg"])
def test_a_bundle_with_an_extra_member_is_refused_whole(world: World, extra: str) -> None:
    bundle = _send(world, "app-a", ["ai_inference"])
    bad = world.root / "bad.zip"
    with zipfile.ZipFile(bundle) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
        zout.writestr(extra, PHOTOS["b0.jpg"])
    with world.ws("vendor") as v:
        before = v.status()
        with pytest.raises(InvalidInput, match=r"not listed in the signed manifest.*refused whole"):
            v.receive_bundle(bad)
        after = v.status()
        assert after == before
        assert v.transfers() == []


def _gps_of(data: bytes) -> dict:
    with Image.open(io.BytesIO(data)) as im:
        return dict(im.getexif().get_ifd(0x8825))


def test_location_metadata_is_stripped_on_share_unless_kept(world: World) -> None:
    assert _gps_of(PHOTOS["gps.jpg"])  # the photo as the sender holds it
    for keep in (False, True):
        bundle = _send(world, "app-a", ["ai_inference"], keep_metadata=keep)
        with zipfile.ZipFile(bundle) as zf:
            import json

            body = json.loads(zf.read(MANIFEST_NAME))["body"]
            [item] = [i for i in body["items"] if i["subject"] == _ref(world, "erin@a")]
            data = zf.read(item["path"])
            assert (
                hashlib.sha256(data).hexdigest() == item["sha256"]
            )  # the manifest describes what it carries
            assert bool(_gps_of(data)) is keep
            if not keep:
                assert item["sha256"] != _sha("gps.jpg") and item["metadata"] == "location_stripped"
                with Image.open(io.BytesIO(data)) as im:
                    assert im.getexif().get(0x0112) == 1  # orientation stays
                stripped = bundle
            else:
                assert item["sha256"] == _sha("gps.jpg")
    # the stripped copy still maps back to the sender's photo: its erasure reaches it
    _receive(world, stripped)
    answer = _erase_at_sender(world, "app-a", "erin@a")
    assert (answer["body"]["state"], answer["body"]["matched"]) == ("completed", 1)


def _ref(world: World, subject: str) -> str:
    with world.ws("app-a") as a:
        return a.subject(subject)["ref"]


@pytest.mark.parametrize(
    ("fmt", "media_type"), [("PNG", "image/png"), ("WEBP", "image/webp"), ("TIFF", "image/tiff")]
)
def test_location_metadata_is_stripped_from_other_formats_too(fmt: str, media_type: str) -> None:
    from disgorge.sharing.metadata import strip_location

    img = Image.new("RGB", (64, 64), (200, 100, 50))
    exif = Image.Exif()
    exif[0x0112] = 1
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 31.0, 12.5)})
    buf = io.BytesIO()
    img.save(buf, fmt, exif=exif.tobytes(), **({"lossless": True} if fmt == "WEBP" else {}))
    assert _gps_of(buf.getvalue())
    out = strip_location(buf.getvalue(), media_type)
    assert not _gps_of(out)
    with Image.open(io.BytesIO(out)) as im:
        assert im.getexif().get(0x0112) == 1 and im.convert("RGB").getpixel((5, 5)) == (200, 100, 50)
    plain = io.BytesIO()
    img.save(plain, fmt)
    assert strip_location(plain.getvalue(), media_type) == plain.getvalue()  # nothing to strip: same bytes
