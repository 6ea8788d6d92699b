"""The vault: per-subject keys, sealed blobs bound to their asset, crypto-shredding."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from disgorge import IntegrityError, KeyDestroyed, Workspace
from disgorge.catalog import Asset, Subject
from disgorge.vault import open_sealed, seal
from disgorge.vault.crypto import new_key


def _all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def test_seal_binds_value_to_its_context() -> None:
    key = new_key()
    sealed = seal(key, b"photo bytes", b"asset:1")
    assert open_sealed(key, sealed, b"asset:1") == b"photo bytes"
    with pytest.raises(IntegrityError):
        open_sealed(key, sealed, b"asset:2")
    with pytest.raises(IntegrityError):
        open_sealed(new_key(), sealed, b"asset:1")
    assert seal(key, b"photo bytes", b"asset:1") != sealed  # fresh nonce every time


def test_each_subject_has_its_own_key(ws: Workspace, photo_dir: Path) -> None:
    ws.ingest(photo_dir, source="app", subject_from="dirname")
    with ws.sessions() as session:
        subjects = session.scalars(select(Subject)).all()
        deks = {ws.vault.dek(s) for s in subjects}
        wrapped = {s.dek_wrapped for s in subjects}
    assert len(subjects) == 3
    assert len(deks) == 3
    assert all(w is not None and len(w) > 32 for w in wrapped)
    blob = _all_bytes(ws.config.home)
    assert not any(dek in blob for dek in deks), "a raw data key is stored in clear"


def test_refs_are_keyed_per_workspace(tmp_path: Path) -> None:
    with Workspace.init(tmp_path / "a") as a, Workspace.init(tmp_path / "b") as b:
        assert a.subject_ref("Ada_Lovelace") == a.subject_ref(" Ada_Lovelace ")
        assert a.subject_ref("Ada_Lovelace") != b.subject_ref("Ada_Lovelace")
        assert a.subject_ref("Ada_Lovelace").startswith("sub_")


def test_crypto_shredding_makes_every_blob_of_the_subject_unreadable(ws: Workspace, photo_dir: Path) -> None:
    ws.ingest(photo_dir, source="app", subject_from="dirname")
    ada = [a["sha256"] for a in ws.subject("Ada_Lovelace")["assets"]]
    alan = [a["sha256"] for a in ws.subject("Alan_Turing")["assets"]]
    originals = {sha: ws.read_asset(sha) for sha in ada}
    with ws.sessions() as session:
        wrapped = session.scalar(
            select(Subject.dek_wrapped).where(Subject.ref == ws.subject_ref("Ada_Lovelace"))
        )
        dek = ws.vault.dek(
            session.scalar(select(Subject).where(Subject.ref == ws.subject_ref("Ada_Lovelace")))
        )
        blob_keys = session.scalars(select(Asset.blob_key).where(Asset.sha256.in_(ada))).all()

    ref = ws.destroy_subject_key("Ada_Lovelace")

    assert ws.subject(ref)["key"] == "destroyed"
    for sha in ada:
        with pytest.raises(KeyDestroyed):
            ws.read_asset(sha)
    for sha in alan:
        assert len(ws.read_asset(sha)) > 0
    # A fresh process (no cached key) cannot read them either.
    ws.close()
    with Workspace.open(ws.root) as again:
        for sha in ada:
            with pytest.raises(KeyDestroyed):
                again.read_asset(sha)
    # The blobs are still there (the erasure engine deletes them), but neither the key
    # nor its wrapped form survives anywhere in the workspace: database, WAL, free pages.
    assert all(ws.store.exists(k) for k in blob_keys)
    everything = _all_bytes(ws.config.home)
    assert wrapped not in everything
    assert dek not in everything
    assert not any(o[100:164] in everything for o in originals.values())
    assert ws.verify_audit().ok


def test_blob_of_one_asset_cannot_pass_as_another(ws: Workspace, photo_dir: Path) -> None:
    ws.ingest(photo_dir, source="app", subject_from="dirname")
    with ws.sessions() as session:
        a, b = session.scalars(
            select(Asset).where(Asset.owner.has(ref=ws.subject_ref("Ada_Lovelace")))
        ).all()[:2]
        owner = session.get(Subject, a.owner_id)
    with pytest.raises(IntegrityError):
        ws.vault.get_blob(owner, a.id, b.blob_key)


def test_a_blob_deleted_with_overwrite_leaves_zeros_not_ciphertext(tmp_path: Path) -> None:
    """A second hard link sees the inode unlinking leaves behind: what free blocks would hold."""
    import os

    from disgorge.vault import BlobStore

    store = BlobStore(str(tmp_path / "blobs"))
    kept, wiped = store.put(os.urandom(3000)), store.put(os.urandom(3000))
    for key in (kept, wiped):
        os.link(store._path(key), tmp_path / f"{key}.link")
    store.delete(kept)
    store.delete(wiped, overwrite=True)
    assert not store.exists(kept) and not store.exists(wiped)
    assert (tmp_path / f"{kept}.link").read_bytes() != bytes(3000)  # unlinked: still there
    assert (tmp_path / f"{wiped}.link").read_bytes() == bytes(3000)  # overwritten first
    store.delete(wiped, overwrite=True)  # idempotent
