"""The ingest pipeline: walk, decode in a process pool, seal, register.

Order of work for each batch, chosen so that a SIGKILL at any moment is harmless:

1. read the files and decode them in worker processes (:mod:`.decode`);
2. create any new subjects (and their data keys) in one committed transaction;
3. seal each new photo under its owner's key and write its blob (rename into place);
4. in one transaction: re-check which sha256s exist (another ingest may have won),
   insert the asset rows, their subject links and their audit events; commit;
5. delete the blobs of photos that lost the race in step 4.

A kill before 4 commits leaves only sealed blobs the catalog does not know, which
``disgorge gc`` removes; it never leaves a catalog row without its blob.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import itertools
import multiprocessing
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from .. import audit
from .._time import iso
from ..access.settings import read_settings
from ..catalog.models import Asset, AssetSource, AssetSubject, ErasedFingerprint, Source, Subject
from ..errors import DisgorgeError, InvalidInput, NotFound
from ..pool import ordered_map, process_pool
from ..subjects import get_or_create_subjects, ref_of
from ..vault import Vault
from ..vault.blobstore import put_local
from ..vision import blocklist
from .decode import DEFAULT_MAX_PIXELS, Probe, probe_many
from .manifest import ManifestEntry, read_manifest
from .members import Member, walk

__all__ = ["IngestOptions", "IngestReport", "Rejection", "run_ingest"]

SUBJECT_FROM = ("dirname",)

#: processes writing sealed blobs to a store on the local disk
_BLOB_WRITERS = 2
#: threads writing sealed blobs to any other fsspec store (network round trips)
_IO_THREADS = 4


@dataclass(frozen=True)
class Rejection:
    path: str
    reason: str


@dataclass
class IngestReport:
    """What an ingest did. ``to_dict`` is the ``--json`` summary."""

    source: str
    files: int = 0
    ingested: int = 0
    duplicates: int = 0
    #: duplicates that came through another source before: this one now holds them too
    provenances_added: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    subjects_created: int = 0
    bytes: int = 0
    seconds: float = 0.0
    asset_ids: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.rejected

    def to_dict(self) -> dict[str, Any]:
        rate = self.ingested / self.seconds if self.seconds else 0.0
        return {
            "source": self.source,
            "files": self.files,
            "ingested": self.ingested,
            "duplicates": self.duplicates,
            "provenances_added": self.provenances_added,
            "rejected": [{"path": r.path, "reason": r.reason} for r in self.rejected],
            "subjects_created": self.subjects_created,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "photos_per_second": round(rate, 1),
        }


@dataclass(frozen=True)
class IngestOptions:
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = 256 * 1024 * 1024
    workers: int | None = None
    #: photos per batch; a batch also closes at ``batch_bytes`` of file data
    batch_size: int = 256
    batch_bytes: int = 64 * 1024 * 1024


@dataclass
class _Item:
    member: Member
    owner: str
    depicted: tuple[str, ...]
    captured_at: datetime | None
    data: bytes = b""


#: called with (files decoded so far, files seen so far)
ProgressFn = Callable[[int, int], None]


def run_ingest(
    sessions: sessionmaker[Session],
    vault: Vault,
    path: Path,
    *,
    source: str,
    actor: str,
    at: datetime,
    manifest: Path | None = None,
    subject_from: str | None = None,
    options: IngestOptions = IngestOptions(),
    progress: ProgressFn | None = None,
) -> IngestReport:
    started = time.perf_counter()
    with sessions() as session:
        src = session.scalar(select(Source).where(Source.name == source))
        if src is None:
            raise NotFound(f"no source named {source!r}; create it with `disgorge source add {source}`")
        if src.state != "active":
            raise InvalidInput(f"source {source!r} is {src.state}: an erasure of it is under way or done")
        source_id = src.id
    if manifest is None and subject_from is None:
        raise InvalidInput("say whose photos these are: --manifest FILE or --subject-from dirname")
    if manifest is not None and subject_from is not None:
        raise InvalidInput("use either --manifest or --subject-from, not both")
    if subject_from is not None and subject_from not in SUBJECT_FROM:
        raise InvalidInput(f"--subject-from {subject_from!r}: expected one of {', '.join(SUBJECT_FROM)}")
    entries = read_manifest(manifest) if manifest is not None else None

    report = IngestReport(source=source)
    seen_paths: set[str] = set()

    def items() -> Iterator[_Item]:
        for member in walk(path, max_bytes=options.max_bytes):
            report.files += 1
            seen_paths.add(member.path)
            if member.refused:
                report.rejected.append(Rejection(member.path, member.refused))
                continue
            item = _assign(member, entries, report)
            if item is not None and _read(item, report):
                yield item

    writer = _Writer(sessions, vault, source_id=source_id, actor=actor, at=at, report=report)
    done = 0
    try:
        for batch, probes in _decoded(items(), options):
            writer.write(batch, probes)
            done += len(batch)
            if progress:
                progress(done, report.files)
    finally:
        writer.close()  # commits the last batch (its blobs are in place), even when stopped by an error
    if entries is not None:
        for rel, entry in entries.items():
            if rel not in seen_paths:
                report.rejected.append(
                    Rejection(rel, f"listed in the manifest (line {entry.line}) but not found")
                )

    report.seconds = time.perf_counter() - started
    with sessions.begin() as session:
        audit.append(
            session,
            "ingest.completed",
            {
                "source": source,
                "files": report.files,
                "ingested": report.ingested,
                "duplicates": report.duplicates,
                "rejected": len(report.rejected),
                "subjects_created": report.subjects_created,
            },
            actor=actor,
            at=at,
        )
    return report


def _assign(member: Member, entries: dict[str, ManifestEntry] | None, report: IngestReport) -> _Item | None:
    if entries is not None:
        entry = entries.get(member.path)
        if entry is None:
            report.rejected.append(Rejection(member.path, "not listed in the manifest"))
            return None
        return _Item(member, entry.owner, entry.depicted, entry.captured_at)
    parent = PurePosixPath(member.path).parent.name
    if not parent:
        report.rejected.append(Rejection(member.path, "at the root: no folder name to take the subject from"))
        return None
    return _Item(member, parent, (), None)


def _chunks(items: Iterator[_Item], size: int, max_bytes: int) -> Iterator[list[_Item]]:
    """Batches of ``size`` items, or fewer when their data reaches ``max_bytes``."""
    batch: list[_Item] = []
    total = 0
    for item in items:
        batch.append(item)
        total += len(item.data)
        if len(batch) >= size or total >= max_bytes:
            yield batch
            batch, total = [], 0
    if batch:
        yield batch


def _read(item: _Item, report: IngestReport) -> bool:
    """Read the member's bytes now, while its archive is open; refuse it if unreadable."""
    try:
        assert item.member.read is not None
        item.data = item.member.read()
    except (InvalidInput, OSError) as exc:
        reason = str(exc) if isinstance(exc, InvalidInput) else f"cannot read ({exc.strerror})"
        report.rejected.append(Rejection(item.member.path, reason))
        return False
    return True


