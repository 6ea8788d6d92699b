"""The Workspace: the one object users (and the CLI, and the server) talk to.

It opens the configuration, the catalog and the vault (:mod:`disgorge.bootstrap`), and
offers every operation as a method that takes plain values and returns plain values
(dataclasses or typed, JSON-ready dicts). It is a facade: each method is one call into a
domain service that takes the workspace's :class:`~disgorge.context.Context` (sources,
ingest, assets, subjects, consent, vision, datasets, runs, training, erasure, sharing,
audit, maintenance), the same functions a server or a script can call directly. The
CLI is a thin layer over these methods::

    from disgorge import Workspace

    ws = Workspace.init("photos-ws")
    ws.add_source("dating-app")
    report = ws.ingest("lfw/", source="dating-app", subject_from="dirname")
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.orm import Session

from . import assets, bootstrap, maintenance, runs, subjects
from . import jobs as job_service
from . import sources as source_service
from .access import passwords as password_service
from .access import principals as principal_service
from .access import settings as settings_service
from .audit import service as audit_service
from .catalog import current_revision, make_engine, make_sessionmaker, upgrade
from .config import Config, find_workspace, make_private
from .consent import service as consent_service
from .context import Context
from .datasets import service as dataset_service
from .dsr import cases as dsr_cases
from .dsr import export as dsr_export
from .dsr import holds as dsr_holds
from .dsr import restore as dsr_restore
from .dsr import retention as dsr_retention
from .erasure import service as erasure_service
from .errors import RestoreNeeded, WorkspaceError
from .ingest import service as ingest_service
from .ingest.pipeline import ProgressFn
from .interop.croissant import write_croissant
from .maintenance import GcReport
from .runs import RunHandle
from .sharing import inbox as inbox_service
from .sharing import peers as peer_service
from .sharing import receive as receive_service
from .sharing import share as share_service
from .sharing import transfers as transfer_service
from .subjects import ref_of
from .vault import BlobStore, KekProvider, Vault
from .vault.s3 import open_store

if TYPE_CHECKING:
    from .training.lifecycle import ModelAudit, ModelView, Prediction, RetiredModel, TrainedModel, Unlearned
    from .vision.analyze import AnalyzeReport
    from .vision.hash_cache import HashCache
    from .vision.search import FindResult

__all__ = ["GcReport", "RunHandle", "Workspace"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _service(function: Callable[Concatenate[Context, _P], _R]) -> Callable[Concatenate[Workspace, _P], _R]:
    """A Workspace method that calls ``function`` with the workspace's context.

    The method has the service's parameters, defaults, types and docstring, written once,
    in the service: the facade cannot drift from what it calls. (The methods of services
    whose modules load heavy libraries, training and vision, are written out instead: they
    import them on first use, so that opening a workspace stays quick. Erasure is not one
    of them: the CLI loads it before every command, to resume an interrupted erasure.)
    """

    @functools.wraps(function)
    def method(self: Workspace, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        return function(self.ctx, *args, **kwargs)

    return method


class Workspace:
    """An opened workspace. Use :meth:`init` or :meth:`open`; close it (or use ``with``)."""

    def __init__(self, config: Config, kek: KekProvider, *, actor: str | None = None) -> None:
        self.config = config
        self.actor = actor or bootstrap.default_actor()
        self.engine = make_engine(config.resolved_catalog_url())
        #: writer sessions (BEGIN IMMEDIATE on SQLite); use ``sessions.begin()`` for changes
        self.sessions = make_sessionmaker(self.engine)
        #: reader sessions: a consistent snapshot that never blocks the writer; never write here
        self.reader = make_sessionmaker(self.engine, writer=False)
        self.kek = kek
        self.store: BlobStore = open_store(config.resolved_store_url(), config.store_endpoint)
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
        catalog: str | None = None,
        store: str | None = None,
        store_endpoint: str | None = None,
    ) -> Workspace:
        """Create a workspace in ``path`` (created if missing) and return it opened.

        With ``kek_env`` the KEK is read from that environment variable instead of a key
        file in the workspace. With ``catalog`` (``postgresql+psycopg://USER@HOST/DB``, an
        empty database, no password in the URL) the catalog lives on that server instead
        of the embedded SQLite file. With ``store`` (``s3://BUCKET/PREFIX``, and
        ``store_endpoint`` for a store other than AWS's) the sealed blobs live in that
        bucket; credentials come from the AWS environment or ``~/.aws``, never the workspace.
        """
        with bootstrap.new_home(
            path, kek_env=kek_env, at=at, catalog=catalog, store=store, store_endpoint=store_endpoint
        ) as (config, kek, created):
            ws = cls(config, kek, actor=actor)
            try:
                bootstrap.seed_catalog(
                    ws.engine, ws.sessions, kek, kek_source=config.kek_source, actor=ws.actor, at=created
                )
                ws._load_vault()
                (config.home / "signing.pub").write_bytes(ws.public_key_pem())
            except BaseException:
                ws.close()  # a refused database (not empty): its connection goes now
                raise
        return ws

    @classmethod
    def open(
        cls, path: str | Path | None = None, *, actor: str | None = None, check_ledger: bool = True
    ) -> Workspace:
        """Open the workspace at ``path``, ``$DISGORGE_WORKSPACE`` or the cwd upwards.

        A catalog restored from a backup older than an erasure the ledger recorded is
        refused (:class:`~disgorge.errors.RestoreNeeded`) until :meth:`restore_check` has
        replayed it; ``check_ledger=False`` opens it for that."""
        config = Config.load(find_workspace(path))
        make_private(config.home, config)
        ws = cls(config, bootstrap.kek_of(config), actor=actor)
        try:
            bootstrap.check_schema(ws.engine)
            ws._load_vault()
            from .vision.service import retire_clear_face_index

            retire_clear_face_index(ws.ctx)
            if check_ledger:
                _refuse_restored(ws.ctx)
        except BaseException:
            ws.close()
            raise
        return ws

    def migrate(self) -> str | None:
        """Upgrade the catalog schema to the latest revision; returns it."""
        upgrade(self.engine)
        return current_revision(self.engine)

    def _load_vault(self) -> None:
        self._ctx = bootstrap.unlock(
            self.config, self.engine, self.sessions, self.reader, self.kek, self.store, actor=self.actor
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
        return self.ctx.vault

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
        return self.ctx.workspace_id

    def public_key(self) -> Ed25519PublicKey:
        return self.ctx.public_key()

    def public_key_pem(self) -> bytes:
        return self.ctx.public_key_pem()

    def sign(self, data: bytes) -> bytes:
        """Sign with the workspace's Ed25519 key (certificates, manifests)."""
        return self.ctx.sign(data)

    # -- sources and policies ----------------------------------------------------------
    add_source = _service(source_service.add_source)
    add_policy = _service(source_service.add_policy)
    sources = _service(source_service.list_sources)
    source = _service(source_service.source_view)

    # -- consent -------------------------------------------------------------------------
    import_consent = _service(consent_service.import_consent)

    # -- ingest --------------------------------------------------------------------------
    ingest = _service(ingest_service.ingest)

    # -- subjects and assets ---------------------------------------------------------------
    def subject_ref(self, subject_id: str) -> str:
        """The pseudonymous ref for an external id (or a ref, returned as is)."""
        return ref_of(self.vault, subject_id)

    subject = _service(consent_service.subject_view)
    asset = _service(assets.asset_view)
    read_asset = _service(assets.read_asset)
    read_asset_audited = _service(assets.read_asset_audited)
    destroy_subject_key = _service(subjects.destroy_subject_key)
    export_subject = _service(dsr_export.export_subject)

    # -- vision ----------------------------------------------------------------------------
    @property
    def face_index_path(self) -> Path:
        """The sealed face index (``index/faces.sealed``, see :mod:`disgorge.vision.index`)."""
        return self.ctx.face_index_path

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
        cluster: str | None = None,
    ) -> AnalyzeReport:
        """Detect faces, embed those whose subjects allow it, PDQ-hash every photo
        (:func:`disgorge.vision.service.analyze`); ``cluster``: on a Dask cluster."""
        from .vision import service

        return service.analyze(
            self.ctx,
            shas=shas,
            asset_ids=asset_ids,
            force=force,
            workers=workers,
            cnn=cnn,
            embedder=embedder,
            at=at,
            progress=progress,
            cluster=cluster,
        )

    def find(
        self, image: str | Path | bytes, *, by: str = "copy", max_distance: float | None = None
    ) -> FindResult:
        """Stored copies of ``image``, or photos of the same person (:func:`disgorge.vision.search.find`)."""
        from .vision import search

        return search.find(self.ctx, image, by=by, max_distance=max_distance)

    # -- models (SISA training, unlearning, registry) ----------------------------------------
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
        cluster: str | None = None,
    ) -> TrainedModel:
        """Train a SISA face model through the gate (:func:`disgorge.training.lifecycle.train_model`)."""
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
            cluster=cluster,
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
        cluster: str | None = None,
    ) -> Unlearned:
        """Make a model forget photos, exactly (:func:`disgorge.training.lifecycle.unlearn_model`)."""
        from .training import lifecycle

        return lifecycle.unlearn_model(
            self.ctx,
            name,
            subjects=subjects,
            shas=shas,
            asset_ids=asset_ids,
            reason=reason,
            at=at,
            cluster=cluster,
        )

    def model_audit(self, ref: str, *, forgotten: list[str]) -> ModelAudit:
        """Has this model forgotten these subjects? (:func:`disgorge.training.lifecycle.model_audit`)"""
        from .training import lifecycle

        return lifecycle.model_audit(self.ctx, ref, forgotten=forgotten)

    # -- consent gate, datasets, runs, lineage -------------------------------------------
    consent_check = _service(consent_service.consent_check)
    build_dataset = _service(dataset_service.build)
    dataset = _service(dataset_service.show)
    dataset_diff = _service(dataset_service.diff)
    export_croissant = _service(write_croissant)
    run = _service(runs.running)
    record_run = _service(runs.record_run)
    lineage = _service(runs.lineage)
    violations = _service(audit_service.violations)

    # -- erasure -----------------------------------------------------------------------------
    erasure_plan = _service(erasure_service.plan)
    erase = _service(erasure_service.erase)
    erasure_approve = _service(erasure_service.approve)
    erasure_resume = _service(erasure_service.resume)
    erasure_ack = _service(erasure_service.ack)
    erasure_close_recipient = _service(erasure_service.close_recipient)
    erasure_request_document = _service(erasure_service.request_document)
    erasure_cancel = _service(erasure_service.cancel)
    erasure_deny = _service(erasure_service.deny)
    erasures = _service(erasure_service.list_requests)
    erasure = _service(erasure_service.show)
    interrupted_erasures = _service(erasure_service.interrupted)
    erasure_certificate = _service(erasure_service.certificate)
    verify_erasure = _service(erasure_service.reverify)

    # -- data-subject requests as cases ------------------------------------------------------
    open_case = _service(dsr_cases.open_case)
    extend_case = _service(dsr_cases.extend_case)
    verify_case_identity = _service(dsr_cases.verify_identity)
    close_case = _service(dsr_cases.close_case)
    case = _service(dsr_cases.show_case)
    cases = _service(dsr_cases.list_cases)
    erase_case = _service(dsr_cases.erase_case)
    export_case = _service(dsr_cases.export_case)

    # -- legal holds -------------------------------------------------------------------------
    add_hold = _service(dsr_holds.add_hold)
    holds = _service(dsr_holds.list_holds)
    release_hold = _service(dsr_holds.release_hold)
    finish_released = _service(dsr_holds.finish_released)

    # -- retention schedules -----------------------------------------------------------------
    set_retention = _service(dsr_retention.set_retention)
    clear_retention = _service(dsr_retention.clear_retention)
    retention_rules = _service(dsr_retention.list_retention)
    retention_due = _service(dsr_retention.retention_due)
    run_retention = _service(dsr_retention.run_retention)
    restore_check = _service(dsr_restore.restore_check)

    # -- sharing -----------------------------------------------------------------------------
    add_peer = _service(peer_service.add_peer)
    peers = _service(peer_service.list_peers)
    share = _service(share_service.share)
    receive_legacy = _service(receive_service.receive_legacy)
    receive_bundle = _service(receive_service.receive_bundle)
    transfers = _service(transfer_service.list_transfers)
    receive_erasure_request = _service(inbox_service.receive_file)

    # -- audit ---------------------------------------------------------------------------
    verify_audit = _service(audit_service.verify_chain)
    audit_checkpoint = _service(audit_service.checkpoint)
    audit_prove = _service(audit_service.prove)
    audit_events = _service(audit_service.events)

    # -- maintenance ----------------------------------------------------------------------
    gc = _service(maintenance.gc)
    status = _service(maintenance.status)

    # -- principals, tokens, settings, jobs (the API) ------------------------------------
    add_principal = _service(principal_service.add_principal)
    principals = _service(principal_service.list_principals)
    disable_principal = _service(principal_service.disable_principal)
    create_token = _service(principal_service.create_token)
    tokens = _service(principal_service.list_tokens)
    revoke_token = _service(principal_service.revoke_token)
    set_password = _service(password_service.set_password)
    check_password = _service(password_service.check_password)
    settings = _service(settings_service.get_settings)
    set_setting = _service(settings_service.set_setting)
    jobs = _service(job_service.list_jobs)
    job = _service(job_service.show)


def _refuse_restored(ctx: Context) -> None:
    from .erasure.ledger import missing

    gone = missing(ctx)
    if gone:
        raise RestoreNeeded(
            f"the catalog lacks {len(gone)} erasure(s) the erasure ledger recorded (the latest "
            f"{gone[-1]['request_id']}, {gone[-1]['recorded_at']}): it was restored from an older backup. "
            "Run `disgorge restore-check` before anything else: it erases again what the backup brought back"
        )


def _name_the_delegates() -> None:
    """``help(Workspace)`` shows ``Workspace.sources(self)``, not the service it calls
    (``list_sources(ctx)``): the name, and ``self`` where the service takes the context."""
    for name, attr in vars(Workspace).items():
        wrapped = getattr(attr, "__wrapped__", None)
        if callable(attr) and callable(wrapped) and wrapped.__module__ != __name__:  # a service
            attr.__name__, attr.__qualname__ = name, f"Workspace.{name}"
            signature = inspect.signature(wrapped)
            rest = list(signature.parameters.values())[1:]
            this = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
            attr.__signature__ = signature.replace(parameters=[this, *rest])


_name_the_delegates()
