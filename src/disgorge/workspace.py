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
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import assets, audit, runs, sources, subjects
from ._time import iso, parse_instant, utcnow
from .assets import AssetView
from .audit import service as audit_service
from .audit.service import AuditEventView, ProofView, TreeHead
from .audit.violations import find_violations
from .catalog import (
    SCHEMA_HEAD,
    Asset,
    AssetDerivative,
    AssetSubject,
    AuditEvent,
    ConsentRecord,
    Meta,
    Source,
    Subject,
    current_revision,
    make_engine,
    make_sessionmaker,
    purge_free_space,
    upgrade,
)
from .catalog.lineage import LineageGraph
from .config import MARKER, Config, find_workspace, make_private
from .consent import ConsentGate, ConsentImportReport, ItemRef, import_consent, parse_purpose
from .context import Context
from .datasets import DatasetBuild, build_dataset, dataset_diff, dataset_view
from .errors import InvalidInput, WorkspaceError
from .ingest import IngestReport
from .ingest import service as ingest_service
from .ingest.pipeline import ProgressFn
from .runs import RecordedRun, RunHandle
from .sources import SourceView
from .subjects import SubjectView, find_subject, ref_of
from .vault import BlobStore, EnvKek, FileKek, KekProvider, Vault, new_key

if TYPE_CHECKING:
    from .erasure.service import AckResult, ErasureListed, ErasureView, PlanSummary, Reverification
    from .sharing.outbox import NoticeClosed
    from .sharing.peers import PeerView
    from .sharing.receive import BundleReceived, LegacyTransfer
    from .sharing.share import ShareReport
    from .sharing.transfers import TransferView
    from .training.lifecycle import ModelAudit, ModelView, Prediction, RetiredModel, TrainedModel, Unlearned
    from .training.registry import SealedCheckpoints
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
    ) -> SourceView:
        return sources.add_source(self.ctx, name, kind=kind, description=description, at=at)

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
    ) -> SourceView:
        """Record a privacy-policy version of a source: its text hash, dates and purposes."""
        return sources.add_policy(
            self.ctx,
            source,
            version,
            text=text,
            effective_from=effective_from,
            effective_to=effective_to,
            allows=allows,
            at=at,
        )

    def sources(self) -> list[SourceView]:
        return sources.list_sources(self.ctx)

    def source(self, name: str) -> SourceView:
        return sources.source_view(self.ctx, name)

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
        return ingest_service.ingest(
            self.ctx,
            path,
            source=source,
            manifest=manifest,
            subject_from=subject_from,
            at=at,
            workers=workers,
            progress=progress,
        )

    # -- subjects and assets ---------------------------------------------------------------
    def subject_ref(self, subject_id: str) -> str:
        """The pseudonymous ref for an external id (or a ref, returned as is)."""
        return ref_of(self.vault, subject_id)

    def subject(self, subject_id: str) -> SubjectView:
        """A subject's ref, state, assets and consent history (no personal data)."""
        return subjects.subject_view(self.ctx, subject_id)

    def _asset(self, session: Session, sha256: str) -> Asset:
        return assets.find_asset(session, sha256)

    def asset(self, sha256: str) -> AssetView:
        """An asset's catalog entry (hashes, type, size, source, subject refs)."""
        return assets.asset_view(self.ctx, sha256)

    def read_asset(self, sha256: str) -> bytes:
        """Decrypt and return the photo's original bytes (checked against its sha256)."""
        return assets.read_asset(self.ctx, sha256)

    def destroy_subject_key(self, subject_id: str, *, at: str | datetime | None = None) -> str:
        """Crypto-shred a subject: destroy its data key, so nothing sealed under it opens."""
        return subjects.destroy_subject_key(self.ctx, subject_id, at=at)

    # -- vision ----------------------------------------------------------------------------
    @property
    def face_index_path(self) -> Path:
        """The sealed face index (``index/faces.sealed``, see :mod:`disgorge.vision.index`)."""
        return self.ctx.face_index_path

    def _drop_from_face_index(self, asset_ids: list[str]) -> None:
        from .vision.index import drop_from_face_index

        drop_from_face_index(self.ctx, asset_ids)

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
        """The sealed cache of the decrypted PDQ hashes (see :mod:`disgorge.vision.hash_cache`)."""
        return self.ctx.hash_cache

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
    def _checkpoints(self, model_name: str) -> SealedCheckpoints:
        from .training import lifecycle

        return lifecycle.checkpoints(self.ctx, model_name)

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
    ) -> TrainedModel:
        """Train a SISA face-identification model on a dataset version, through the gate.

        Training a face model is both ``ai_training`` and ``biometric_processing``: every
        photo must be covered for both at the time of training, or nothing is trained.
        """
        from .training import lifecycle

        return lifecycle.train_model(
            self.ctx,
            name,
            dataset=dataset,
            model=model,
            shards=shards,
            slices=slices,
            aggregation=aggregation,
            seed=seed,
            code_version=code_version,
            at=at,
        )

    def models(self) -> list[ModelView]:
        from .training import lifecycle

        return lifecycle.models(self.ctx)

    def model(self, ref: str) -> ModelView:
        from .training import lifecycle

        return lifecycle.model(self.ctx, ref)

    def predict(self, name: str, image: str | Path | bytes, *, min_score: float = 0.5) -> Prediction:
        """Who is in this photo, according to face model ``name``? Faces below ``min_score`` are unknown."""
        from .training import lifecycle

        return lifecycle.predict(self.ctx, name, image, min_score=min_score)

    def retire_model(self, ref: str, *, reason: str, at: str | datetime | None = None) -> RetiredModel:
        """Retire a model version and everything derived from it (works for external models)."""
        from .training import lifecycle

        return lifecycle.retire_model(self.ctx, ref, reason=reason, at=at)

    def unlearn_model(
        self,
        name: str,
        *,
        subjects: list[str] | None = None,
        shas: list[str] | None = None,
        asset_ids: list[str] | None = None,
        reason: str = "unlearning request",
        at: str | datetime | None = None,
    ) -> Unlearned:
        """Make model ``name`` forget photos (or every photo of subjects), exactly (see
        :func:`disgorge.training.lifecycle.unlearn_model`)."""
        from .training import lifecycle

        return lifecycle.unlearn_model(
            self.ctx, name, subjects=subjects, shas=shas, asset_ids=asset_ids, reason=reason, at=at
        )

    def model_audit(self, ref: str, *, forgotten: list[str]) -> ModelAudit:
        """Has this model version forgotten these subjects? Membership inference and the
        retrain-from-scratch proof (see :func:`disgorge.training.lifecycle.model_audit`)."""
        from .training import lifecycle

        return lifecycle.model_audit(self.ctx, ref, forgotten=forgotten)

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
            runs.emit_lineage(
                self.ctx,
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
    ) -> AbstractContextManager[RunHandle]:
        """Run a job through the gate and record its lineage::

            with ws.run("train-face-id", purpose="ai_training", inputs=[ds]) as run:
                run.add_output("model", name="face-id", path="model.pkl")

        Refused (:class:`ConsentDenied`) if any photo behind the inputs is not covered for
        ``purpose`` now (or at ``at``), unless ``override=(role, justification)``.
        """
        return runs.running(
            self.ctx,
            job,
            purpose=purpose,
            inputs=inputs,
            parameters=parameters,
            code_version=code_version,
            at=at,
            override=override,
        )

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
    ) -> RecordedRun:
        """Record a run done outside disgorge (e.g. a model trained elsewhere), with its outputs.

        ``outputs`` are keyword dicts for :meth:`RunHandle.add_output` (``kind``, ``name``...).
        """
        return runs.record_run(
            self.ctx,
            job,
            purpose=purpose,
            inputs=inputs,
            outputs=outputs,
            parameters=parameters,
            code_version=code_version,
            at=at,
            override=override,
        )

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
        return runs.open_run(
            self.ctx,
            job,
            purpose=purpose,
            inputs=inputs,
            parameters=parameters,
            code_version=code_version,
            at=at,
            override=override,
            external=external,
        )

    def _finish_run(self, handle: RunHandle, state: str, at: datetime | None) -> None:
        runs.close_run(self.ctx, handle, state, at)

    def lineage(self, node: str, *, direction: str = "downstream", max_depth: int = 50) -> LineageGraph:
        """Everything downstream (derived from) or upstream (feeding) a node such as ``subject:ID``."""
        return runs.lineage(self.ctx, node, direction=direction, max_depth=max_depth)

    def violations(self, *, as_of: str | datetime | None = None) -> dict[str, Any]:
        """Every dataset version and run that used items their consent or policy did not cover."""
        when = parse_instant(as_of, what="--as-of") if as_of is not None else None
        with self.reader() as session:
            return find_violations(session, as_of=when)

    # -- erasure -----------------------------------------------------------------------------
    # each a call into disgorge.erasure.service (same parameters, same results)
    def erasure_plan(self, kind: str, ident: str) -> PlanSummary:
        """The dry run: what erasing this scope would touch, with counts per kind."""
        from .erasure import service

        return service.plan(self.ctx, kind, ident)

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
    ) -> ErasureView:
        """Erase a subject, a photo (sha256), a source, a model or a transfer, and everything derived.

        Plans, approves and (with ``execute``) runs the erasure to its certificate. Without
        ``execute`` the request stays ``planned`` until :meth:`erasure_approve`. Photos that
        went to recipients are erased there too: each gets a signed request (deadline in
        ``deadline_days``); the request waits up to ``wait`` seconds for their certificates,
        then rests in ``awaiting_recipients`` until :meth:`erasure_resume` or an ack.
        """
        from .erasure import service

        return service.erase(
            self.ctx,
            kind,
            ident,
            reason=reason,
            execute=execute,
            at=at,
            wait=wait,
            deadline_days=deadline_days,
        )

    def erasure_approve(
        self, request_id: str, *, at: str | datetime | None = None, wait: float = 30.0
    ) -> ErasureView:
        from .erasure import service

        return service.approve(self.ctx, request_id, at=at, wait=wait)

    def erasure_resume(self, request_id: str, *, wait: float = 30.0) -> ErasureView:
        """Run an interrupted erasure to its end (every step is idempotent); for one awaiting
        recipients, deliver and poll again for up to ``wait`` seconds."""
        from .erasure import service

        return service.resume(self.ctx, request_id, wait=wait)

    def erasure_ack(self, document: dict[str, Any], *, wait: float = 0.0) -> AckResult:
        """Import a recipient's signed answer delivered by hand, then go on with its erasure."""
        from .erasure import service

        return service.ack(self.ctx, document, wait=wait)

    def erasure_close_recipient(self, request_id: str, recipient: str, *, reason: str) -> NoticeClosed:
        """Close a recipient's part by hand (it never answered, or answered on paper), with a reason."""
        from .erasure import service

        return service.close_recipient(self.ctx, request_id, recipient, reason=reason)

    def erasure_request_document(self, request_id: str, recipient: str) -> dict[str, Any]:
        """The signed request to a recipient without an endpoint, to deliver by hand."""
        from .erasure import service

        return service.request_document(self.ctx, request_id, recipient)

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
    ) -> ShareReport:
        """Send a dataset version to a recipient: gate, signed bundle, transfer in the lineage.

        With ``at`` in the past and no ``out``, record a legacy transfer as it happened
        (every member; under ``override`` where the gate would not have allowed it).
        The bundle's photos leave without location metadata unless ``keep_metadata``.
        """
        from .sharing.share import share

        return share(
            self.ctx,
            dataset,
            to=to,
            purposes=purposes,
            out=out,
            at=at,
            override=override,
            keep_metadata=keep_metadata,
        )

    def receive_legacy(self, sender: str, *, source: str, at: str | datetime | None = None) -> LegacyTransfer:
        """Record that a registered sender sent the photos of ``source`` outside disgorge (a
        legacy transfer), so that its erasure requests by sha256 reach them — and only them."""
        from .sharing.receive import receive_legacy

        return receive_legacy(self.ctx, sender, source=source, at=at)

    def receive_bundle(self, path: str | Path, *, at: str | datetime | None = None) -> BundleReceived:
        """Check a bundle from a registered sender whole, then ingest it under its terms."""
        from .sharing.receive import receive_bundle

        return receive_bundle(self.ctx, path, at=at)

    def transfers(self) -> list[TransferView]:
        from .sharing.transfers import list_transfers

        return list_transfers(self.ctx)

    def receive_erasure_request(self, document: dict[str, Any], *, wait: float = 30.0) -> dict[str, Any]:
        """Handle a sender's erasure request delivered as a file: check it, erase, and
        return the signed answer (with this workspace's certificate once completed)."""
        from .sharing.inbox import receive_file

        return receive_file(self.ctx, document, wait=wait)

    def erasure_cancel(self, request_id: str, *, reason: str = "cancelled") -> ErasureView:
        from .erasure import service

        return service.cancel(self.ctx, request_id, reason=reason)

    def erasures(self) -> list[ErasureListed]:
        from .erasure import service

        return service.list_requests(self.ctx)

    def erasure(self, request_id: str) -> ErasureView:
        from .erasure import service

        return service.show(self.ctx, request_id)

    def interrupted_erasures(self) -> list[str]:
        from .erasure import service

        return service.interrupted(self.ctx)

    def erasure_certificate(self, request_id: str) -> dict[str, Any]:
        from .erasure import service

        return service.certificate(self.ctx, request_id)

    def verify_erasure(self, request_id: str) -> Reverification:
        """Check a completed erasure again: its tombstones, shredded keys and re-ingestion
        fingerprints in the catalog, and that no active model uses its photos. The forensic
        scan is not repeated (its byte samples were destroyed at completion); the result
        says so and quotes the scan made then (:func:`disgorge.erasure.service.reverify`)."""
        from .erasure import service

        return service.reverify(self.ctx, request_id)

    # -- audit ---------------------------------------------------------------------------
    def verify_audit(self, since: dict[str, Any] | None = None) -> audit.ChainReport:
        """Check the hash chain; with ``since`` (a signed tree head kept outside, e.g. from
        :meth:`audit_checkpoint`), also prove that the log extends it (docs/audit.md)."""
        return audit_service.verify_chain(self.ctx, since)

    def audit_checkpoint(self, *, save_cache: bool = True) -> TreeHead:
        """A signed tree head of the audit log as it stands now (docs/audit.md): keep it
        outside the workspace; ``verify_audit(since=head)`` later proves the log extends it."""
        return audit_service.checkpoint(self.ctx, save_cache=save_cache)

    def audit_prove(self, *, since: dict[str, Any] | None = None, event: int | None = None) -> ProofView:
        """A signed head now, with the consistency proof from ``since`` (a head kept before)
        and/or the inclusion proof of event ``event``: what a third party checks offline."""
        return audit_service.prove(self.ctx, since=since, event=event)

    def audit_events(self, *, limit: int = 50, action: str | None = None) -> list[AuditEventView]:
        return audit_service.events(self.ctx, limit=limit, action=action)

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
