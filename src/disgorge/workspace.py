"""The Workspace: the one object users (and the CLI, and the server) talk to.

It opens the configuration, the catalog and the vault, and offers every operation as a
method that takes plain values and returns plain values (dataclasses or JSON-ready
dicts). The CLI is a thin layer over these methods::

    from disgorge import Workspace

    ws = Workspace.init("photos-ws")
    ws.add_source("dating-app")
    report = ws.ingest("lfw/", source="dating-app", subject_from="dirname")
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import audit
from ._time import iso, parse_instant, utcnow
from .audit.violations import find_violations
from .catalog import (
    SCHEMA_HEAD,
    Artifact,
    Asset,
    AssetDerivative,
    AssetSubject,
    AuditEvent,
    ConsentRecord,
    DatasetVersion,
    Meta,
    PolicyVersion,
    Run,
    Source,
    Subject,
    current_revision,
    make_engine,
    make_sessionmaker,
    purge_free_space,
    upgrade,
)
from .catalog.lineage import LineageGraph, downstream, parse_node, upstream
from .config import MARKER, Config, find_workspace, make_private
from .consent import ConsentGate, ConsentImportReport, ItemRef, Purpose, import_consent, parse_purpose
from .consent.records import prevails
from .context import Context
from .datasets import DatasetBuild, build_dataset, dataset_diff, dataset_view, find_dataset
from .erasure.forensics import MIN_NEEDLE_BYTES
from .errors import ConsentDenied, DisgorgeError, IntegrityError, InvalidInput, NotFound, WorkspaceError
from .ingest import IngestOptions, IngestReport, run_ingest
from .ingest.pipeline import ProgressFn
from .runs import Override, add_output, finish_run, resolve_inputs, start_run
from .subjects import find_subject, ref_of
from .vault import BlobStore, EnvKek, FileKek, KekProvider, Vault, new_key

if TYPE_CHECKING:
    from .sharing.peers import PeerView
    from .sharing.transfers import TransferView
    from .vision.hash_cache import HashCache

__all__ = ["GcReport", "RunHandle", "Workspace"]

_log = logging.getLogger("disgorge")
_KEK_CHECK_AAD = b"disgorge:kek-check"
_PSEUDONYM_AAD = b"disgorge:pseudonym-key"
_SIGNING_AAD = b"disgorge:signing-key"
_MODEL_AAD = b"disgorge:model-key"
SOURCE_KINDS = ("app", "scrape", "transfer", "partner", "other")


@dataclass
class GcReport:
    orphan_blobs: int
    temporaries: int
    removed: bool
    #: erasure sample files no request needs any more (left by a crash)
    orphan_samples: int = 0
    #: whether the catalog was VACUUMed (``gc(vacuum=True)``)
    vacuumed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "orphan_blobs": self.orphan_blobs,
            "temporaries": self.temporaries,
            "orphan_samples": self.orphan_samples,
            "vacuumed": self.vacuumed,
            "removed": self.removed,
        }


class RunHandle:
    """A run in progress (from :meth:`Workspace.run`): register its outputs with ``add_output``."""

    def __init__(
        self, ws: Workspace, run: Run, at: datetime, inputs: list[str], check: dict[str, Any]
    ) -> None:
        self._ws = ws
        self._run = run
        self._at = at
        self.id = run.id
        self.job = run.job
        self.purpose = run.purpose
        self.inputs = inputs
        self.consent_check = check
        self.outputs: list[str] = []
        #: dataset-level input names, as OpenLineage events name them
        self.lineage_inputs: list[str] = []

    def add_output(
        self,
        kind: str,
        *,
        name: str = "",
        version: str = "",
        path: str | Path | None = None,
        uri: str = "",
        extra: dict[str, Any] | None = None,
    ) -> str:
        """Register an artifact this run produced; returns its lineage id (e.g. ``model:face-id@1``).

        With ``path`` the file's sha256 is recorded (its bytes are not copied).
        """
        content = ""
        if path is not None:
            file = Path(path)
            if not file.is_file():
                raise InvalidInput(f"output {file}: no such file")
            digest = hashlib.sha256()
            with file.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            content = digest.hexdigest()
            uri = uri or file.resolve().as_uri()
        with self._ws.sessions.begin() as session:
            run = session.merge(self._run)
            artifact = add_output(
                session,
                run,
                kind,
                at=self._at,
                name=name,
                version=version,
                uri=uri,
                content_sha256=content,
                extra=extra,
            )
            label = (
                f"{artifact.kind}:{artifact.name}@{artifact.version}"
                if artifact.name
                else f"{kind}:{artifact.id}"
            )
        self.outputs.append(label)
        return label


def _embedder_of(session: Session, asset_ids: list[str] | None) -> str:
    """The embedder that made the embeddings of ``asset_ids`` (None: of the workspace)."""
    from .vision.analyze import embedders_in_use

    wanted = set(asset_ids) if asset_ids is not None else None
    used = sorted(e for e, ids in embedders_in_use(session).items() if wanted is None or ids & wanted)
    if len(used) > 1:
        raise InvalidInput(
            f"embeddings of more than one embedder ({', '.join(used)}); analyse again with one"
        )
    return used[0] if used else "dlib"


def _default_actor() -> str:
    actor = os.environ.get("DISGORGE_ACTOR")
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _when(at: str | datetime | None) -> datetime:
    return utcnow() if at is None else parse_instant(at, what="--at")


class Workspace:
    """An opened workspace. Use :meth:`init` or :meth:`open`; close it (or use ``with``)."""

    def __init__(self, config: Config, kek: KekProvider, *, actor: str | None = None) -> None:
        self.config = config
        self.actor = actor or _default_actor()
        self.engine = make_engine(config.resolved_catalog_url())
        #: writer sessions (BEGIN IMMEDIATE on SQLite); use ``sessions.begin()`` for changes
        self.sessions = make_sessionmaker(self.engine)
        #: reader sessions: a consistent snapshot that never blocks the writer; never write here
        self.reader = make_sessionmaker(self.engine, writer=False)
        self.kek = kek
        self.store = BlobStore(config.resolved_store_url())
        self._vault: Vault | None = None
        self._ctx: Context | None = None
        self._emitter: Any = None

    # -- opening ---------------------------------------------------------------------
    @classmethod
    def init(
        cls,
        path: str | Path = ".",
        *,
        kek_env: str | None = None,
        actor: str | None = None,
        at: str | datetime | None = None,
    ) -> Workspace:
        """Create a workspace in ``path`` (created if missing) and return it opened.

        With ``kek_env`` the KEK is read from that environment variable instead of a key
        file in the workspace.
        """
        root = Path(path).expanduser().resolve()
        home = root / MARKER
        if home.exists():
            raise WorkspaceError(f"{root} already holds a disgorge workspace")
        when = _when(at)
        kek: KekProvider = EnvKek(kek_env) if kek_env else None  # type: ignore[assignment]
        home.mkdir(parents=True)
        make_private(home)  # before anything is created in it: umask 0o077, folder 0700
        try:
            config = Config(home=home)
            if kek_env:
                config.kek_source, config.kek_env = "env", kek_env
            else:
                kek = FileKek.create(config.resolved_kek_path())
            config.save()
            ws = cls(config, kek, actor=actor)
            upgrade(ws.engine)
            signing = Ed25519PrivateKey.generate()
            public = signing.public_key().public_bytes_raw()
            with ws.sessions.begin() as session:
                session.add_all(
                    [
                        Meta(key="workspace_id", value=uuid.uuid4().hex.encode()),
                        Meta(key="kek_check", value=kek.wrap(new_key(), _KEK_CHECK_AAD)),
                        Meta(key="pseudonym_key", value=kek.wrap(new_key(), _PSEUDONYM_AAD)),
                        Meta(key="signing_key", value=kek.wrap(signing.private_bytes_raw(), _SIGNING_AAD)),
                        Meta(key="signing_public", value=public),
                    ]
                )
                session.flush()
                audit.append(
                    session,
                    "workspace.created",
                    {"kek": config.kek_source, "signing_public": public.hex()},
                    actor=ws.actor,
                    at=when,
                )
            (home / "signing.pub").write_bytes(ws.public_key_pem())
            ws._load_vault()
            return ws
        except BaseException:
            shutil.rmtree(home, ignore_errors=True)
            raise

    @classmethod
    def open(cls, path: str | Path | None = None, *, actor: str | None = None) -> Workspace:
        """Open the workspace at ``path``, ``$DISGORGE_WORKSPACE`` or the cwd upwards."""
        config = Config.load(find_workspace(path))
        make_private(config.home, config)
        if config.kek_source == "env":
            kek: KekProvider = EnvKek(config.kek_env)
        elif config.kek_source == "file":
            kek = FileKek(config.resolved_kek_path())
        else:
            raise WorkspaceError(f"config: unknown kek source {config.kek_source!r} (file or env)")
        ws = cls(config, kek, actor=actor)
        try:
            have, want = current_revision(ws.engine), SCHEMA_HEAD
            if have != want:
                raise WorkspaceError(
                    f"catalog schema is at {have}, this disgorge expects {want}: run `disgorge migrate`"
                )
            ws._load_vault()
            ws._retire_clear_face_index()
        except BaseException:
            ws.close()
            raise
        return ws

    def migrate(self) -> str | None:
        """Upgrade the catalog schema to the latest revision; returns it."""
        upgrade(self.engine)
        return current_revision(self.engine)

    def _meta(self, session: Session, key: str) -> bytes:
        row = session.get(Meta, key)
        if row is None:
            raise WorkspaceError(f"catalog is missing its {key!r} entry: damaged workspace")
        return row.value

    def _load_vault(self) -> None:
        with self.reader() as session:
            self.kek.unwrap(self._meta(session, "kek_check"), _KEK_CHECK_AAD)
            pseudonym = self.kek.unwrap(self._meta(session, "pseudonym_key"), _PSEUDONYM_AAD)
        self._vault = Vault(self.kek, self.store, pseudonym)
        self._ctx = Context(
            config=self.config,
            engine=self.engine,
            sessions=self.sessions,
            reader=self.reader,
            kek=self.kek,
            store=self.store,
            vault=self._vault,
            actor=self.actor,
        )

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.close()
        if self._emitter is not None:
            self._emitter.close()
            self._emitter = None
        self.engine.dispose()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- basics ----------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return self.config.root

    @property
    def vault(self) -> Vault:
        assert self._vault is not None
        return self._vault

    @property
    def ctx(self) -> Context:
        """The context the domain services work in (see :mod:`disgorge.context`)."""
        if self._ctx is None:
            raise WorkspaceError("the workspace is not open")
        return self._ctx

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self.sessions.begin() as session:
            yield session

    @property
    def workspace_id(self) -> str:
        with self.reader() as session:
            return self._meta(session, "workspace_id").decode()

    def public_key(self) -> Ed25519PublicKey:
        with self.reader() as session:
            return Ed25519PublicKey.from_public_bytes(self._meta(session, "signing_public"))

    def public_key_pem(self) -> bytes:
        return self.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, data: bytes) -> bytes:
        """Sign with the workspace's Ed25519 key (certificates, manifests)."""
        with self.reader() as session:
            raw = self.kek.unwrap(self._meta(session, "signing_key"), _SIGNING_AAD)
        return Ed25519PrivateKey.from_private_bytes(raw).sign(data)

    # -- sources and policies ----------------------------------------------------------
    def add_source(
        self, name: str, *, kind: str = "app", description: str = "", at: str | datetime | None = None
    ) -> dict[str, Any]:
        name = name.strip()
        if not name:
            raise InvalidInput("source name is empty")
        if kind not in SOURCE_KINDS:
            raise InvalidInput(f"source kind {kind!r}: expected one of {', '.join(SOURCE_KINDS)}")
        when = _when(at)
        with self.sessions.begin() as session:
            if session.scalar(select(Source).where(Source.name == name)) is not None:
                raise InvalidInput(f"a source named {name!r} already exists")
            source = Source(name=name, kind=kind, description=description, created_at=when)
            session.add(source)
            session.flush()
            audit.append(session, "source.added", {"source": name, "kind": kind}, actor=self.actor, at=when)
            return self._source_view(session, source)

    def add_policy(
        self,
        source: str,
        version: str,
        *,
        text: bytes,
        effective_from: str | datetime,
        effective_to: str | datetime | None = None,
        allows: list[str] | tuple[str, ...] = (),
        at: str | datetime | None = None,
    ) -> dict[str, Any]:
        """Record a privacy-policy version of a source: its text hash, dates and purposes."""
        start = parse_instant(effective_from, what="--from")
        end = parse_instant(effective_to, what="--to") if effective_to is not None else None
        if end is not None and end <= start:
            raise InvalidInput("policy version: --to must be after --from")
        purposes = sorted({parse_purpose(p).value for p in allows})
        when = _when(at)
        with self.sessions.begin() as session:
            src = self._source(session, source)
            if any(p.version == version for p in src.policies):
                raise InvalidInput(f"source {source!r} already has policy version {version!r}")
            policy = PolicyVersion(
                source_id=src.id,
                version=version,
                text_sha256=hashlib.sha256(text).hexdigest(),
                effective_from=start,
                effective_to=end,
                allowed_purposes=purposes,
            )
            session.add(policy)
            session.flush()
            audit.append(
                session,
                "policy.added",
                {
                    "source": src.name,
                    "version": version,
                    "allows": purposes,
                    "text_sha256": policy.text_sha256,
                },
                actor=self.actor,
                at=when,
            )
            session.refresh(src)
            return self._source_view(session, src)

    def sources(self) -> list[dict[str, Any]]:
        with self.reader() as session:
            return [
                self._source_view(session, s) for s in session.scalars(select(Source).order_by(Source.name))
            ]

    def source(self, name: str) -> dict[str, Any]:
        with self.reader() as session:
            return self._source_view(session, self._source(session, name))

    def _source(self, session: Session, name: str) -> Source:
        src = session.scalar(select(Source).where(Source.name == name))
        if src is None:
            raise NotFound(f"no source named {name!r}; create it with `disgorge source add {name}`")
        return src

    def _source_view(self, session: Session, src: Source) -> dict[str, Any]:
        assets = session.scalar(select(func.count()).select_from(Asset).where(Asset.source_id == src.id))
        return {
            "name": src.name,
            "kind": src.kind,
            "description": src.description,
            "created_at": iso(src.created_at),
            "assets": assets,
            "policies": [
                {
                    "version": p.version,
                    "text_sha256": p.text_sha256,
                    "effective_from": iso(p.effective_from),
                    "effective_to": iso(p.effective_to),
                    "allows": list(p.allowed_purposes),
                }
                for p in src.policies
            ],
        }

    # -- consent -------------------------------------------------------------------------
    def import_consent(self, path: str | Path, *, at: str | datetime | None = None) -> ConsentImportReport:
        """Import consent history from CSV/JSON Lines; all-or-nothing (docs/formats.md)."""
        when = _when(at)
        with self.sessions.begin() as session:
            return import_consent(session, self.vault, Path(path), actor=self.actor, at=when)

    # -- ingest --------------------------------------------------------------------------
    def ingest(
        self,
        path: str | Path,
        *,
        source: str,
        manifest: str | Path | None = None,
        subject_from: str | None = None,
        at: str | datetime | None = None,
        workers: int | None = None,
        progress: ProgressFn | None = None,
    ) -> IngestReport:
        """Ingest a folder, .zip or .tar(.gz) of photos. Rejected files are reported, not fatal.

        To analyse faces as well, call :meth:`analyze` with ``asset_ids=report.asset_ids``.
        """
        options = IngestOptions(
            max_pixels=self.config.max_pixels, max_bytes=self.config.max_file_bytes, workers=workers
        )
        return run_ingest(
            self.sessions,
            self.vault,
            Path(path),
            source=source,
            actor=self.actor,
            at=_when(at),
            manifest=Path(manifest) if manifest is not None else None,
            subject_from=subject_from,
            options=options,
            progress=progress,
        )

    # -- subjects and assets ---------------------------------------------------------------
    def subject_ref(self, subject_id: str) -> str:
        """The pseudonymous ref for an external id (or a ref, returned as is)."""
        return ref_of(self.vault, subject_id)

    def subject(self, subject_id: str) -> dict[str, Any]:
        """A subject's ref, state, assets and consent history (no personal data)."""
        with self.reader() as session:
            subject = find_subject(session, self.vault, subject_id)
            links = session.execute(
                select(Asset.sha256, AssetSubject.role, Asset.state)
                .join(AssetSubject, AssetSubject.asset_id == Asset.id)
                .where(AssetSubject.subject_id == subject.id)
                .order_by(Asset.ingested_at, Asset.sha256)
            ).all()
            records = session.scalars(
                select(ConsentRecord)
                .where(ConsentRecord.subject_id == subject.id)
                .order_by(ConsentRecord.at, ConsentRecord.id)
            ).all()
            current: dict[str, str] = {}
            current_at: dict[str, datetime] = {}
            for rec in records:  # at one instant the more restrictive decision prevails
                if rec.asset_id is None and prevails(
                    rec.decision, rec.at, current.get(rec.purpose), current_at.get(rec.purpose)
                ):
                    current[rec.purpose], current_at[rec.purpose] = rec.decision, rec.at
            return {
                "ref": subject.ref,
                "state": subject.state,
                "key": "active" if subject.dek_wrapped is not None else "destroyed",
                "created_at": iso(subject.created_at),
                "assets": [{"sha256": s, "role": r, "state": st} for s, r, st in links],
                "consent": [
                    {
                        "purpose": r.purpose,
                        "decision": r.decision,
                        "at": iso(r.at),
                        "policy_version": r.policy_version,
                        "asset": r.asset_id,
                        "evidence": r.evidence_enc is not None,
                    }
                    for r in records
                ],
                "consent_now": {p.value: current.get(p.value, "none") for p in Purpose},
            }

    def _asset(self, session: Session, sha256: str) -> Asset:
        key = sha256.strip().lower()
        if len(key) < 8:
            raise InvalidInput("give at least 8 hex digits of the asset's sha256")
        rows = session.scalars(select(Asset).where(Asset.sha256.startswith(key)).limit(2)).all()
        if not rows:
            raise NotFound(f"no asset with sha256 {key}")
        if len(rows) > 1:
            raise InvalidInput(f"sha256 prefix {key} is ambiguous; give more digits")
        return rows[0]

    def asset(self, sha256: str) -> dict[str, Any]:
        """An asset's catalog entry (hashes, type, size, source, subject refs)."""
        with self.reader() as session:
            asset = self._asset(session, sha256)
            subjects = session.execute(
                select(Subject.ref, AssetSubject.role)
                .join(AssetSubject, AssetSubject.subject_id == Subject.id)
                .where(AssetSubject.asset_id == asset.id)
                .order_by(AssetSubject.role.desc(), Subject.ref)
            ).all()
            return {
                "id": asset.id,
                "sha256": asset.sha256,
                "size": asset.size,
                "media_type": asset.media_type,
                "width": asset.width,
                "height": asset.height,
                "source": asset.source.name,
                "owner": asset.owner.ref,
                "depicted": [ref for ref, role in subjects if role == "depicted"],
                "captured_at": iso(asset.captured_at),
                "ingested_at": iso(asset.ingested_at),
                "state": asset.state,
                "blob": asset.blob_key,
            }

    def read_asset(self, sha256: str) -> bytes:
        """Decrypt and return the photo's original bytes (checked against its sha256)."""
        with self.reader() as session:
            asset = self._asset(session, sha256)
            if asset.blob_key is None:
                raise NotFound(f"asset {asset.sha256[:12]} has no stored blob (state {asset.state})")
            data = self.vault.get_blob(asset.owner, asset.id, asset.blob_key)
        if hashlib.sha256(data).hexdigest() != asset.sha256:
            raise IntegrityError(f"asset {asset.sha256[:12]}: decrypted bytes do not match its sha256")
        return data

    def destroy_subject_key(self, subject_id: str, *, at: str | datetime | None = None) -> str:
        """Crypto-shred a subject: destroy its data key, so nothing sealed under it opens.

        The wrapped key is overwritten in the database (secure_delete) and the WAL and free
        pages are purged. The erasure engine calls this as one of its steps; it does not
        delete catalog rows or blobs by itself.
        """
        when = _when(at)
        with self.sessions.begin() as session:
            subject = find_subject(session, self.vault, subject_id)
            self.vault.shred(subject)
            audit.append(
                session, "subject.key_destroyed", {"subject": subject.ref}, actor=self.actor, at=when
            )
            ref = subject.ref
            owned = list(session.scalars(select(Asset.id).where(Asset.owner_id == subject.id)))
        # after the commit, so no search can put them back: the PDQ cache holds the subject's
        # hashes decrypted, under the live KEK, where the destroyed key no longer guards them;
        # the sealed face index their embeddings likewise
        self.hash_cache.drop_assets(owned)
        self._drop_from_face_index(owned)
        purge_free_space(self.engine)
        return ref

    # -- vision ----------------------------------------------------------------------------
    @property
    def face_index_path(self) -> Path:
        """The sealed face index (``index/faces.sealed``, see :mod:`disgorge.vision.index`)."""
        return self.config.home / "index" / "faces.sealed"

    def _drop_from_face_index(self, asset_ids: list[str]) -> None:
        """Rewrite the sealed face index without these photos' embeddings (if there is one)."""
        from .vault.blobstore import wipe_file
        from .vision import FaceIndex, FacesUnavailable
        from .vision.analyze import embedding_ids

        if not self.face_index_path.exists():
            return
        with self.reader() as session:
            ids = embedding_ids(session, asset_ids)
        try:
            index = FaceIndex(self.face_index_path, self.kek)
        except FacesUnavailable:  # it cannot be rewritten here: it goes whole, rebuilt later
            wipe_file(self.face_index_path, unlink=True)
            return
        if index.remove(ids):
            index.save()

    def _retire_clear_face_index(self) -> None:
        """Older versions kept the face index in clear (``index/faces.faiss``): zero and
        remove it, and rebuild the sealed one from the catalog (when faiss is installed;
        otherwise the next analysis or face search does). The old file is never read."""
        from .vision.index import retire_clear_index

        if retire_clear_index(self.config.home / "index"):
            from .vision import FaceIndex, FacesUnavailable, reconcile_index

            try:
                index = FaceIndex(self.face_index_path, self.kek)
            except FacesUnavailable:
                return  # no faiss here: the next analysis or face search with it rebuilds it
            reconcile_index(self.reader, self.vault, index)

    @property
    def hash_cache(self) -> HashCache:
        """The sealed cache of the decrypted PDQ hashes (``index/pdq.sealed``), so a copy
        search does not decrypt every hash (see :mod:`disgorge.vision.hash_cache`)."""
        from .vision.hash_cache import HashCache

        return HashCache(self.config.home / "index" / "pdq.sealed", self.kek)

    def analyze(
        self,
        *,
        shas: list[str] | None = None,
        asset_ids: list[str] | None = None,
        force: bool = False,
        workers: int | None = None,
        cnn: bool = False,
        embedder: str = "dlib",
        at: str | datetime | None = None,
        progress: ProgressFn | None = None,
    ) -> Any:
        """Detect faces, and for photos whose subjects granted ``biometric_processing``
        compute embeddings and crops; PDQ-hash every photo (see :mod:`disgorge.vision`).

        By default only photos not analysed yet; ``force`` redoes them. ``embedder`` is
        ``"dlib"`` (extra ``faces``) or ``"portrait"``: a simple pixel descriptor for the
        drawn sample portraits, not a face recogniser (see :mod:`disgorge.vision.portrait`).
        """
        from .vision import run_analyze

        ids = list(asset_ids) if asset_ids is not None else None
        if shas is not None:
            with self.reader() as session:
                ids = (ids or []) + [self._asset(session, sha).id for sha in shas]
        report = run_analyze(
            self.sessions,
            self.reader,
            self.vault,
            self.face_index_path,
            actor=self.actor,
            at=_when(at),
            asset_ids=ids,
            force=force,
            workers=workers,
            cnn=cnn,
            embedder=embedder,
            progress=progress,
        )
        if report.analyzed:
            # the new hashes go into the PDQ cache now, while few: otherwise the next copy
            # search (or an erasure's verifier) decrypts them all at once
            from .vision import load_hash_matrix

            load_hash_matrix(self.reader, self.vault, cache=self.hash_cache)
        return report

    def find(
        self, image: str | Path | bytes, *, by: str = "copy", max_distance: float | None = None
    ) -> dict[str, Any]:
        """Stored photos that are copies of ``image`` (``by="copy"``, PDQ) or show the same
        person (``by="face"``, embeddings), with distances and the threshold used."""
        from .vision import (
            DEFAULT_MAX_DISTANCE,
            SAME_PERSON_DISTANCE,
            FaceIndex,
            find_copies,
            find_faces,
            load_hash_matrix,
            reconcile_index,
        )

        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        if by == "copy":
            threshold = int(max_distance) if max_distance is not None else DEFAULT_MAX_DISTANCE
            matrix = load_hash_matrix(self.reader, self.vault, cache=self.hash_cache)
            matches = find_copies(self.reader, self.vault, data, max_distance=threshold, matrix=matrix)
            result: dict[str, Any] = {"by": "copy", "metric": "pdq_hamming_bits", "threshold": threshold}
        elif by == "face":
            threshold_f = max_distance if max_distance is not None else SAME_PERSON_DISTANCE
            index = FaceIndex(self.face_index_path, self.kek)
            reconcile_index(self.reader, self.vault, index)
            with self.reader() as session:
                embedder = _embedder_of(session, None)
            faces, matches = find_faces(self.reader, index, data, max_distance=threshold_f, embedder=embedder)
            result = {
                "by": "face",
                "metric": "embedding_euclidean",
                "threshold": threshold_f,
                "query_faces": faces,
            }
        else:
            raise InvalidInput(f"--by {by!r}: expected copy or face")
        result["matches"] = [m.to_dict() for m in matches]
        return result

    # -- models (SISA training, unlearning, registry) ----------------------------------------
    def _checkpoints(self, model_name: str) -> Any:
        """The sealed checkpoint store of one model (its versions share checkpoints; two
        models never do, so unlearning one never destroys the other's files)."""
        from .training.registry import SealedCheckpoints

        with self.sessions.begin() as session:
            row = session.get(Meta, "model_key")
            if row is None:  # workspaces made before models existed get their key on first use
                row = Meta(key="model_key", value=self.kek.wrap(new_key(), _MODEL_AAD))
                session.add(row)
            key = self.kek.unwrap(row.value, _MODEL_AAD)
        folder = hashlib.sha256(model_name.encode()).hexdigest()[:16]  # a name may hold any character
        return SealedCheckpoints(self.config.home / "models" / folder / "checkpoints", key)

    def _biometric_gaps(self, session: Session, asset_ids: list[str], at: datetime) -> dict[str, int]:
        rows = session.execute(
            select(Asset.id, Asset.source_id, Asset.owner_id).where(Asset.id.in_(asset_ids))
        ).all()
        verdicts = ConsentGate(session, Purpose.BIOMETRIC_PROCESSING, at).evaluate(
            [ItemRef(r.id, r.source_id, r.owner_id) for r in rows]
        )
        gaps: dict[str, int] = {}
        for v in verdicts.values():
            if not v.allowed:
                gaps[v.rule] = gaps.get(v.rule, 0) + 1
        return gaps

    def train_model(
        self,
        name: str,
        *,
        dataset: str,
        model: str = "face-id",
        shards: int = 8,
        slices: int = 4,
        aggregation: str = "max_score",
        seed: int = 0,
        code_version: str = "",
        at: str | datetime | None = None,
    ) -> dict[str, Any]:
        """Train a SISA face-identification model on a dataset version, through the gate.

        Training a face model is both ``ai_training`` and ``biometric_processing``: every
        photo must be covered for both at the time of training, or nothing is trained.
        """
        from .training import SISAClassifier
        from .training.face_id import FaceIdClassifier
        from .training.registry import MODEL_TYPES, dataset_members, load_training_data

        if model not in MODEL_TYPES:
            raise InvalidInput(f"model type {model!r}: expected one of {', '.join(MODEL_TYPES)}")
        if not name.strip() or "@" in name:
            raise InvalidInput(f"model name {name!r}: must be non-empty and contain no '@'")
        when = _when(at)
        with self.reader() as session:
            ds = find_dataset(session, dataset)
            members = dataset_members(session, ds.artifact_id)
            gaps = self._biometric_gaps(session, members, when)
            if gaps:
                rules = ", ".join(f"{rule}: {n}" for rule, n in gaps.items())
                raise ConsentDenied(
                    f"training face model {name!r} is biometric processing: {sum(gaps.values())} of "
                    f"{len(members)} photos in {ds.name}@{ds.version} are not covered for it ({rules})"
                )
            data = load_training_data(session, self.vault, members)
            embedder = _embedder_of(session, members)
        if not len(data.asset_ids):
            raise InvalidInput(
                f"no photo of {ds.name}@{ds.version} has a face embedding; run `disgorge analyze` first"
            )
        estimator = FaceIdClassifier(random_state=seed)
        with self.run(
            f"train:{name}",
            purpose="ai_training",
            inputs=[f"dataset:{ds.name}@{ds.version}"],
            parameters={
                "model": model,
                "shards": shards,
                "slices": slices,
                "aggregation": aggregation,
                "seed": seed,
            },
            code_version=code_version,
            at=at,
        ) as run:
            sisa = SISAClassifier(
                estimator,
                n_shards=shards,
                n_slices=slices,
                aggregation=aggregation,
                random_state=seed,
                partition="balanced",  # even shards: accuracy holds at S = 8 (docs/benchmarks.md)
                checkpoints=self._checkpoints(name),
            ).fit(data.X, data.labels, sample_ids=data.asset_ids, groups=list(data.labels))
            label = run.add_output(
                "model",
                name=name,
                extra={
                    "type": model,
                    # predict must embed a query as the training photos were
                    "embedder": embedder,
                    "estimator": estimator.get_params(),
                    "manifest": sisa.manifest(),
                    "dataset_id": ds.artifact_id,
                    "skipped": data.skipped,
                },
            )
        return {
            "model": label,
            "dataset": f"{ds.name}@{ds.version}",
            "samples": len(data.asset_ids),
            "subjects": len(set(data.labels.tolist())),
            "skipped": data.skipped,
            "shards": shards,
            "slices": slices,
            "run": run.id,
        }

    def models(self) -> list[dict[str, Any]]:
        from .training.registry import model_view

        with self.reader() as session:
            rows = session.scalars(
                select(Artifact).where(Artifact.kind == "model").order_by(Artifact.name)
            ).all()
            return [model_view(session, a) for a in rows]

    def model(self, ref: str) -> dict[str, Any]:
        from .training.registry import find_model, model_view

        with self.reader() as session:
            return model_view(session, find_model(session, ref))

    def predict(self, name: str, image: str | Path | bytes, *, min_score: float = 0.5) -> dict[str, Any]:
        """Who is in this photo, according to face model ``name``? Faces below ``min_score`` are unknown."""
        from .training.registry import find_model, load_model
        from .vision.faces import analyze

        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        with self.reader() as session:
            artifact = find_model(session, name)
            model = load_model(artifact, self._checkpoints(artifact.name))
            label = f"model:{artifact.name}@{artifact.version}"
        query = analyze(data, embed=True, phash=False, embedder=artifact.extra.get("embedder", "dlib"))
        faces = []
        for face in query.faces:
            assert face.embedding is not None
            scores = model.predict_proba(
                np.frombuffer(face.embedding, dtype="<f4").reshape(1, -1).astype(float)
            )[0]
            best = int(np.argmax(scores))
            score = float(scores[best])
            faces.append(
                {
                    "box": list(face.box),
                    "subject": str(model.classes_[best]) if score >= min_score else None,
                    "score": round(score, 4),
                }
            )
        return {"model": label, "faces": faces, "min_score": min_score}

    def retire_model(self, ref: str, *, reason: str, at: str | datetime | None = None) -> dict[str, Any]:
        """Retire a model version and everything derived from it (works for external models)."""
        from .training.registry import find_model, retire_cascade

        if len(reason.strip()) < 3:
            raise InvalidInput("give a reason for retiring the model")
        when = _when(at)
        with self.sessions.begin() as session:
            artifact = find_model(session, ref)
            if artifact.state != "active":
                raise InvalidInput(f"model:{artifact.name}@{artifact.version} is already {artifact.state}")
            retired = retire_cascade(session, artifact, reason=reason, actor=self.actor, at=when)
        return {"retired": retired, "reason": reason}

    def _finish_unlearning(self, name: str, when: datetime) -> None:
        """Complete an unlearning cut short after its new version was recorded: retire the
        version it was unlearned from and destroy the checkpoints only that one held."""
        from .training.registry import find_model

        def keys(art: Artifact) -> set[str]:
            shards = (art.extra or {}).get("manifest", {}).get("shards", [])
            return {k for s in shards for k in s["checkpoints"] if k}

        with self.sessions.begin() as session:
            try:
                latest = find_model(session, name)
                source = (latest.extra or {}).get("unlearned_from")
                old = find_model(session, f"{name}@{source}") if source else None
            except NotFound:
                return
            if old is None or latest.state != "active":
                return
            stale = keys(old) - keys(latest)
            if old.state == "active":
                old.state = "retired"
                audit.append(
                    session,
                    "model.unlearned",
                    {
                        "model": f"model:{old.name}@{old.version}",
                        "new_version": f"model:{latest.name}@{latest.version}",
                        "resumed": True,
                        "checkpoints_destroyed": len(stale),
                    },
                    actor=self.actor,
                    at=when,
                )
        store = self._checkpoints(name)
        for key in stale:
            store.destroy(key)  # a no-op for those already gone

    def unlearn_model(
        self,
        name: str,
        *,
        subjects: list[str] | None = None,
        shas: list[str] | None = None,
        asset_ids: list[str] | None = None,
        reason: str = "unlearning request",
        at: str | datetime | None = None,
    ) -> dict[str, Any]:
        """Make model ``name`` forget photos (or every photo of subjects), exactly.

        Retrains only the affected SISA shards from their last clean checkpoint, destroys
        every checkpoint that saw the photos, and registers a new model version trained
        on a new dataset version without them; the old version is retired. Photos whose
        consent no longer covers training are forgotten too (and reported).
        """
        from .datasets import derive_without
        from .training.forgetting import retrain_check
        from .training.registry import (
            audit_candidates,
            ever_trained,
            find_model,
            load_model,
            load_training_data,
        )

        when = _when(at)
        self._finish_unlearning(name.partition("@")[0], when)
        with self.reader() as session:
            artifact = find_model(session, name)
            model = load_model(artifact, self._checkpoints(artifact.name))
            trained = {i for s in model.shards_ for i in s.ids}
            forget: set[str] = set()
            for subject_id in subjects or []:
                subject = find_subject(session, self.vault, subject_id)
                forget.update(
                    session.scalars(
                        select(AssetSubject.asset_id).where(AssetSubject.subject_id == subject.id)
                    )
                )
            for sha in shas or []:
                forget.add(self._asset(session, sha).id)
            forget.update(asset_ids or [])
            requested = len(forget)
            items = [
                ItemRef(r.id, r.source_id, r.owner_id)
                for r in session.execute(
                    select(Asset.id, Asset.source_id, Asset.owner_id).where(Asset.id.in_(trained))
                )
            ]
            lapsed: set[str] = set()
            for purpose in (Purpose.AI_TRAINING, Purpose.BIOMETRIC_PROCESSING):  # a face model is both
                check = ConsentGate(session, purpose, when).evaluate(items)
                lapsed |= {a for a, v in check.items() if not v.allowed}
            lapsed -= forget
            forget |= lapsed
            # the new dataset version drops them all, photos without a face (never trained
            # on) included: a model must not keep an erased photo upstream in its lineage
            drop = set(forget)
            forget &= trained
            if not forget:
                return {
                    "model": f"model:{artifact.name}@{artifact.version}",
                    "forgotten": 0,
                    "message": f"none of the {requested} photo(s) were in the model's training set: "
                    "nothing to forget",
                }
            ds_id = artifact.extra["dataset_id"]
            ds = session.get(DatasetVersion, ds_id)
            ds_ref = f"{ds.name}@{ds.version}"
            # the forgetting audit's members (the photos to forget) and candidate non-members
            forgotten_data = load_training_data(session, self.vault, sorted(forget))
            candidates = audit_candidates(session, self.vault, forget)
            photo_shard, subject_shard = ever_trained(session, artifact)

        loader = self._embedding_loader()
        before = self._membership_audit(model, forgotten_data, candidates, photo_shard, subject_shard)
        # the old checkpoints stay until the new version is recorded: a crash before that
        # leaves the old version active and whole
        report = model.unlearn(sorted(forget), loader, destroy=False)
        after = self._membership_audit(model, forgotten_data, candidates, photo_shard, subject_shard)
        forgetting_audit = {
            "before": before,
            "after": after,
            "retrained_from_scratch": retrain_check(model, report.shards_retrained, loader),
        }
        with self.sessions.begin() as session:
            new_ds = derive_without(session, ds_ref, drop, at=when, actor=self.actor, reason=reason)
            new_ref = f"{new_ds.name}@{new_ds.version}"
        extra = dict(artifact.extra)
        extra.update(
            manifest=model.manifest(),
            dataset_id=new_ds.artifact_id,
            unlearned_from=artifact.version,
            forgetting_audit=forgetting_audit,
        )
        with self.run(
            f"unlearn:{artifact.name}",
            purpose="ai_training",
            inputs=[f"dataset:{new_ref}"],
            parameters={"from": artifact.version, "forgotten": report.forgotten, "reason": reason},
            at=at,
        ) as run:
            label = run.add_output("model", name=artifact.name, extra=extra)
        with self.sessions.begin() as session:
            old = session.get(Artifact, artifact.id)
            old.state = "retired"
            audit.append(
                session,
                "model.unlearned",
                {
                    "model": f"model:{artifact.name}@{artifact.version}",
                    "new_version": label,
                    "forgotten": report.forgotten,
                    "shards_retrained": report.shards_retrained,
                    "checkpoints_destroyed": report.checkpoints_destroyed,
                    "reason": reason,
                },
                actor=self.actor,
                at=when,
            )
        store = self._checkpoints(artifact.name)
        for key in report.stale_checkpoints:
            store.destroy(key)
        return {
            "model": label,
            "from": f"model:{artifact.name}@{artifact.version}",
            "dataset": new_ref,
            "requested": requested,
            "forgotten": report.forgotten,
            "lapsed_consent": len(lapsed & trained),
            "shards_retrained": report.shards_retrained,
            "slices_retrained": report.slices_retrained,
            "checkpoints_destroyed": report.checkpoints_destroyed,
            "classes_removed": len(report.classes_removed),
            "forgetting_audit": forgetting_audit,
            "message": report.message.replace("left for the caller to destroy", "destroyed"),
        }

    def _embedding_loader(self) -> Any:
        """``loader(ids) -> (X, labels)`` for SISA retraining, read from the catalog."""
        from .training.registry import load_training_data

        def loader(ids: Any) -> tuple[np.ndarray, np.ndarray]:
            with self.reader() as s:
                d = load_training_data(s, self.vault, list(ids))
            if len(d.asset_ids) != len(ids):
                raise IntegrityError(
                    "some remaining training photos lost their embeddings; cannot retrain exactly"
                )
            return d.X, d.labels

        return loader

    @staticmethod
    def _membership_audit(
        model: Any,
        members: Any,
        candidates: Any,
        photo_shard: dict[str, int],
        subject_shard: dict[str, int],
    ) -> dict[str, Any]:
        """LiRA on ``members`` (TrainingData of photos some version trained on) against
        the shards that trained them, with ``candidates`` as non-members where they fit."""
        from .training.forgetting import lira_audit

        return lira_audit(
            model,
            members_X=members.X,
            member_shards=[photo_shard[a] for a in members.asset_ids],
            member_subjects=members.labels.tolist(),
            others_X=candidates.X,
            other_subjects=candidates.labels.tolist(),
            subject_shard=subject_shard,
            member_ids=members.asset_ids,
        )

    def model_audit(self, ref: str, *, forgotten: list[str]) -> dict[str, Any]:
        """Has this model version forgotten these subjects? Membership inference (LiRA over
        the SISA shards) on their photos, and the proof: the shards that held them,
        retrained from scratch without them, have the same weights digest as this model."""
        from .training.forgetting import retrain_check
        from .training.registry import (
            audit_candidates,
            ever_trained,
            find_model,
            load_model,
            load_training_data,
        )

        with self.reader() as session:
            artifact = find_model(session, ref)
            model = load_model(artifact, self._checkpoints(artifact.name))
            trained = {i for s in model.shards_ for i in s.ids}
            targets: set[str] = set()
            for subject_id in forgotten:
                subject = find_subject(session, self.vault, subject_id)
                targets.update(
                    session.scalars(
                        select(AssetSubject.asset_id).where(AssetSubject.subject_id == subject.id)
                    )
                )
            photo_shard, subject_shard = ever_trained(session, artifact)
            ever = sorted(targets & set(photo_shard))
            members = load_training_data(session, self.vault, ever)
            candidates = audit_candidates(session, self.vault, targets)
        label = f"model:{artifact.name}@{artifact.version}"
        if not ever:
            reason = "neither this version nor those it was unlearned from trained on any of their photos"
            mia: dict[str, Any] = {"ran": False, "reason": reason, "members": 0, "non_members": 0}
            check: dict[str, Any] = {"ran": False, "reason": reason}
        else:
            mia = self._membership_audit(model, members, candidates, photo_shard, subject_shard)
            if not len(members.asset_ids):
                mia["reason"] = (
                    "no member photos left to attack with: their photos have no face embedding any more "
                    "(erased); the audit made when the model forgot them is in its forgetting_audit"
                )
            shards = sorted({photo_shard[a] for a in ever})
            check = retrain_check(model, shards, self._embedding_loader(), without=targets)
        still = len(targets & trained)
        return {
            "model": label,
            "forgotten_subjects": len(forgotten),
            "photos": len(targets),
            "ever_trained_on": len(ever),
            "still_trained_on_them": still,
            "membership_inference": mia,
            "retrained_from_scratch": check,
            "forgotten_exactly": bool(check.get("identical")) and still == 0 if check["ran"] else None,
        }

    # -- consent gate, datasets, runs, lineage -------------------------------------------
    def consent_check(
        self, subject_id: str, purpose: str, *, at: str | datetime | None = None
    ) -> dict[str, Any]:
        """May this subject's photos be used for ``purpose`` at ``at``? A verdict per photo, with reasons."""
        when = _when(at)
        purpose_value = parse_purpose(purpose).value
        with self.reader() as session:
            subject = find_subject(session, self.vault, subject_id)
            rows = session.execute(
                select(Asset.id, Asset.sha256, Asset.source_id, Asset.owner_id)
                .join(AssetSubject, AssetSubject.asset_id == Asset.id)
                .where(AssetSubject.subject_id == subject.id, Asset.state == "active")
                .order_by(Asset.sha256)
            ).all()
            verdicts = ConsentGate(session, purpose_value, when).evaluate(
                [ItemRef(r.id, r.source_id, r.owner_id) for r in rows]
            )
            items = [{"sha256": r.sha256, **verdicts[r.id].to_dict()} for r in rows]
        return {
            "subject": subject.ref,
            "purpose": purpose_value,
            "at": iso(when),
            "allowed": bool(items) and all(i["allowed"] for i in items),
            "photos": len(items),
            "covered": sum(1 for i in items if i["allowed"]),
            "items": items,
        }

    def build_dataset(
        self,
        name: str,
        *,
        purpose: str,
        source: str | None = None,
        subjects: list[str] | None = None,
        at: str | datetime | None = None,
    ) -> DatasetBuild:
        """Build a dataset version through the consent gate (see :mod:`disgorge.datasets`)."""
        when = _when(at)
        purpose_value = parse_purpose(purpose).value
        refs = {ref_of(self.vault, s) for s in subjects} if subjects is not None else None
        with self.sessions.begin() as session:
            build = build_dataset(
                session,
                name,
                purpose=purpose_value,
                at=when,
                actor=self.actor,
                source=source,
                subject_refs=refs,
            )
        if build.created:
            self._emit(
                "COMPLETE",
                f"dataset.build:{name}",
                build.run_id,
                purpose_value,
                when,
                [],
                [f"dataset:{name}@{build.version}"],
            )
        return build

    def dataset(self, ref: str, *, members: bool = False) -> dict[str, Any]:
        with self.reader() as session:
            return dataset_view(session, ref, with_members=members)

    def dataset_diff(self, a: str, b: str) -> dict[str, Any]:
        with self.reader() as session:
            return dataset_diff(session, a, b)

    def export_croissant(self, ref: str, path: str | Path) -> dict[str, Any]:
        """Write the dataset version as Croissant 1.1 JSON-LD to ``path``; returns the document.

        Members are listed by sha256 and technical properties only (see docs/standards.md).
        """
        from .interop.croissant import export_croissant

        target = Path(path)
        with self.sessions.begin() as session:
            doc = export_croissant(session, ref, workspace_id=self._meta(session, "workspace_id").decode())
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
            try:
                tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
                tmp.replace(target)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise InvalidInput(f"cannot write {target}: {exc.strerror or exc}") from None
            coverage = doc["disgorge:consentCoverage"]
            audit.append(
                session,
                "dataset.exported",
                {
                    "dataset": f"{doc['name']}@{doc['version']}",
                    "format": "croissant",
                    "members": coverage["disgorge:members"],
                },
                actor=self.actor,
            )
        return doc

    @contextmanager
    def run(
        self,
        job: str,
        *,
        purpose: str,
        inputs: list[str | DatasetBuild],
        parameters: dict[str, Any] | None = None,
        code_version: str = "",
        at: str | datetime | None = None,
        override: tuple[str, str] | None = None,
    ) -> Iterator[RunHandle]:
        """Run a job through the gate and record its lineage::

            with ws.run("train-face-id", purpose="ai_training", inputs=[ds]) as run:
                run.add_output("model", name="face-id", path="model.pkl")

        Refused (:class:`ConsentDenied`) if any photo behind the inputs is not covered for
        ``purpose`` now (or at ``at``), unless ``override=(role, justification)``.
        """
        handle = self._start_run(job, purpose, inputs, parameters, code_version, at, override, external=False)
        try:
            yield handle
        except BaseException:
            self._finish_run(handle, "failed", None if at is None else handle._at)
            raise
        self._finish_run(handle, "completed", None if at is None else handle._at)

    def record_run(
        self,
        job: str,
        *,
        purpose: str,
        inputs: list[str | DatasetBuild],
        outputs: list[dict[str, Any]],
        parameters: dict[str, Any] | None = None,
        code_version: str = "",
        at: str | datetime | None = None,
        override: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        """Record a run done outside disgorge (e.g. a model trained elsewhere), with its outputs.

        ``outputs`` are keyword dicts for :meth:`RunHandle.add_output` (``kind``, ``name``...).
        """
        if not outputs:
            raise InvalidInput("record a run with at least one output (--output KIND:NAME[@VERSION])")
        handle = self._start_run(job, purpose, inputs, parameters, code_version, at, override, external=True)
        try:
            for out in outputs:
                handle.add_output(**out)
        except BaseException:
            self._finish_run(handle, "failed", handle._at)
            raise
        self._finish_run(handle, "completed", handle._at)
        return {
            "run": handle.id,
            "job": job,
            "purpose": handle.purpose,
            "inputs": handle.inputs,
            "outputs": handle.outputs,
            "consent": handle.consent_check,
            "override": override is not None,
        }

    def _start_run(
        self,
        job: str,
        purpose: str,
        inputs: list[str | DatasetBuild],
        parameters: dict[str, Any] | None,
        code_version: str,
        at: str | datetime | None,
        override: tuple[str, str] | None,
        *,
        external: bool,
    ) -> RunHandle:
        when = _when(at)
        purpose_value = parse_purpose(purpose).value
        specs = [f"dataset:{i.name}@{i.version}" if isinstance(i, DatasetBuild) else str(i) for i in inputs]
        ov = Override(*override) if override is not None else None
        with self.sessions.begin() as session:
            nodes = resolve_inputs(session, specs, self.subject_ref)
            run, check = start_run(
                session,
                job=job,
                purpose=purpose_value,
                inputs=nodes,
                at=when,
                actor=self.actor,
                parameters=parameters,
                code_version=code_version,
                override=ov,
                external=external,
            )
            labels = [n.label for n in nodes]
            dataset_level = self._dataset_level_inputs(session, nodes)
        handle = RunHandle(self, run, when, labels, check.to_dict())
        handle.lineage_inputs = dataset_level
        self._emit("START", job, run.id, purpose_value, when, dataset_level, [])
        return handle

    def _dataset_level_inputs(self, session: Session, nodes: list[Any]) -> list[str]:
        """Input names for OpenLineage: a photo input is named by its source, never by itself."""
        names = set()
        for n in nodes:
            if n.kind == "asset":
                names.add(f"source:{session.get(Asset, n.key).source.name}")
            else:
                names.add(n.label)
        return sorted(names)

    def _finish_run(self, handle: RunHandle, state: str, at: datetime | None) -> None:
        when = at or utcnow()
        with self.sessions.begin() as session:
            run = session.merge(handle._run)
            finish_run(session, run, state=state, at=when, actor=self.actor)
        event = "COMPLETE" if state == "completed" else "FAIL"
        self._emit(event, handle.job, handle.id, handle.purpose, when, handle.lineage_inputs, handle.outputs)

    def _emit(
        self,
        event_type: str,
        job: str,
        run_id: str | None,
        purpose: str,
        when: datetime,
        inputs: list[str],
        outputs: list[str],
    ) -> None:
        """Send an OpenLineage run event, if a transport is configured (off by default).

        A misconfiguration (unknown transport, missing extra) raises. A delivery failure
        does not undo or fail the user's work, which the catalog has already recorded:
        it is logged and kept in the audit log as ``openlineage.undelivered``.
        """
        if self.config.openlineage_transport == "none":
            return
        from .interop.openlineage import OpenLineageEmitter

        if self._emitter is None:
            self._emitter = OpenLineageEmitter.from_config(
                self.config, namespace=f"disgorge://{self.workspace_id}"
            )
        run = run_id or uuid.uuid4().hex
        try:
            self._emitter.emit(
                event_type,
                run_id=run,
                job=job,
                purpose=purpose,
                event_time=when,
                inputs=inputs,
                outputs=outputs,
            )
        except DisgorgeError as exc:
            _log.warning("OpenLineage event not delivered: %s", exc)
            with self.sessions.begin() as session:
                audit.append(
                    session,
                    "openlineage.undelivered",
                    {
                        "event": event_type,
                        "run": run,
                        "job": job,
                        "transport": self.config.openlineage_transport,
                    },
                    actor=self.actor,
                )

    def lineage(self, node: str, *, direction: str = "downstream", max_depth: int = 50) -> LineageGraph:
        """Everything downstream (derived from) or upstream (feeding) a node such as ``subject:ID``."""
        if direction not in ("downstream", "upstream"):
            raise InvalidInput("direction must be downstream or upstream")
        if max_depth < 1:
            raise InvalidInput("max depth must be at least 1")
        with self.reader() as session:
            ref = parse_node(session, node, self.subject_ref)
            walk = downstream if direction == "downstream" else upstream
            return walk(session, ref, max_depth=max_depth)

    def violations(self, *, as_of: str | datetime | None = None) -> dict[str, Any]:
        """Every dataset version and run that used items their consent or policy did not cover."""
        when = parse_instant(as_of, what="--as-of") if as_of is not None else None
        with self.reader() as session:
            return find_violations(session, as_of=when)

    # -- erasure -----------------------------------------------------------------------------
    def _erasure(self, *, wait: float = 30.0, deadline_days: float = 30.0) -> Any:
        from .erasure.engine import ErasureEngine

        return ErasureEngine(self, wait=wait, deadline_days=deadline_days)

    def erasure_plan(self, kind: str, ident: str) -> dict[str, Any]:
        """The dry run: what erasing this scope would touch, with counts per kind."""
        from .erasure.plan import summarize

        return summarize(self._erasure().plan(kind, ident))

    def erase(
        self,
        kind: str,
        ident: str,
        *,
        reason: str,
        execute: bool = True,
        at: str | datetime | None = None,
        wait: float = 30.0,
        deadline_days: float = 30.0,
    ) -> dict[str, Any]:
        """Erase a subject, a photo (sha256), a source, a model or a transfer, and everything derived.

        Plans, approves and (with ``execute``) runs the erasure to its certificate. Without
        ``execute`` the request stays ``planned`` until :meth:`erasure_approve`. Photos that
        went to recipients are erased there too: each gets a signed request (deadline in
        ``deadline_days``); the request waits up to ``wait`` seconds for their certificates,
        then rests in ``awaiting_recipients`` until :meth:`erasure_resume` or an ack.
        """
        when = _when(at)
        # an external id is a needle only when long enough not to turn up by chance in
        # megabytes of ciphertext and SQLite pages ("ann" would); the catalog never holds it
        # anyway, only its keyed ref
        needles = (
            {"external-id": ident.encode()}
            if kind == "subject" and not ident.startswith("sub_") and len(ident.encode()) >= MIN_NEEDLE_BYTES
            else {}
        )
        engine = self._erasure(wait=wait, deadline_days=deadline_days)
        request_id = engine.create(kind, ident, reason=reason, at=when, needles=needles)
        if not execute:
            return engine.view(request_id)
        engine.approve(request_id, at=when)
        return engine.run(request_id)

    def erasure_approve(
        self, request_id: str, *, at: str | datetime | None = None, wait: float = 30.0
    ) -> dict[str, Any]:
        engine = self._erasure(wait=wait)
        engine.approve(request_id, at=_when(at))
        return engine.run(request_id)

    def erasure_resume(self, request_id: str, *, wait: float = 30.0) -> dict[str, Any]:
        """Run an interrupted erasure to its end (every step is idempotent); for one awaiting
        recipients, deliver and poll again for up to ``wait`` seconds."""
        return self._erasure(wait=wait).run(request_id)

    def erasure_ack(self, document: dict[str, Any], *, wait: float = 0.0) -> dict[str, Any]:
        """Import a recipient's signed answer delivered by hand, then go on with its erasure."""
        from .sharing.outbox import import_response

        result = import_response(self, document)
        view = self.erasure(result["request"])
        if view["state"] == "awaiting_recipients":
            view = self.erasure_resume(result["request"], wait=wait)
        return {**result, "erasure": view}

    def erasure_close_recipient(self, request_id: str, recipient: str, *, reason: str) -> dict[str, Any]:
        """Close a recipient's part by hand (it never answered, or answered on paper), with a reason."""
        from .sharing.outbox import close_notice

        engine = self._erasure()
        with self.reader() as session:
            request_id = engine.get(session, request_id).id
        return close_notice(self, request_id, recipient, reason)

    def erasure_request_document(self, request_id: str, recipient: str) -> dict[str, Any]:
        """The signed request to a recipient without an endpoint, to deliver by hand."""
        from .sharing.outbox import find_notice, request_document

        engine = self._erasure()
        with self.reader() as session:
            notice = find_notice(session, engine.get(session, request_id).id, recipient)
        return request_document(self, notice)

    # -- sharing -----------------------------------------------------------------------------
    def add_peer(
        self,
        role: str,
        name: str,
        *,
        public_key: bytes,
        endpoint: str = "",
        agreement: str = "",
        at: str | datetime | None = None,
    ) -> PeerView:
        """Register a recipient (we send photos to) or a sender (we accept them from)."""
        from .sharing.peers import add_peer

        return add_peer(
            self.ctx, role, name, public_key=public_key, endpoint=endpoint, agreement=agreement, at=at
        )

    def peers(self, role: str) -> list[PeerView]:
        from .sharing.peers import list_peers

        return list_peers(self.ctx, role)

    def share(
        self,
        dataset: str,
        *,
        to: str,
        purposes: list[str],
        out: str | Path | None = None,
        at: str | datetime | None = None,
        override: tuple[str, str] | None = None,
        keep_metadata: bool = False,
    ) -> dict[str, Any]:
        """Send a dataset version to a recipient: gate, signed bundle, transfer in the lineage.

        With ``at`` in the past and no ``out``, record a legacy transfer as it happened
        (every member; under ``override`` where the gate would not have allowed it).
        The bundle's photos leave without location metadata unless ``keep_metadata``.
        """
        from .sharing.share import share

        return share(
            self,
            dataset,
            recipient=to,
            purposes=purposes,
            out=Path(out) if out is not None else None,
            at=_when(at),
            backfill=out is None,
            override=override,
            keep_metadata=keep_metadata,
        )

    def receive_legacy(self, sender: str, *, source: str, at: str | datetime | None = None) -> dict[str, Any]:
        """Record that a registered sender sent the photos of ``source`` outside disgorge (a
        legacy transfer), so that its erasure requests by sha256 reach them — and only them."""
        from .sharing.share import receive_legacy

        return receive_legacy(self, sender, source=source, at=_when(at))

    def receive_bundle(self, path: str | Path, *, at: str | datetime | None = None) -> dict[str, Any]:
        """Check a bundle from a registered sender whole, then ingest it under its terms."""
        from .sharing.share import receive_bundle

        return receive_bundle(self, Path(path), at=_when(at) if at is not None else None)

    def transfers(self) -> list[TransferView]:
        from .sharing.transfers import list_transfers

        return list_transfers(self.ctx)

    def receive_erasure_request(self, document: dict[str, Any], *, wait: float = 30.0) -> dict[str, Any]:
        """Handle a sender's erasure request delivered as a file: check it, erase, and
        return the signed answer (with this workspace's certificate once completed)."""
        from .sharing.inbox import process, receive

        status, answer = receive(self, document)
        if status >= 400:
            raise InvalidInput(f"erasure request refused: {answer['error']}")
        if status == 202:
            status, answer = process(self, answer["body"]["nonce"], wait=wait)
        return answer

    def erasure_cancel(self, request_id: str, *, reason: str = "cancelled") -> dict[str, Any]:
        engine = self._erasure()
        engine.cancel(request_id, reason=reason, at=utcnow())
        return engine.view(request_id)

    def erasures(self) -> list[dict[str, Any]]:
        return self._erasure().list()

    def erasure(self, request_id: str) -> dict[str, Any]:
        return self._erasure().view(request_id)

    def interrupted_erasures(self) -> list[str]:
        return self._erasure().interrupted()

    def erasure_certificate(self, request_id: str) -> dict[str, Any]:
        from .erasure.engine import ErasureEngine

        engine = ErasureEngine(self)
        with self.reader() as session:
            req = engine.get(session, request_id)
            if not req.certificate:
                raise NotFound(f"erasure {req.id} has no certificate yet (state {req.state})")
            return dict(req.certificate)

    def verify_erasure(self, request_id: str) -> dict[str, Any]:
        """Check a completed erasure again: its tombstones, shredded keys and re-ingestion
        fingerprints in the catalog, and that no active model uses its photos. The forensic
        scan is not repeated (its byte samples were destroyed at completion); the result
        says so and quotes the scan made then (``ErasureEngine.reverify``)."""
        from .erasure.engine import ErasureEngine

        engine = ErasureEngine(self)
        with self.reader() as session:
            req = engine.get(session, request_id)
            if req.state != "completed":
                raise InvalidInput(f"erasure {req.id} is {req.state}; verify runs on completed erasures")
        result = engine.reverify(req)
        with self.sessions.begin() as session:
            audit.append(
                session, "erasure.reverified", {"request": req.id, "ok": result["ok"]}, actor=self.actor
            )
        return result

    # -- audit ---------------------------------------------------------------------------
    def verify_audit(self, since: dict[str, Any] | None = None) -> audit.ChainReport:
        """Check the hash chain; with ``since`` (a signed tree head kept outside, e.g. from
        :meth:`audit_checkpoint`), also prove that the log extends it (docs/audit.md)."""
        from .audit.anchor import check_since

        key, workspace_id = self.public_key().public_bytes_raw().hex(), self.workspace_id
        with self.reader() as session:
            report = audit.verify_chain(session)
            if since is None:
                return report
            return check_since(session, report, since, public_key_hex=key, workspace_id=workspace_id)

    def audit_checkpoint(self, *, save_cache: bool = True) -> dict[str, Any]:
        """A signed tree head of the audit log as it stands now (docs/audit.md): keep it
        outside the workspace; ``verify_audit(since=head)`` later proves the log extends it.

        ``save_cache=False`` never writes: the server's answers use it, so that reading a
        request's state never waits for the catalog's write lock (the process keeps its
        own copy of the tree's edge either way)."""
        from sqlalchemy.exc import OperationalError

        from .audit.anchor import save_frontier, tree_root

        key, workspace_id = self.public_key().public_bytes_raw().hex(), self.workspace_id
        with self.reader() as session:
            size, root, to_save = tree_root(session, cache_key=f"{workspace_id}:{self.engine.url}")
        if to_save is not None and save_cache:
            try:  # only a cache (audit.anchor): never worth failing for
                with self.sessions.begin() as session:
                    save_frontier(session, to_save)
            except OperationalError:
                _log.info("audit frontier not saved (the catalog is busy)")
        return self._tree_head(key, workspace_id, size, root)

    def _tree_head(self, key: str, workspace_id: str, size: int, root: bytes) -> dict[str, Any]:
        from .audit.transparency import signed_tree_head

        return signed_tree_head(self.sign, key, workspace_id, size, root, iso(utcnow()) or "")

    def audit_prove(self, *, since: dict[str, Any] | None = None, event: int | None = None) -> dict[str, Any]:
        """A signed head now, with the consistency proof from ``since`` (a head kept before)
        and/or the inclusion proof of event ``event``: what a third party checks offline."""
        from .audit import anchor
        from .audit.transparency import check_tree_head

        key, workspace_id = self.public_key().public_bytes_raw().hex(), self.workspace_id
        old = None
        if since is not None:
            try:
                old = check_tree_head(since, key)
            except ValueError as exc:
                raise InvalidInput(f"--from: {exc}") from None
        with self.reader() as session:
            if old is not None:
                found = anchor.consistency_proof(session, old.tree_size)
                if found["root"] is None:
                    raise IntegrityError(
                        f"the log has {found['tree_size']} event(s) where the given head has "
                        f"{old.tree_size}: events were removed (truncation or rollback)"
                    )
                size, root = found["tree_size"], found["root"]
            else:
                size, root, _ = anchor.tree_root(session)
            included = anchor.inclusion_proof(session, event) if event is not None else None
        out: dict[str, Any] = {"head": self._tree_head(key, workspace_id, size, root)}
        if old is not None:
            then = {"tree_size": old.tree_size, "root_hash": old.root.hex(), "timestamp": old.timestamp}
            out["from"] = then
            out["consistency"] = [p.hex() for p in found["proof"]]
        if included is not None:
            out["inclusion"] = {
                "seq": included["seq"],
                "leaf_index": included["leaf_index"],
                "event_hash": included["event_hash"],
                "path": [p.hex() for p in included["proof"]],
            }
        return out

    def audit_events(self, *, limit: int = 50, action: str | None = None) -> list[dict[str, Any]]:
        with self.reader() as session:
            query = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(limit)
            if action:
                query = query.where(AuditEvent.action == action)
            rows = list(session.scalars(query))
        return [
            {
                "seq": e.seq,
                "at": iso(e.at),
                "recorded_at": iso(e.recorded_at),
                "action": e.action,
                "actor": e.actor,
                "payload": json.loads(e.payload),
                "hash": e.hash,
            }
            for e in reversed(rows)
        ]

    # -- maintenance ----------------------------------------------------------------------
    def gc(self, *, grace_seconds: float = 900, dry_run: bool = False, vacuum: bool = False) -> GcReport:
        """Remove blobs the catalog does not know (left by a crash), stale temp files, and
        erasure sample files no open request needs (a crash between writing one and
        recording its request); with ``vacuum``, also rewrite the catalog (VACUUM), which
        small erasures skip unless their scan asks for it (design note 16).

        Only files older than ``grace_seconds`` are touched, so an ingest running right
        now keeps the blobs it is about to register.
        """
        from .catalog.models import ErasureRequest
        from .erasure.engine import samples_folder
        from .erasure.plan import OPEN_STATES
        from .vault.blobstore import wipe_file

        cutoff = time.time() - grace_seconds
        with self.reader() as session:
            known = set(session.scalars(select(Asset.blob_key).where(Asset.blob_key.is_not(None))))
            # face crops live in the same store: they are not orphans
            known |= set(
                session.scalars(select(AssetDerivative.blob_key).where(AssetDerivative.blob_key.is_not(None)))
            )
            open_requests = set(
                session.scalars(select(ErasureRequest.id).where(ErasureRequest.state.in_(OPEN_STATES)))
            )
        orphans = [k for k, mtime in self.store.entries() if k not in known and mtime <= cutoff]
        temps = [p for p, mtime in self.store.temporaries() if mtime <= cutoff]
        folder = samples_folder(self.config.home)
        samples = [  # <request id>.samples, or its temporary <request id>.samples.tmp
            p
            for p in (sorted(folder.iterdir()) if folder.is_dir() else [])
            if p.name.split(".")[0] not in open_requests and p.stat().st_mtime <= cutoff
        ]
        if not dry_run:
            for key in orphans:
                self.store.delete(key)
            for path in temps:
                self.store.remove_path(path)
            for path in samples:  # they hold photo bytes: overwritten, then unlinked
                wipe_file(path, unlink=True)
            if vacuum:
                purge_free_space(self.engine, vacuum=True)
            with self.sessions.begin() as session:
                audit.append(
                    session,
                    "gc.completed",
                    {
                        "orphan_blobs": len(orphans),
                        "temporaries": len(temps),
                        "orphan_samples": len(samples),
                        "vacuumed": vacuum,
                    },
                    actor=self.actor,
                )
        return GcReport(len(orphans), len(temps), not dry_run, len(samples), vacuum and not dry_run)

    def status(self) -> dict[str, Any]:
        from .catalog.models import ErasureRequest, Peer, Transfer

        with self.reader() as session:

            def count(model: Any, *where: Any) -> int:
                return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

            size = session.scalar(
                select(func.coalesce(func.sum(Asset.size), 0)).where(Asset.state == "active")
            )
            last = session.scalar(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1))
            return {
                "workspace": str(self.root),
                "workspace_id": self._meta(session, "workspace_id").decode(),
                "catalog": self.engine.url.render_as_string(hide_password=True),
                "store": self.store.url,
                "kek": self.kek.description,
                "schema": current_revision(self.engine),
                "subjects": count(Subject),
                "subjects_erased": count(Subject, Subject.dek_wrapped.is_(None)),
                "sources": count(Source),
                "assets": count(Asset, Asset.state == "active"),
                "asset_bytes": int(size or 0),
                "consent_records": count(ConsentRecord),
                "recipients": count(Peer, Peer.role == "recipient"),
                "senders": count(Peer, Peer.role == "sender"),
                "transfers_out": count(Transfer, Transfer.direction == "out"),
                "transfers_in": count(Transfer, Transfer.direction == "in"),
                "erasures_awaiting_recipients": count(
                    ErasureRequest, ErasureRequest.state == "awaiting_recipients"
                ),
                "audit_events": last.seq if last else 0,
                "audit_head": last.hash if last else audit.GENESIS,
            }