def _decoded(items: Iterator[_Item], options: IngestOptions) -> Iterator[tuple[list[_Item], list[Probe]]]:
    """Yield (batch, probes) in order, decoding a few batches ahead in worker processes.

    Small inputs (one or two batches) are decoded in this process: starting a pool
    costs more than it saves.
    """
    workers = options.workers or os.cpu_count() or 1
    batches = _chunks(items, options.batch_size, options.batch_bytes)
    first = list(itertools.islice(batches, 2))
    batches = itertools.chain(first, batches)
    inline = workers <= 1 or len(first) < 2
    if not inline:
        _preload_forkserver()
    yield from ordered_map(
        probe_many,
        batches,
        args=lambda batch: ([i.data for i in batch], options.max_pixels),
        workers=workers,
        inline=inline,
    )


def _preload_forkserver() -> None:
    """Have the forkserver (when it starts) import what the pool workers run, once.

    Otherwise every worker imports all of disgorge itself (about 0.7 s of CPU each) after
    it is forked. ``__main__`` stays first in the list, as in multiprocessing's default.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        multiprocessing.get_context("forkserver").set_forkserver_preload(
            ["__main__", "disgorge.ingest.decode", "disgorge.vault.blobstore"]
        )


@dataclass
class _Staged:
    """A batch between steps 3 and 4: its sealed blobs are being written elsewhere."""

    rows: list[tuple[_Item, Probe, dict[str, Any]]]
    #: the blob keys of ``rows``, in order, in consecutive chunks
    puts: list[Future[list[str]]]


class _Writer:
    """Steps 2-5 of the module docstring, for one decoded batch at a time.

    Steps 4-5 of a batch run when the next batch arrives (or at :meth:`close`), so the
    blobs of one batch are written while the next one is read and decoded. A batch is
    committed only once every one of its blobs is renamed into place.

    Blobs are sealed here and written by writer processes when the store is on the local
    disk (creating files is kernel work that would otherwise contend for this process's
    GIL), by threads for other fsspec stores. The first batch is written in this process,
    so a small ingest starts nothing.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        vault: Vault,
        *,
        source_id: int,
        actor: str,
        at: datetime,
        report: IngestReport,
    ) -> None:
        self.sessions = sessions
        self.vault = vault
        self.source_id = source_id
        self.actor = actor
        self.at = at
        self.report = report
        self.subjects: dict[str, Subject] = {}
        self.seen: set[str] = set()
        self._pending: _Staged | None = None
        self._io: Executor | None = None
        self._put: Callable[[list[bytes]], list[str]] = vault.store.put_many
        self._writers = 1
        self._batches = 0
        self._resources = contextlib.ExitStack()
        self._blocklist: blocklist.Blocklist | None = None  # the kept hashes of erased photos

    def write(self, batch: list[_Item], probes: list[Probe]) -> None:
        self._commit_pending()
        self._pending = self._stage(batch, probes)

    def close(self) -> None:
        """Commit the batch still in flight and stop the blob writers."""
        try:
            self._commit_pending()
        finally:
            self._resources.close()

    def _put_blobs(self, blobs: list[bytes]) -> list[Future[list[str]]]:
        """Start writing ``blobs``: futures of their keys, in order, in consecutive chunks."""
        self._batches += 1
        if self._batches == 1:  # the first batch: written right here
            done: Future[list[str]] = Future()
            done.set_result(self._put(blobs))
            return [done]
        if self._io is None:
            root = self.vault.store.local_root
            if root is not None:
                self._writers = _BLOB_WRITERS
                _preload_forkserver()
                self._io = self._resources.enter_context(process_pool(self._writers))
                self._put = functools.partial(put_local, root)
            else:
                self._writers = _IO_THREADS
                self._io = self._resources.enter_context(
                    ThreadPoolExecutor(max_workers=self._writers, thread_name_prefix="disgorge-blob")
                )
        size = -(-len(blobs) // self._writers)
        return [self._io.submit(self._put, blobs[i : i + size]) for i in range(0, len(blobs), size)]

    def _stage(self, batch: list[_Item], probes: list[Probe]) -> _Staged | None:
        """Steps 2-3: skip what is known, create subjects, start sealing and writing blobs."""
        fresh: list[tuple[_Item, Probe]] = []
        for item, pr in zip(batch, probes, strict=True):
            if not pr.ok:
                self.report.rejected.append(Rejection(item.member.path, pr.reason or "rejected"))
            elif pr.sha256 in self.seen:
                self.report.duplicates += 1
            else:
                self.seen.add(pr.sha256)
                fresh.append((item, pr))
        if not fresh:
            return None
        known = self._existing({pr.sha256 for _, pr in fresh})
        self.report.duplicates += sum(1 for _, pr in fresh if pr.sha256 in known)
        self._record_provenance([(item, pr.sha256) for item, pr in fresh if pr.sha256 in known])
        fresh = [(i, pr) for i, pr in fresh if pr.sha256 not in known]
        fresh = [(item, pr) for item, pr in self._refuse_erased(fresh) if not self._near_copy(item)]
        if not fresh:
            return None
        self._ensure_subjects({ext for item, _ in fresh for ext in (item.owner, *item.depicted)})

        # Step 3: seal the blobs here, write them elsewhere (see the class docstring) while
        # this process goes on; _commit waits for every one of them.
        ids = [uuid.uuid4().hex for _ in fresh]
        sealed = [
            self.vault.seal_blob(self.subjects[item.owner], asset_id, item.data)
            for (item, _), asset_id in zip(fresh, ids, strict=True)
        ]
        puts = self._put_blobs(sealed)
        del sealed
        for item, _ in fresh:
            item.data = b""  # sealed and on its way: let the plaintext go
        staged: list[tuple[_Item, Probe, dict[str, Any]]] = []
        for (item, pr), asset_id in zip(fresh, ids, strict=True):
            owner = self.subjects[item.owner]
            origin = self.vault.seal(owner, item.member.path.encode("utf-8"), f"origin:{asset_id}")
            staged.append(
                (
                    item,
                    pr,
                    {  # an assets row
                        "id": asset_id,
                        "sha256": pr.sha256,
                        "size": pr.size,
                        "media_type": pr.media_type,
                        "width": pr.width,
                        "height": pr.height,
                        "source_id": self.source_id,
                        "owner_id": owner.id,
                        "blob_key": None,
                        "origin_enc": origin,
                        "captured_at": item.captured_at,
                        "ingested_at": self.at,
                        "state": "active",
                    },
                )
            )
        return _Staged(staged, puts)

    def _commit_pending(self) -> None:
        staged, self._pending = self._pending, None
        if staged is not None:
            self._commit(staged)

    def _commit(self, pending: _Staged) -> None:
        """Steps 4-5, once every blob of the batch is in place."""
        staged = pending.rows
        concurrent.futures.wait(pending.puts)
        # result() raises the first failed write: then nothing of the batch is committed
        keys = [key for put in pending.puts for key in put.result()]
        for (_, _, asset), key in zip(staged, keys, strict=True):
            asset["blob_key"] = key

        losers: list[str] = []
        with self.sessions.begin() as session:
            # checked again under the write lock: an erasure approved (of this source, a photo
            # or a subject) while the batch was being written wins, and the batch's blobs go
            kept = {id(i) for i, _ in self._refuse_erased([(i, pr) for i, pr, _ in staged], session)}
            losers += [asset["blob_key"] or "" for i, _, asset in staged if id(i) not in kept]
            staged = [row for row in staged if id(row[0]) in kept]
            taken = set(
                session.scalars(
                    select(Asset.sha256).where(Asset.sha256.in_([pr.sha256 for _, pr, _ in staged]))
                )
            )
            stored: list[dict[str, Any]] = []
            links: list[dict[str, Any]] = []
            events: list[tuple[str, dict[str, Any]]] = []
            for item, pr, asset in staged:
                if pr.sha256 in taken:
                    losers.append(asset["blob_key"] or "")
                    self.report.duplicates += 1
                    continue
                stored.append(asset)
                links.append({"asset_id": asset["id"], "subject_id": asset["owner_id"], "role": "owner"})
                for ext in item.depicted:
                    subject = self.subjects[ext]
                    if subject.id != asset["owner_id"]:
                        links.append({"asset_id": asset["id"], "subject_id": subject.id, "role": "depicted"})
                events.append(
                    (
                        "asset.ingested",
                        {
                            "asset": asset["id"],
                            "source_id": self.source_id,
                            "owner": self.subjects[item.owner].ref,
                            "depicted": [self.subjects[e].ref for e in item.depicted],
                            "media_type": asset["media_type"],
                        },
                    )
                )
            if stored:
                # bulk INSERTs (one executemany per table) instead of one flush per asset
                session.execute(insert(Asset), stored)
                session.execute(insert(AssetSubject), links)
            # one event per asset, chained in order; one head update and flush per batch
            audit.append_many(session, events, actor=self.actor, at=self.at)
            for asset in stored:
                self.report.ingested += 1
                self.report.bytes += asset["size"]
                self.report.asset_ids.append(asset["id"])
        for key in losers:
            self.vault.store.delete(key)

    def _refuse_erased(
        self, fresh: list[tuple[_Item, Probe]], in_session: Session | None = None
    ) -> list[tuple[_Item, Probe]]:
        """Erasure is sticky: refuse erased photos, photos of erased subjects, erasing sources.

        Checked when a batch is staged and again in its commit transaction (``in_session``).
        """
        if not fresh:
            return fresh
        fingerprints = {pr.sha256: self.vault.photo_fingerprint(pr.sha256) for _, pr in fresh}
        refs = {ext: ref_of(self.vault, ext) for item, _ in fresh for ext in (item.owner, *item.depicted)}
        with contextlib.nullcontext(in_session) if in_session is not None else self.sessions() as session:
            state = session.scalar(select(Source.state).where(Source.id == self.source_id))
            erased = dict(
                session.execute(
                    select(ErasedFingerprint.fingerprint, ErasedFingerprint.erased_at).where(
                        ErasedFingerprint.fingerprint.in_(list(fingerprints.values()))
                    )
                ).all()
            )
            gone = set(
                session.scalars(
                    select(Subject.ref).where(Subject.ref.in_(list(refs.values())), Subject.state == "erased")
                )
            )
        kept = []
        for item, pr in fresh:
            if state != "active":
                reason = f"source is {state}: an erasure of it is under way or done"
            elif fingerprints[pr.sha256] in erased:
                when = (iso(erased[fingerprints[pr.sha256]]) or "")[:10]
                reason = f"this photo was erased on {when}: re-ingestion refused"
            elif any(refs[e] in gone for e in (item.owner, *item.depicted)):
                reason = "a subject of this photo was erased: their photos are refused"
            else:
                kept.append((item, pr))
                continue
            self.report.rejected.append(Rejection(item.member.path, reason))
        return kept

    def _near_copy(self, item: _Item) -> bool:
        """Refuse a near-copy of an erased photo (:mod:`disgorge.vision.blocklist`, opened once)."""
        if self._blocklist is None:
            with self.sessions() as session:
                settings = read_settings(session)
                on, distance = settings["sticky_copies"], settings["sticky_copy_distance"]
                self._blocklist = blocklist.load(session, self.vault.kek, distance=distance, enabled=bool(on))
        reason = self._blocklist.refusal(item.data)
        if reason is not None:
            self.report.rejected.append(Rejection(item.member.path, reason))
        return reason is not None

    def _record_provenance(self, held: list[tuple[_Item, str]]) -> None:
        """Bytes already held, met again from this source: if they came through another
        source (a bundle's, say), this source becomes a provenance of theirs too (its policy
        and its subjects' consent must then allow each use, and a sender's erasure request
        leaves them in place: design note 19), and the subjects named here are linked to the
        photo, so their consent counts and their erasure reaches it."""
        if not held:
            return
        with self.sessions() as session:
            kind = session.scalar(select(Source.kind).where(Source.id == self.source_id))
            if kind == "transfer":  # a bundle's receipt records its items as transfer items
                return
            rows = session.execute(
                select(Asset.sha256, Asset.id, Asset.source_id, Asset.owner_id).where(
                    Asset.sha256.in_([sha for _, sha in held]), Asset.state == "active"
                )
            ).all()
        by_sha = {r.sha256: r for r in rows if r.source_id != self.source_id}
        if not by_sha:
            return
        self._ensure_subjects(
            {ext for item, sha in held if sha in by_sha for ext in (item.owner, *item.depicted)}
        )
        added = 0
        with self.sessions.begin() as session:
            for item, sha in held:
                row = by_sha.get(sha)
                if row is None:
                    continue
                if session.get(AssetSource, (row.id, self.source_id)) is None:
                    session.add(AssetSource(asset_id=row.id, source_id=self.source_id, added_at=self.at))
                    added += 1
                for ext in (item.owner, *item.depicted):
                    subject = self.subjects[ext]
                    if subject.id != row.owner_id and session.get(AssetSubject, (row.id, subject.id)) is None:
                        session.add(AssetSubject(asset_id=row.id, subject_id=subject.id, role="depicted"))
                session.flush()
            if added:
                audit.append(
                    session,
                    "ingest.provenance_added",
                    {"source_id": self.source_id, "photos": added},
                    actor=self.actor,
                    at=self.at,
                )
        self.report.provenances_added += added

    def _existing(self, shas: Iterable[str]) -> set[str]:
        wanted = list(shas)
        with self.sessions() as session:
            return set(session.scalars(select(Asset.sha256).where(Asset.sha256.in_(wanted))))

    def _ensure_subjects(self, external_ids: set[str]) -> None:
        missing = [e for e in external_ids if e not in self.subjects]
        if not missing:
            return
        exts = sorted(missing)
        refs = [ref_of(self.vault, ext) for ext in exts]
        with self.sessions.begin() as session:
            found = get_or_create_subjects(session, self.vault, refs, at=self.at, actor=self.actor)
            for ext, ref, (subject, created) in zip(exts, refs, found, strict=True):
                if subject.dek_wrapped is None:
                    raise DisgorgeError(f"subject {ref} was erased; their photos cannot be ingested again")
                self.report.subjects_created += int(created)
                self.subjects[ext] = subject
