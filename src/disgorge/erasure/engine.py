"""The erasure executor: a journaled, idempotent, resumable state machine.

States: planned -> approved -> executing -> verifying -> completed (or failed, cancelled).
Cancelling is possible until execution starts. Execution runs the journal's steps in
order; each step is idempotent and is marked done in its own transaction, so a crash
(SIGKILL) at any point — between steps or inside one — resumes to the same end state with
``disgorge erasure resume`` (the CLI also resumes an interrupted erasure before any other
command). A request is claimed while it runs, so two processes never run it at once.

Steps:

1. ``sample``: before destroying anything, take what the verifier will look for (byte
   windows of each photo, its hashes, embeddings, the data keys) — sealed with a
   one-off key, dropped after the scan;
2. ``unlearn_models``: SISA models forget the photos (new versions, old ones retired);
3. ``retire_models``: other models, and everything derived from them, are retired;
4. ``derive_datasets``: dataset versions holding the photos are marked erased, and the
   latest version of each dataset gets a new MAJOR version without them;
5. ``remove_index``: embeddings leave the face index, whose file is rewritten;
6. ``delete_derivatives``: hashes, faces, embeddings and crop blobs;
7. ``delete_blobs``: the photos' encrypted blobs;
8. ``tombstone_assets``: catalog rows keep their place in the lineage but lose every
   personal field; a keyed fingerprint of each photo blocks its re-ingestion;
9. ``shred_keys``: the subjects' data keys are destroyed, their consent records deleted;
10. ``purge_database``: WAL checkpoint, and VACUUM for large erasures, so no old page holds
    any of it (a small one VACUUMs only if the verifier's scan finds a stale copy);
11. ``verify``: the forensic scan and the lineage and look-alike checks;
12. ``certificate``: the signed certificate.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from .. import audit
from .._merkle import merkle_root
from .._time import iso, utcnow
from ..catalog import in_chunks, purge_free_space
from ..catalog.lineage import NodeRef, downstream
from ..catalog.models import (
    Artifact,
    Asset,
    AssetDerivative,
    ConsentRecord,
    DatasetMember,
    ErasedFingerprint,
    ErasureRequest,
    ErasureStep,
    IncomingRequest,
    Peer,
    Run,
    RunInput,
    Source,
    Subject,
    Transfer,
)
from ..errors import ErasureBlocked, IntegrityError, InvalidInput, NotFound
from ..vault.blobstore import wipe_file
from ..vault.sealed_file import read_sealed_file, write_sealed_file
from ..vision.phash import phash_context
from .certificate import SCHEMA, canonical, check_reason, leaf_from_sha256, section_digests
from .forensics import Hit, TreeStats, scan_tree
from .plan import make_plan, summarize

__all__ = ["STEPS", "ErasureEngine"]

STEPS = (
    "sample",
    "notify_recipients",
    "unlearn_models",
    "retire_models",
    "derive_datasets",
    "remove_index",
    "delete_derivatives",
    "delete_blobs",
    "tombstone_assets",
    "shred_keys",
    "purge_database",
    "verify",
    "await_recipients",
    "certificate",
)
_CLAIM_TTL = timedelta(seconds=120)
_SAMPLES_AAD = b"disgorge:erasure-samples"
_WINDOW = 48
#: erasures of at least this many photos VACUUM the catalog at once (their many deletes make
#: stale cells likely, and a second scan with that many samples costs more than the VACUUM)
_VACUUM_AT = 1000


def samples_folder(home: Path) -> Path:
    """Where erasures keep their sealed samples (``<request id>.samples``) until verified."""
    return home / "erasure"


def _windows(data: bytes) -> list[bytes]:
    """Byte windows from the middle of the file (headers are shared by many photos)."""
    if len(data) < 4 * _WINDOW:
        return [data] if len(data) >= 16 else []
    return [data[int(len(data) * f) : int(len(data) * f) + _WINDOW] for f in (0.4, 0.6, 0.8)]


_PLAN_KEYS = (
    "scope",
    "key",
    "assets",
    "counts",
    "subjects_to_shred",
    "datasets",
    "models_unlearn",
    "models_retire",
    "artifacts_retire",
)


def _damaged(request_id: str, detail: str) -> IntegrityError:
    return IntegrityError(
        f"the journal of erasure {request_id} is damaged: {detail}. Nothing more is done for it; "
        "restore the catalog from a backup (or repair the row) and run `disgorge erasure resume` again"
    )


def _claimant_alive(claimed_by: str, claimed_at: datetime | None, now: datetime) -> bool:
    """Is the process that claimed a request still running it? On this host we ask the
    kernel (a SIGKILLed runner leaves its claim behind); elsewhere the claim expires."""
    pid, _, rest = claimed_by.partition("@")
    host = rest.rpartition(":")[0]
    if pid.isdigit() and host == socket.gethostname()[:30]:
        if int(pid) == os.getpid():  # this process, interrupted earlier (e.g. KeyboardInterrupt)
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return claimed_at is not None and now - claimed_at < _CLAIM_TTL


@dataclass
class _Taken:
    """What the ``sample`` step takes before anything is destroyed (kept only sealed)."""

    salt: str
    #: label -> hex of the bytes the forensic scan must not find afterwards
    needles: dict[str, str]
    phashes: list[str] = field(default_factory=list)
    embeddings: list[str] = field(default_factory=list)
    #: one certificate leaf per photo
    leaves: list[str] = field(default_factory=list)
    unreadable: int = 0


class AwaitingRecipients(Exception):
    """Raised by the ``await_recipients`` step when some recipient has not answered yet:
    the request rests in ``awaiting_recipients`` (not failed) until resumed or acked."""


class ErasureEngine:
    """Runs erasures for a workspace (``ws`` is a :class:`disgorge.Workspace`).

    ``wait`` is how long the ``await_recipients`` step keeps delivering to and polling
    recipients before the request rests; ``deadline_days`` is the deadline given to them.
    """

    def __init__(self, ws: Any, *, wait: float = 30.0, deadline_days: float = 30.0) -> None:
        self.ws = ws
        self.wait = wait
        self.deadline_days = deadline_days
        # who runs a request: pid and host, so that a claim left by a killed process on
        # this machine is taken over at once (other hosts' claims expire after _CLAIM_TTL)
        self.claim_id = f"{os.getpid()}@{socket.gethostname()[:30]}:{uuid.uuid4().hex[:16]}"

    # -- requests ----------------------------------------------------------------------
    def _resolve_scope(self, session: Session, kind: str, ident: str) -> tuple[str, str]:
        """(catalog key, pseudonymous scope ref) for what the user named."""
        from ..subjects import find_subject
        from ..training.registry import find_model

        if kind == "subject":
            subject = find_subject(session, self.ws.vault, ident)
            return str(subject.id), subject.ref
        if kind == "asset":
            asset = self.ws._asset(session, ident)
            return asset.id, self.ws.vault.photo_fingerprint(asset.sha256)
        if kind == "source":
            src = session.scalar(select(Source).where(Source.name == ident))
            if src is None:
                raise NotFound(f"no source named {ident!r}")
            return str(src.id), f"source:{src.name}"
        if kind == "model":
            art = find_model(session, ident)
            return art.id, f"model:{art.name}@{art.version}"
        if kind == "transfer":
            ids = session.scalars(
                select(Transfer.id).where(Transfer.direction == "out", Transfer.id.startswith(ident)).limit(2)
            ).all()
            if len(ids) != 1:
                raise (
                    NotFound(f"no transfer {ident!r} from this workspace")
                    if not ids
                    else InvalidInput(f"transfer id prefix {ident!r} is ambiguous")
                )
            return ids[0], f"transfer:{ids[0]}"
        if kind == "request":
            incoming = session.get(IncomingRequest, ident)
            if incoming is None:
                raise NotFound(f"no erasure request {ident!r} was received")
            sender = session.get(Peer, incoming.peer_id)
            return ident, f"request:{sender.name}:{ident[:16]}"
        raise InvalidInput(f"scope {kind!r}: expected subject, asset, source, model or transfer")

    def plan(self, kind: str, ident: str) -> dict[str, Any]:
        with self.ws.reader() as session:
            key, ref = self._resolve_scope(session, kind, ident)
            return make_plan(session, kind, key, ref)

    def create(self, kind: str, ident: str, *, reason: str, at: datetime, needles: dict[str, bytes]) -> str:
        """Plan and record a request (state ``planned``). ``needles`` are extra byte strings the
        verifier must not find afterwards (e.g. the external id the request named); they are
        kept only sealed, and only until the scan."""
        check_reason(reason)
        with self.ws.sessions.begin() as session:
            key, ref = self._resolve_scope(session, kind, ident)
            plan = make_plan(session, kind, key, ref)
            plan["key"] = key
            request = ErasureRequest(
                id=uuid.uuid4().hex,
                scope_kind=kind,
                scope_ref=ref,
                reason=reason,
                state="planned",
                created_at=at,
                updated_at=at,
                plan=plan,
                actor=self.ws.actor,
            )
            self._write_samples(request.id, {"needles": {k: v.hex() for k, v in needles.items()}})
            session.add(request)
            session.flush()
            audit.append(
                session,
                "erasure.planned",
                {"request": request.id, "scope": {"kind": kind, "ref": ref}, "counts": plan["counts"]},
                actor=self.ws.actor,
                at=at,
            )
            return request.id

    def get(self, session: Session, request_id: str) -> ErasureRequest:
        ids = session.scalars(
            select(ErasureRequest.id).where(ErasureRequest.id.startswith(request_id)).limit(2)
        ).all()
        if not ids:
            raise NotFound(f"no erasure request {request_id}")
        if len(ids) > 1:
            raise InvalidInput(f"erasure id prefix {request_id} is ambiguous")
        try:
            req = session.get(ErasureRequest, ids[0])
        except ValueError as exc:  # a JSON column that does not decode
            raise _damaged(ids[0], f"a column is not valid JSON ({exc})") from None
        assert req is not None
        missing = [k for k in _PLAN_KEYS if not isinstance(req.plan, dict) or k not in req.plan]
        if missing:
            raise _damaged(req.id, f"its plan lacks {', '.join(missing)}")
        return req

    def _check_steps(self, session: Session, req: ErasureRequest) -> None:
        """The journal must hold exactly the steps of STEPS, in order: a missing or unknown
        step is never skipped or guessed at."""
        try:
            rows = session.execute(
                select(ErasureStep.seq, ErasureStep.name, ErasureStep.summary)
                .where(ErasureStep.request_id == req.id)
                .order_by(ErasureStep.seq)
            ).all()
        except ValueError as exc:
            raise _damaged(req.id, f"a step summary is not valid JSON ({exc})") from None
        found = [(seq, name) for seq, name, _ in rows]
        if found != list(enumerate(STEPS)):
            missing = [name for name in STEPS if name not in {n for _, n in found}]
            unknown = [name for _, name in found if name not in STEPS]
            detail = "; ".join(
                part
                for part in (
                    f"missing step(s) {', '.join(missing)}" if missing else "",
                    f"unknown step(s) {', '.join(unknown)}" if unknown else "",
                )
                if part
            )
            raise _damaged(req.id, detail or "its steps are out of order")

    def approve(self, request_id: str, *, at: datetime) -> None:
        with self.ws.sessions.begin() as session:
            req = self.get(session, request_id)
            if req.state != "planned":
                raise ErasureBlocked(
                    f"erasure {req.id} is {req.state}; only a planned erasure can be approved"
                )
            # the scope may have grown since planning (photos ingested meanwhile): plan again
            plan = make_plan_for_approval(session, req)
            req.plan = plan
            req.state = "approved"
            req.updated_at = at
            for seq, name in enumerate(STEPS):
                session.add(ErasureStep(request_id=req.id, seq=seq, name=name))
            if req.scope_kind == "source":
                session.execute(update(Source).where(Source.id == int(plan["key"])).values(state="erasing"))
            audit.append(session, "erasure.approved", {"request": req.id}, actor=self.ws.actor, at=at)

    def cancel(self, request_id: str, *, reason: str, at: datetime) -> None:
        with self.ws.sessions.begin() as session:
            req = self.get(session, request_id)
            if req.state not in ("planned", "approved"):
                raise ErasureBlocked(f"erasure {req.id} is {req.state}: it can no longer be cancelled")
            if req.scope_kind == "source" and req.state == "approved":
                session.execute(
                    update(Source).where(Source.id == int(req.plan["key"])).values(state="active")
                )
            req.state = "cancelled"
            req.updated_at = at
            self._drop_samples(req.id)
            audit.append(
                session,
                "erasure.cancelled",
                {"request": req.id, "reason": reason},
                actor=self.ws.actor,
                at=at,
            )

    # -- running -------------------------------------------------------------------------
    def _claim(self, request_id: str) -> ErasureRequest:
        now = utcnow()
        with self.ws.sessions.begin() as session:
            req = self.get(session, request_id)
            if req.state in ("completed", "cancelled"):
                return req
            if req.state not in ("approved", "executing", "verifying", "failed", "awaiting_recipients"):
                raise ErasureBlocked(f"erasure {req.id} is {req.state}; approve it first")
            self._check_steps(session, req)
            if req.claimed_by not in (None, self.claim_id) and _claimant_alive(
                req.claimed_by, req.claimed_at, now
            ):
                raise ErasureBlocked(f"erasure {req.id} is being run by another process right now")
            req.claimed_by, req.claimed_at = self.claim_id, now
            if req.state in ("approved", "failed"):
                req.state = "executing"
                req.error = None
            elif req.state == "awaiting_recipients":
                req.state = "verifying"
            return req

    def run(self, request_id: str) -> dict[str, Any]:
        req = self._claim(request_id)
        if req.state in ("completed", "cancelled"):
            return self.view(req.id)
        rid = req.id
        while True:
            with self.ws.reader() as session:
                step = session.scalar(
                    select(ErasureStep)
                    .where(ErasureStep.request_id == rid, ErasureStep.done_at.is_(None))
                    .order_by(ErasureStep.seq)
                    .limit(1)
                )
                req = self.get(session, rid)
            if step is None:
                break
            try:
                summary = getattr(self, f"_step_{step.name}")(req)
            except AwaitingRecipients:
                with self.ws.sessions.begin() as session:
                    r = self.get(session, rid)
                    r.state = "awaiting_recipients"
                    r.claimed_by = None
                    r.updated_at = utcnow()
                return self.view(rid)
            except BaseException as exc:
                if isinstance(exc, Exception):
                    with self.ws.sessions.begin() as session:
                        r = self.get(session, rid)
                        r.state = "failed"
                        r.error = f"step {step.name}: {exc}"
                        r.claimed_by = None
                        audit.append(
                            session,
                            "erasure.failed",
                            {"request": rid, "step": step.name},
                            actor=self.ws.actor,
                        )
                raise
            self._done(rid, step.seq, summary)
        with self.ws.sessions.begin() as session:
            r = self.get(session, rid)
            r.state = "completed"
            r.claimed_by = None
            r.updated_at = utcnow()
            audit.append(session, "erasure.completed", {"request": rid}, actor=self.ws.actor)
        return self.view(rid)

    def _done(self, rid: str, seq: int, summary: dict[str, Any], session: Session | None = None) -> None:
        def mark(s: Session) -> None:
            s.execute(
                update(ErasureStep)
                .where(ErasureStep.request_id == rid, ErasureStep.seq == seq)
                .values(done_at=utcnow(), summary=summary)
            )
            s.execute(update(ErasureRequest).where(ErasureRequest.id == rid).values(claimed_at=utcnow()))

        if session is not None:
            mark(session)
        else:
            with self.ws.sessions.begin() as s:
                mark(s)

    # The verifier's samples (byte windows of the photos, their hashes and embeddings, the
    # keys to destroy) live in a sealed file of their own, not in the catalog: dropping
    # them must not need another rewrite (VACUUM) of a catalog of a million photos.
    def _samples_path(self, request_id: str) -> Path:
        return samples_folder(self.ws.config.home) / f"{request_id}.samples"

    def _write_samples(self, request_id: str, samples: dict[str, Any]) -> None:
        """Seal under a fresh key (wrapped by the KEK, stored alongside); replace atomically."""
        write_sealed_file(
            self._samples_path(request_id), json.dumps(samples).encode(), self.ws.kek, _SAMPLES_AAD
        )

    def _samples(self, req: ErasureRequest) -> dict[str, Any]:
        path = self._samples_path(req.id)
        if not path.exists():
            return {"needles": {}}
        return json.loads(read_sealed_file(path, self.ws.kek, _SAMPLES_AAD, what="erasure samples"))

    def _drop_samples(self, request_id: str) -> None:
        """Overwrite, then unlink (best effort below the file system: see docs/certificate.md)."""
        wipe_file(self._samples_path(request_id), unlink=True)

    # -- the steps ---------------------------------------------------------------------
    def _step_sample(self, req: ErasureRequest) -> dict[str, Any]:
        plan = req.plan
        before = self._samples(req)
        taken = _Taken(salt=before.get("salt") or secrets.token_hex(16), needles=before.get("needles", {}))
        shred = set(plan["subjects_to_shred"])
        ids = plan["assets"]
        with self.ws.reader() as session:
            # in chunks, with their owners and derived values read at once (a source may
            # hold 100,000 photos: one query per photo would cost more than the decryption)
            for chunk in in_chunks(ids):
                assets = session.scalars(select(Asset).where(Asset.id.in_(chunk)).order_by(Asset.id)).all()
                owners = {
                    s.id: s
                    for s in session.scalars(
                        select(Subject).where(Subject.id.in_({a.owner_id for a in assets}))
                    )
                }
                derived: dict[str, list[Any]] = {}
                for d in session.execute(
                    select(
                        AssetDerivative.asset_id,
                        AssetDerivative.id,
                        AssetDerivative.kind,
                        AssetDerivative.face_index,
                        AssetDerivative.value_enc,
                    )
                    .where(AssetDerivative.asset_id.in_(chunk))
                    .order_by(AssetDerivative.id)
                ):
                    derived.setdefault(d.asset_id, []).append(d)
                for asset in assets:
                    owner = owners[asset.owner_id]
                    self._sample_photo(taken, asset, owner, derived.get(asset.id, []), owner.id not in shred)
            for subject in session.scalars(select(Subject).where(Subject.id.in_(plan["subjects_to_shred"]))):
                if subject.dek_wrapped:
                    taken.needles[f"wrapped-key:{subject.ref}"] = subject.dek_wrapped.hex()
        self._write_samples(req.id, asdict(taken))
        return {"photos": len(ids), "needles": len(taken.needles), "unreadable": taken.unreadable}

    def _sample_photo(
        self, taken: _Taken, asset: Asset, owner: Subject, derived: list[Any], keeps_key: bool
    ) -> None:
        """Add one photo's Merkle leaf and the samples the verifier will look for."""
        vault = self.ws.vault
        n = len(taken.leaves)
        taken.leaves.append(leaf_from_sha256(taken.salt, asset.sha256))
        taken.needles[f"sha256-hex:{n}"] = asset.sha256.encode().hex()
        taken.needles[f"sha256:{n}"] = asset.sha256
        if keeps_key:
            # sealed under a key that lives on: its ciphertext must go too (the purge skips
            # VACUUM for small erasures; the scan is what decides)
            # (32 bytes: nonce and ciphertext; as long as a sha256, so the scan needs no extra pass)
            sealed = [asset.origin_enc, *(d.value_enc for d in derived)]
            for k, value in enumerate(v for v in sealed if v and len(v) >= 33):
                taken.needles[f"sealed:{n}:{k}"] = value[1:33].hex()
        if owner.dek_wrapped is None or asset.blob_key is None:
            taken.unreadable += 1
            return
        try:
            data = vault.get_blob(owner, asset.id, asset.blob_key)
        except Exception:  # noqa: BLE001 - a missing blob is simply nothing to sample
            taken.unreadable += 1
            return
        for w, window in enumerate(_windows(data)):
            taken.needles[f"photo:{n}:{w}"] = window.hex()
        if asset.origin_enc:
            origin = vault.open(owner, asset.origin_enc, f"origin:{asset.id}")
            if len(origin) >= 12:
                taken.needles[f"origin:{n}"] = origin.hex()
        for d in derived:
            if d.kind == "phash" and d.value_enc:
                value = vault.open(owner, d.value_enc, phash_context(asset.id, d.face_index))
                taken.phashes.append(value.hex())
                taken.needles[f"phash:{n}:{d.face_index}"] = value.hex()
            elif d.kind == "embedding" and d.value_enc:
                value = vault.open(owner, d.value_enc, f"embedding:{asset.id}:{d.id}")
                taken.embeddings.append(value.hex())
                taken.needles[f"embedding:{n}:{d.face_index}"] = value[:64].hex()

    def _step_notify_recipients(self, req: ErasureRequest) -> dict[str, Any]:
        """Sign one request per recipient while the photos can still be named (before
        their sha256 leaves the catalog), and try to deliver each once."""
        from ..sharing.outbox import await_recipients, create_notices, default_deadline

        count = create_notices(self.ws, req, deadline=default_deadline(self.deadline_days))
        if count:
            await_recipients(self.ws, req.id, wait=0)
        return {"recipients": count}

    def _step_await_recipients(self, req: ErasureRequest) -> dict[str, Any]:
        from ..sharing.outbox import DONE_STATES, await_recipients

        states = await_recipients(self.ws, req.id, wait=self.wait) if req.plan.get("recipients") else {}
        waiting = sorted(name for name, state in states.items() if state not in DONE_STATES)
        if waiting:
            raise AwaitingRecipients(", ".join(f"{n}: {states[n]}" for n in waiting))
        return {"recipients": dict(sorted(states.items()))}

    def _step_unlearn_models(self, req: ErasureRequest) -> dict[str, Any]:
        results = []
        for m in req.plan["models_unlearn"]:
            with self.ws.reader() as session:
                from ..training.registry import find_model

                earlier = self._unlearned_before(session, req, m)
                if earlier is not None:  # done by a run of this step that was interrupted
                    results.append(earlier)
                    continue
                try:
                    current = find_model(session, m["name"])
                except NotFound:
                    continue
                if current.state != "active":
                    continue
            result = self.ws.unlearn_model(
                m["name"], asset_ids=req.plan["assets"], reason=f"erasure {req.id}"
            )
            results.append(
                {
                    "from": result.get("from"),
                    "model": result["model"],
                    "forgotten": result["forgotten"],
                    "forgetting_audit": result.get("forgetting_audit"),
                }
            )
        return {"unlearned": results}

    def _unlearned_before(
        self, session: Session, req: ErasureRequest, m: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The summary of a model version this erasure already made from ``m``, if any."""
        rows = session.execute(
            select(Artifact, Run)
            .join(Run, Run.id == Artifact.run_id)
            .where(Artifact.kind == "model", Artifact.name == m["name"])
        ).all()
        for art, run in rows:
            params = run.parameters or {}
            if params.get("reason") == f"erasure {req.id}":
                return {
                    "from": f"model:{m['name']}@{params.get('from')}",
                    "model": f"model:{art.name}@{art.version}",
                    "forgotten": params.get("forgotten"),
                    "forgetting_audit": (art.extra or {}).get("forgetting_audit"),
                }
        return None

    def _step_retire_models(self, req: ErasureRequest) -> dict[str, Any]:
        retired: list[str] = []
        at = utcnow()
        with self.ws.sessions.begin() as session:
            from ..training.registry import retire_cascade

            for m in req.plan["models_retire"]:
                art = session.get(Artifact, m["id"])
                if art is not None and art.state == "active":
                    retired += retire_cascade(
                        session, art, reason=f"erasure {req.id}", actor=self.ws.actor, at=at
                    )
            for a in req.plan["artifacts_retire"]:
                art = session.get(Artifact, a["id"])
                if art is not None and art.state == "active":
                    art.state = "retired"
                    retired.append(a["artifact"])
        return {"retired": sorted(set(retired))}

    def _step_derive_datasets(self, req: ErasureRequest) -> dict[str, Any]:
        from ..datasets import derive_without
        from ..datasets.build import find_dataset

        assets = set(req.plan["assets"])
        created: list[str] = []
        at = utcnow()
        with self.ws.sessions.begin() as session:
            names = set()
            for d in req.plan["datasets"]:
                art = session.get(Artifact, d["id"])
                if art is not None and art.state == "active":
                    art.state = "erased"
                names.add(d["dataset"].partition("@")[0])
            for name in sorted(names):
                latest = find_dataset(session, name)
                held = self._held(session, latest.artifact_id, req.plan["assets"])
                if not held:
                    continue
                if held >= latest.members:
                    session.get(Artifact, latest.artifact_id).state = "erased"
                    continue
                new = derive_without(
                    session,
                    f"{name}@{latest.version}",
                    assets,
                    at=at,
                    actor=self.ws.actor,
                    reason=f"erasure {req.id}",
                )
                session.get(Artifact, latest.artifact_id).state = "erased"
                created.append(f"{new.name}@{new.version}")
        return {"new_versions": created}

    @staticmethod
    def _held(session: Session, dataset_id: str, asset_ids: list[str]) -> int:
        """How many of ``asset_ids`` the dataset version holds (by index, not by reading it)."""
        return sum(
            session.scalar(
                select(func.count()).where(
                    DatasetMember.dataset_id == dataset_id, DatasetMember.asset_id.in_(part)
                )
            )
            or 0
            for part in in_chunks(asset_ids)
        )

    def _step_remove_index(self, req: ErasureRequest) -> dict[str, Any]:
        # The PDQ cache holds the photos' hashes decrypted (sealed under the KEK, which lives
        # on): their rows stop being active first, so that no copy search running meanwhile
        # (it reads the catalog under the cache's lock) writes them back before
        # delete_derivatives removes them; then the cache is rewritten without them. The
        # embedding rows likewise, so that no index reconciliation (it reads active rows under
        # the face index's lock) puts their vectors back into the sealed face index.
        assets = req.plan["assets"]
        with self.ws.sessions.begin() as session:
            for part in in_chunks(assets):
                session.execute(
                    update(AssetDerivative)
                    .where(
                        AssetDerivative.asset_id.in_(part),
                        AssetDerivative.kind.in_(("phash", "embedding")),
                    )
                    .values(state="erased")
                )
        self.ws.hash_cache.drop_assets(assets)
        path = self.ws.face_index_path
        if not path.exists():
            return {"removed": 0}
        from ..vision.analyze import embedding_ids
        from ..vision.index import FaceIndex

        with self.ws.reader() as session:
            ids = embedding_ids(session, req.plan["assets"])
        index = FaceIndex(path, self.ws.kek)
        index.remove(ids)
        index.save()
        # counted from the result, not from this call: a re-run after a crash reports the same
        left = index.ids()
        return {"removed": sum(1 for i in ids if i not in left), "index_entries_left": len(index)}

    def _kept_keys(self, session: Session, req: ErasureRequest) -> set[str]:
        """Ids of the erased photos whose owner's data key is not destroyed by this erasure
        (photos of someone else that show the subject, a source's photos of people who
        are elsewhere too): their blobs are overwritten before they are unlinked."""
        shred = set(req.plan["subjects_to_shred"])
        return {
            asset_id
            for asset_id, owner in session.execute(
                select(Asset.id, Asset.owner_id).where(Asset.id.in_(req.plan["assets"]))
            )
            if owner not in shred
        }

    def _step_delete_derivatives(self, req: ErasureRequest) -> dict[str, Any]:
        with self.ws.sessions.begin() as session:
            kept = self._kept_keys(session, req)
            rows = session.execute(
                select(AssetDerivative.kind, AssetDerivative.blob_key, AssetDerivative.asset_id).where(
                    AssetDerivative.asset_id.in_(req.plan["assets"])
                )
            ).all()
            for _kind, blob, asset_id in rows:
                if blob:
                    self.ws.store.delete(blob, overwrite=asset_id in kept)
            session.execute(delete(AssetDerivative).where(AssetDerivative.asset_id.in_(req.plan["assets"])))
            counts: dict[str, int] = {}
            for kind, _, _ in rows:
                counts[kind] = counts.get(kind, 0) + 1
            return {"deleted": counts}

    def _step_delete_blobs(self, req: ErasureRequest) -> dict[str, Any]:
        with self.ws.reader() as session:
            kept = self._kept_keys(session, req)
            keys = [
                (k, asset_id in kept)
                for asset_id, k in session.execute(
                    select(Asset.id, Asset.blob_key).where(Asset.id.in_(req.plan["assets"]))
                )
                if k
            ]
        for key, overwrite in keys:
            self.ws.store.delete(key, overwrite=overwrite)
        return {"blobs_deleted": len(keys), "overwritten": sum(1 for _, o in keys if o)}

    def _step_tombstone_assets(self, req: ErasureRequest) -> dict[str, Any]:
        at = utcnow()
        ids = req.plan["assets"]
        with self.ws.sessions.begin() as session:
            # in bulk (a source may hold 100,000 photos): one UPDATE per row by primary key
            found = 0
            fingerprints: dict[str, str] = {}
            for part in in_chunks(ids):
                for asset_id, sha, state in session.execute(
                    select(Asset.id, Asset.sha256, Asset.state).where(Asset.id.in_(part))
                ):
                    found += 1
                    if state != "erased":
                        fingerprints[asset_id] = self.ws.vault.photo_fingerprint(sha)
            known: set[str] = set()
            values = sorted(set(fingerprints.values()))
            for part in in_chunks(values):
                known.update(
                    session.scalars(
                        select(ErasedFingerprint.fingerprint).where(ErasedFingerprint.fingerprint.in_(part))
                    )
                )
            new = [
                {"fingerprint": fp, "request_id": req.id, "erased_at": at} for fp in values if fp not in known
            ]
            if new:
                session.execute(insert(ErasedFingerprint), new)
            if fingerprints:
                session.execute(
                    update(Asset),
                    [
                        # the photo's hash goes; a keyed fingerprint holds its place
                        {
                            "id": asset_id,
                            "sha256": fp,
                            "origin_enc": None,
                            "blob_key": None,
                            "captured_at": None,
                            "faces": None,
                            "state": "erased",
                        }
                        for asset_id, fp in fingerprints.items()
                    ],
                )
            for part in in_chunks(ids):
                session.execute(delete(ConsentRecord).where(ConsentRecord.asset_id.in_(part)))
            if req.scope_kind == "source":
                session.execute(
                    update(Source).where(Source.id == int(req.plan["key"])).values(state="erased")
                )
            summary: dict[str, Any] = {"tombstoned": found}
            if req.plan.get("released"):  # a sender's request: photos held through another provenance stay
                from ..sharing.provenance import release_provenance

                incoming = session.get(IncomingRequest, req.plan["key"])
                summary["provenances_released"] = release_provenance(
                    session, incoming.peer_id, req.plan["released"]
                )
            self._done(req.id, STEPS.index("tombstone_assets"), summary, session)
        return summary

    def _step_shred_keys(self, req: ErasureRequest) -> dict[str, Any]:
        with self.ws.sessions.begin() as session:
            subjects = session.scalars(
                select(Subject).where(Subject.id.in_(req.plan["subjects_to_shred"]))
            ).all()
            for subject in subjects:
                self.ws.vault.shred(subject)
                subject.state = "erased"
            session.execute(
                delete(ConsentRecord).where(ConsentRecord.subject_id.in_(req.plan["subjects_to_shred"]))
            )
            audit.append(
                session,
                "erasure.keys_destroyed",
                {"request": req.id, "subjects": sorted(s.ref for s in subjects)},
                actor=self.ws.actor,
            )
            self._done(req.id, STEPS.index("shred_keys"), {"keys_destroyed": len(subjects)}, session)
        return {"keys_destroyed": len(subjects)}

    def _step_purge_database(self, req: ErasureRequest) -> dict[str, Any]:
        # VACUUM rewrites the whole catalog (seconds at a million photos). A small erasure
        # only checkpoints: secure_delete has zeroed its rows, and should a stale copy survive
        # in a rebuilt page, the verifier's scan finds it and VACUUMs then (design note 16).
        vacuum = len(req.plan["assets"]) >= _VACUUM_AT or self.ws.engine.dialect.name != "sqlite"
        started = time.perf_counter()
        purge_free_space(self.ws.engine, vacuum=vacuum)
        return {"seconds": round(time.perf_counter() - started, 3), "vacuum": vacuum}

    def _database_files(self) -> set[str]:
        """The SQLite catalog's files (database, WAL, shared memory), as absolute paths."""
        database = self.ws.engine.url.database
        if self.ws.engine.dialect.name != "sqlite" or not database:
            return set()
        path = os.path.realpath(database)
        return {path, path + "-wal", path + "-shm", path + "-journal"}

    def _step_verify(self, req: ErasureRequest) -> dict[str, Any]:
        if req.verification:
            # verified before a crash: never scan again (the samples may be gone, and a scan
            # without them "verifies" nothing); finish dropping them
            self._drop_samples(req.id)
            done = req.verification
            return {"ok": done["ok"], "hits": len(done["forensic_scan"]["hits"])}
        with self.ws.sessions.begin() as session:
            r = self.get(session, req.id)
            r.state = "verifying"
        verification = self.verify(req)
        with self.ws.sessions.begin() as session:
            r = self.get(session, req.id)
            r.verification = verification
            samples = self._samples(r)
            r.plan = {**r.plan, "leaves": samples.get("leaves", []), "salt": samples.get("salt")}
        self._drop_samples(req.id)  # the samples are discarded after the scan
        return {"ok": verification["ok"], "hits": len(verification["forensic_scan"]["hits"])}

    def verify(self, req: ErasureRequest) -> dict[str, Any]:
        """The forensic scan, the lineage check and the look-alike search."""
        samples = self._samples(req)
        needles = {k: bytes.fromhex(v) for k, v in samples.get("needles", {}).items()}
        home = self.ws.config.home
        started = time.perf_counter()
        stats = TreeStats()
        hits = scan_tree(home, needles, stats=stats)
        stale: list[Hit] = []
        database = self._database_files()
        if hits and database and all(os.path.realpath(home / h.file) in database for h in hits):
            # a stale copy in the database's free space (a page rebuilt while rebalancing):
            # VACUUM rewrites every page; then scan again, from scratch
            purge_free_space(self.ws.engine, vacuum=True)
            stale = hits
            stats = TreeStats()
            hits = scan_tree(home, needles, stats=stats)
        seconds = time.perf_counter() - started
        with self.ws.reader() as session:
            still_used = active_models_using(session, req.plan["assets"])
        copies = self._lookalikes_by_copy(samples.get("phashes", []))
        faces = self._lookalikes_by_face(samples.get("embeddings", []))
        scan = {
            "files": stats.files,
            "bytes": stats.bytes,
            "needles": len(needles),
            "vacuumed_after_scan": bool(stale),
            "found_before_vacuum": _hits_view(stale),
            "seconds": round(seconds, 3),
            "mb_per_second": round(stats.bytes / 1e6 / seconds, 1) if seconds else None,
            "hits": _hits_view(hits),
        }
        return {
            "ok": not hits and not still_used,
            "checked_at": iso(utcnow()),
            "forensic_scan": scan,
            "active_models_using_erased_items": still_used,
            "copy_candidates": copies,
            "face_candidates": faces,
        }

    def reverify(self, req: ErasureRequest) -> dict[str, Any]:
        """Check a completed erasure again, later: what still can be checked, and a plain
        statement of what cannot.

        The byte samples the completion-time scan looked for were destroyed once it was done
        (keeping them would keep the erased data), so a later forensic scan would have
        nothing to look for: it is not run, and the result says so, quoting the scan made at
        completion. What is checked again: the catalog (every erased photo still a tombstone
        without a blob, no derived value left, every shredded subject without a key, the
        keyed fingerprints that block re-ingestion still there) and the lineage (no active
        model uses an erased photo).
        """
        plan = req.plan
        ids = list(plan["assets"])
        not_tombstoned = derived = fingerprints = 0
        with self.ws.reader() as session:
            for chunk in in_chunks(ids):
                not_tombstoned += session.scalar(
                    select(func.count())
                    .select_from(Asset)
                    .where(Asset.id.in_(chunk), (Asset.state != "erased") | Asset.blob_key.is_not(None))
                )
                derived += session.scalar(
                    select(func.count())
                    .select_from(AssetDerivative)
                    .where(AssetDerivative.asset_id.in_(chunk))
                )
            keys_left = session.scalar(
                select(func.count())
                .select_from(Subject)
                .where(Subject.id.in_(plan["subjects_to_shred"]), Subject.dek_wrapped.is_not(None))
            )
            fingerprints = session.scalar(
                select(func.count())
                .select_from(ErasedFingerprint)
                .where(ErasedFingerprint.request_id == req.id)
            )
            still_used = active_models_using(session, ids)
        catalog = {
            "photos": len(ids),
            "photos_not_tombstoned": not_tombstoned,
            "derived_values_left": derived,
            "subjects_with_a_key_left": keys_left,
            "reingestion_fingerprints": fingerprints,
        }
        at_completion = (req.verification or {}).get("forensic_scan", {})
        return {
            "ok": not (not_tombstoned or derived or keys_left or still_used),
            "checked_at": iso(utcnow()),
            "catalog": catalog,
            "active_models_using_erased_items": still_used,
            "forensic_scan": {
                "performed": False,
                "why": (
                    "the byte samples a scan looks for were destroyed when the erasure completed "
                    "(keeping them would keep the erased data); the scan made then is quoted here"
                ),
                "at_completion": {
                    "checked_at": (req.verification or {}).get("checked_at"),
                    "needles": at_completion.get("needles"),
                    "files": at_completion.get("files"),
                    "hits": len(at_completion.get("hits") or []),
                },
            },
        }

    def _lookalikes_by_copy(self, phashes: list[str]) -> list[dict[str, Any]]:
        if not phashes:
            return []
        from ..vision import load_hash_matrix

        matrix = load_hash_matrix(self.ws.reader, self.ws.vault, cache=self.ws.hash_cache)
        found: dict[str, int] = {}
        for h in phashes:
            for asset_id, dist in matrix.search([bytes.fromhex(h)]):
                found[asset_id] = min(dist, found.get(asset_id, dist))
        return self._describe(found)

    def _lookalikes_by_face(self, embeddings: list[str]) -> list[dict[str, Any]]:
        if not embeddings or not self.ws.face_index_path.exists():
            return []
        from ..vision.index import FaceIndex

        index = FaceIndex(self.ws.face_index_path, self.ws.kek)
        best: dict[int, float] = {}
        for e in embeddings:
            for emb_id, dist in index.search(bytes.fromhex(e)):
                best[emb_id] = min(dist, best.get(emb_id, dist))
        with self.ws.reader() as session:
            owners = (
                dict(
                    session.execute(
                        select(AssetDerivative.id, AssetDerivative.asset_id).where(
                            AssetDerivative.id.in_(list(best))
                        )
                    ).all()
                )
                if best
                else {}
            )
        per_asset: dict[str, float] = {}
        for emb_id, dist in best.items():
            if emb_id in owners:
                per_asset[owners[emb_id]] = min(dist, per_asset.get(owners[emb_id], dist))
        return self._describe(per_asset)

    def _describe(self, found: dict[str, float]) -> list[dict[str, Any]]:
        """Candidates for review, stored by catalog id, not by sha256: should one of them be
        erased later, this request must not keep its hash (``view`` looks it up)."""
        if not found:
            return []
        with self.ws.reader() as session:
            rows = session.execute(
                select(Asset.id, Subject.ref)
                .join(Subject, Subject.id == Asset.owner_id)
                .where(Asset.id.in_(list(found)), Asset.state == "active")
            ).all()
        return sorted(
            ({"asset": aid, "owner": ref, "distance": round(float(found[aid]), 4)} for aid, ref in rows),
            key=lambda m: (m["distance"], m["asset"]),
        )

    @staticmethod
    def _with_sha256(session: Session, verification: dict[str, Any] | None) -> dict[str, Any] | None:
        """The verification as shown: each review candidate with its photo's sha256 now
        (None once that photo was erased too)."""
        if not verification:
            return None
        kinds = ("copy_candidates", "face_candidates")
        ids = [c["asset"] for k in kinds for c in verification.get(k) or [] if "asset" in c]
        rows = dict(
            session.execute(
                select(Asset.id, Asset.sha256).where(Asset.id.in_(ids), Asset.state == "active")
            ).all()
        )
        shown = dict(verification)
        for k in kinds:
            shown[k] = [
                {"sha256": rows.get(c["asset"]), **c} if "asset" in c else c
                for c in verification.get(k) or []
            ]
        return shown

    def _step_certificate(self, req: ErasureRequest) -> dict[str, Any]:
        with self.ws.reader() as session:
            steps = session.scalars(
                select(ErasureStep).where(ErasureStep.request_id == req.id).order_by(ErasureStep.seq)
            ).all()
            step_list = [
                {"step": s.name, "done_at": iso(s.done_at), "summary": s.summary} for s in steps if s.done_at
            ]
        leaves = sorted(set(req.plan.get("leaves", [])))
        unlearned = next((s["summary"] for s in step_list if s["step"] == "unlearn_models"), {})
        body: dict[str, Any] = {
            "schema": SCHEMA,
            "request_id": req.id,
            "workspace_id": self.ws.workspace_id,
            "scope": req.plan["scope"],
            "reason": req.reason,
            "requested_at": iso(req.created_at),
            "completed_at": iso(utcnow()),
            "counts": req.plan["counts"],
            "items": {"salt": req.plan.get("salt"), "leaves": leaves, "merkle_root": merkle_root(leaves)},
            "steps": step_list,
            "verification": _for_certificate(req.verification),
            "forgetting": unlearned.get("unlearned", []),
            "recipients": self._recipients_for_certificate(req.id),
            # a witness of the audit log as it stood (docs/audit.md): whoever keeps this
            # certificate can later detect a truncated or rewritten log
            "audit_tree_head": self.ws.audit_checkpoint(),
            "public_key": self.ws.public_key().public_bytes_raw().hex(),
        }
        body["section_digests"] = section_digests(body)
        signature = base64.b64encode(self.ws.sign(canonical(body))).decode()
        certificate = {"body": body, "signature": signature, "algorithm": "Ed25519"}
        with self.ws.sessions.begin() as session:
            r = self.get(session, req.id)
            r.certificate = certificate
            audit.append(
                session,
                "erasure.certified",
                {"request": req.id, "merkle_root": body["items"]["merkle_root"], "items": len(leaves)},
                actor=self.ws.actor,
            )
        return {"merkle_root": body["items"]["merkle_root"]}

    def _recipients_for_certificate(self, request_id: str) -> list[dict[str, Any]]:
        """Each recipient's answer; a completed one with its own signed certificate."""
        from ..sharing.outbox import notices_view

        keep = (
            "recipient",
            "public_key",
            "transfers",
            "items",
            "nonce",
            "state",
            "answered_at",
            "closed_reason",
            "certificate",
        )
        return [{k: n[k] for k in keep} for n in notices_view(self.ws, request_id)]

    # -- reading -------------------------------------------------------------------------
    def view(self, request_id: str) -> dict[str, Any]:
        with self.ws.reader() as session:
            req = self.get(session, request_id)
            try:
                steps = session.scalars(
                    select(ErasureStep).where(ErasureStep.request_id == req.id).order_by(ErasureStep.seq)
                ).all()
            except ValueError as exc:
                raise _damaged(req.id, f"a step summary is not valid JSON ({exc})") from None
            return {
                "id": req.id,
                "scope": {"kind": req.scope_kind, "ref": req.scope_ref},
                "reason": req.reason,
                "state": req.state,
                "created_at": iso(req.created_at),
                "updated_at": iso(req.updated_at),
                "plan": summarize(req.plan),
                "steps": [{"step": s.name, "done_at": iso(s.done_at), "summary": s.summary} for s in steps],
                "verification": self._with_sha256(session, req.verification),
                "certificate": bool(req.certificate),
                "error": req.error,
                "recipients": self._recipient_states(req.id),
            }

    def _recipient_states(self, request_id: str) -> list[dict[str, Any]]:
        from ..sharing.outbox import notices_view

        return [{k: v for k, v in n.items() if k != "certificate"} for n in notices_view(self.ws, request_id)]

    def list(self) -> list[dict[str, Any]]:
        with self.ws.reader() as session:  # no JSON column: a damaged journal still lists
            rows = session.execute(
                select(
                    ErasureRequest.id,
                    ErasureRequest.scope_kind,
                    ErasureRequest.scope_ref,
                    ErasureRequest.state,
                    ErasureRequest.created_at,
                    ErasureRequest.reason,
                ).order_by(ErasureRequest.created_at)
            ).all()
            return [
                {
                    "id": r.id,
                    "scope": {"kind": r.scope_kind, "ref": r.scope_ref},
                    "state": r.state,
                    "created_at": iso(r.created_at),
                    "reason": r.reason,
                }
                for r in rows
            ]

    def interrupted(self) -> list[str]:
        with self.ws.reader() as session:
            return list(
                session.scalars(
                    # approved is never a resting state (approving runs it): one left there
                    # was interrupted between its approval and its first step
                    select(ErasureRequest.id).where(
                        ErasureRequest.state.in_(("approved", "executing", "verifying"))
                    )
                )
            )


def _hits_view(hits: list[Hit]) -> list[dict[str, str]]:
    """Hits as the verification shows them: the kind of sample and the file, no bytes."""
    return [{"needle": h.label.split(":")[0], "file": h.file} for h in hits]


def _for_certificate(verification: dict[str, Any]) -> dict[str, Any]:
    """The verification as the certificate shows it: look-alike candidates are other people's
    photos, so it gives how many there were (the request keeps them for review), not which."""
    if not verification:
        return verification
    return {
        **verification,
        "copy_candidates": len(verification.get("copy_candidates") or []),
        "face_candidates": len(verification.get("face_candidates") or []),
    }


def active_models_using(session: Session, asset_ids: list[str]) -> list[str]:
    """Active models with any of ``asset_ids`` upstream (through a dataset version that
    holds them, or a run that read them directly). Walks downstream from what holds the
    photos, so its cost follows the erasure's size, not the number of models."""
    seeds: set[str] = set()
    for chunk in in_chunks(asset_ids):
        seeds.update(
            session.scalars(select(DatasetMember.dataset_id).where(DatasetMember.asset_id.in_(chunk)))
        )
        runs = select(RunInput.run_id).where(RunInput.asset_id.in_(chunk))
        seeds.update(session.scalars(select(Artifact.id).where(Artifact.run_id.in_(runs))))
    found: set[str] = set()
    for seed in sorted(seeds):
        art = session.get(Artifact, seed)
        if art.kind == "model" and art.state == "active":
            found.add(f"model:{art.name}@{art.version}")
        for node in downstream(session, NodeRef("artifact", seed, "")).nodes:
            if node["kind"] == "model" and "artifact_id" in node:
                model = session.get(Artifact, node["artifact_id"])
                if model.state == "active":
                    found.add(f"model:{model.name}@{model.version}")
    return sorted(found)


def make_plan_for_approval(session: Session, req: ErasureRequest) -> dict[str, Any]:
    """Plan again at approval (the scope may have changed), keeping the request's key."""
    key = req.plan["key"]
    req_state, req.state = req.state, "draft"  # do not count this request as a running one
    session.flush()
    try:
        plan = make_plan(session, req.scope_kind, key, req.scope_ref)
    finally:
        req.state = req_state
    plan["key"] = key
    return plan
