"""Policy evaluation: may this item be used for this purpose at this time?

One function of the rules, used by every gate (dataset builds, runs, exports) and by the
violation audit, so that what a gate allows and what the audit flags can never disagree.
An item is covered for purpose P at time T when, in this order:

1. its source has a privacy-policy version in force at T (``no_policy`` otherwise);
2. that version allows P (``policy_disallows``);
3. for the owner and every depicted subject, the latest consent decision for P made at
   or before T (subject-wide or for this very asset; at a tie the per-asset one) is not
   ``denied`` / ``revoked`` / ``constrained`` (``consent_denied`` ...);
4. for ``biometric_processing``, each of them has explicitly *granted* it
   (``no_explicit_consent``) — a policy alone is never enough for biometric data.

With no decision on record, other purposes rest on the policy (rule 2). ``known_at``
limits the evidence to consent records *recorded* by then: "what did we know on date X".
Verdicts carry the rule and a reason naming refs, policy versions and dates (never an
external id), so every exclusion can be explained.

Provenance (DESIGN.md invariant 10, design note 19): the same bytes may be held through
several provenances — the source they were first ingested from, and each incoming transfer
that carried them. Rules 1-4 are applied once per provenance, with that provenance's source
policy and only the consent records that are not scoped to *another* transfer (a bundle's
per-photo terms, ``ConsentRecord.transfer_id``); the item is allowed only if every
provenance allows it, and the first that does not is named in the reason.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from .._time import iso
from ..catalog.db import in_chunks
from ..catalog.models import (
    Asset,
    AssetSource,
    AssetSubject,
    ConsentRecord,
    PolicyVersion,
    Source,
    Subject,
    Transfer,
    TransferItem,
)
from .purposes import Decision, Purpose

__all__ = ["ConsentGate", "ItemRef", "Verdict"]


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    rule: str
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {"allowed": self.allowed, "rule": self.rule, "reason": self.reason}


@dataclass(frozen=True)
class ItemRef:
    """What the gate needs to know about an asset."""

    asset_id: str
    source_id: int
    owner_id: int


@dataclass(frozen=True)
class _Decision:
    decision: str
    at: datetime
    asset_id: str | None
    #: the incoming transfer whose terms this is (None: every provenance)
    transfer_id: str | None = None


class ConsentGate:
    """Evaluates items for one purpose at one time; loads what it needs in bulk."""

    def __init__(
        self, session: Session, purpose: Purpose | str, at: datetime, *, known_at: datetime | None = None
    ):
        self.session = session
        self.purpose = Purpose(purpose)
        self.at = at
        self.known_at = known_at
        self._policies: dict[int, list[PolicyVersion]] = defaultdict(list)
        self._source_names: dict[int, str] = {}
        for policy in session.scalars(select(PolicyVersion).order_by(PolicyVersion.effective_from)):
            self._policies[policy.source_id].append(policy)
        for sid, name in session.execute(select(Source.id, Source.name)):
            self._source_names[sid] = name
        #: sources that hold what incoming transfers carried: a photo in one of them is held
        #: through its transfer items, not through the source itself
        self._transfer_sources: set[int] = set(
            session.scalars(
                select(Transfer.source_id).where(Transfer.direction == "in", Transfer.source_id.is_not(None))
            )
        )

    def policy_in_force(self, source_id: int) -> PolicyVersion | None:
        found = None
        for p in self._policies.get(source_id, []):
            if p.effective_from <= self.at and (p.effective_to is None or self.at < p.effective_to):
                found = p
        return found

    def evaluate(self, items: Sequence[ItemRef]) -> dict[str, Verdict]:
        """Verdict per asset id."""
        verdicts: dict[str, Verdict] = {}
        for part in in_chunks(items):
            verdicts.update(self._evaluate_chunk(part))
        return verdicts

    def _evaluate_chunk(self, items: Sequence[ItemRef]) -> dict[str, Verdict]:
        asset_ids = [it.asset_id for it in items]
        depicted: dict[str, list[int]] = defaultdict(list)
        for asset_id, subject_id in self.session.execute(
            select(AssetSubject.asset_id, AssetSubject.subject_id).where(
                AssetSubject.asset_id.in_(asset_ids), AssetSubject.role == "depicted"
            )
        ):
            depicted[asset_id].append(subject_id)
        subject_ids = {it.owner_id for it in items} | {s for lst in depicted.values() for s in lst}
        history = self._history(subject_ids)
        refs = dict(
            self.session.execute(select(Subject.id, Subject.ref).where(Subject.id.in_(subject_ids))).all()
        )
        received: dict[str, list[tuple[str, int]]] = defaultdict(list)
        if self._transfer_sources:
            for asset_id, transfer_id, source_id in self.session.execute(
                select(TransferItem.asset_id, Transfer.id, Transfer.source_id)
                .join(Transfer, Transfer.id == TransferItem.transfer_id)
                .where(TransferItem.asset_id.in_(asset_ids), Transfer.direction == "in")
                .order_by(Transfer.at, Transfer.id)
            ):
                if source_id is not None:  # always so for "in": the source the bundle filled
                    received[asset_id].append((transfer_id, source_id))
        for asset_id, source_id in self.session.execute(
            select(AssetSource.asset_id, AssetSource.source_id)
            .where(AssetSource.asset_id.in_(asset_ids))
            .order_by(AssetSource.added_at, AssetSource.source_id)
        ):
            received[asset_id].append(("", source_id))  # another source of our own: no transfer
        # a photo an erasure left withheld (a legal hold keeps it) serves no purpose
        kept = set(
            self.session.scalars(select(Asset.id).where(Asset.id.in_(asset_ids), Asset.state == "withheld"))
        )
        out: dict[str, Verdict] = {}
        for it in items:
            if it.asset_id in kept:
                out[it.asset_id] = Verdict(
                    False, "withheld", "an erasure reached the photo; a legal hold keeps it, for nothing else"
                )
                continue
            out[it.asset_id] = self._combined(it, depicted.get(it.asset_id, []), history, refs, received)
        return out

    def provenances(self, it: ItemRef, received: list[tuple[str, int]]) -> list[tuple[int, str | None]]:
        """(source id, incoming transfer id or None) for each provenance the photo is held through.

        Its own source counts unless that source only holds what transfers carried (then the
        transfer items are the provenances, and one removed by its sender's erasure is gone)."""
        found: list[tuple[int, str | None]] = []
        if it.source_id not in self._transfer_sources:
            found.append((it.source_id, None))
        found += [(source_id, transfer_id or None) for transfer_id, source_id in received]
        return found or [(it.source_id, None)]

    def _combined(
        self,
        it: ItemRef,
        depicted: list[int],
        history: dict[int, list[_Decision]],
        refs: dict[int, str],
        received: dict[str, list[tuple[str, int]]],
    ) -> Verdict:
        """Allowed only if allowed through every provenance; the first denial is the verdict."""
        ways = self.provenances(it, received.get(it.asset_id, []))
        verdicts = []
        for source_id, transfer_id in ways:
            scoped = {
                s: [d for d in history.get(s, []) if d.transfer_id in (None, transfer_id)]
                for s in (it.owner_id, *depicted)
            }
            verdict = self._one(ItemRef(it.asset_id, source_id, it.owner_id), depicted, scoped, refs)
            if len(ways) == 1:
                return verdict
            where = self._source_names.get(source_id, str(source_id))
            how = f"received in transfer {transfer_id[:12]}" if transfer_id else "its own source"
            if not verdict.allowed:
                return Verdict(
                    False,
                    verdict.rule,
                    f"{verdict.reason} (through {where!r}, {how}: one of {len(ways)} provenances of "
                    "this photo, and each must allow the use)",
                )
            verdicts.append(f"through {where!r}: {verdict.reason}")
        return Verdict(
            True, "allowed", f"allowed through each of its {len(ways)} provenances: " + " | ".join(verdicts)
        )

    def _history(self, subject_ids: Iterable[int]) -> dict[int, list[_Decision]]:
        ids = list(subject_ids)
        history: dict[int, list[_Decision]] = defaultdict(list)
        for part in in_chunks(ids):
            query = (
                select(
                    ConsentRecord.subject_id,
                    ConsentRecord.decision,
                    ConsentRecord.at,
                    ConsentRecord.asset_id,
                    ConsentRecord.transfer_id,
                )
                .where(
                    ConsentRecord.subject_id.in_(part),
                    ConsentRecord.purpose == self.purpose.value,
                    ConsentRecord.at <= self.at,
                )
                .order_by(ConsentRecord.at, ConsentRecord.id)
            )
            if self.known_at is not None:
                query = query.where(ConsentRecord.recorded_at <= self.known_at)
            for subject_id, decision, at, asset_id, transfer_id in self.session.execute(query):
                history[subject_id].append(_Decision(decision, at, asset_id, transfer_id))
        return history

    def _one(
        self, it: ItemRef, depicted: list[int], history: dict[int, list[_Decision]], refs: dict[int, str]
    ) -> Verdict:
        when = iso(self.at)
        source = self._source_names.get(it.source_id, str(it.source_id))
        policy = self.policy_in_force(it.source_id)
        if policy is None:
            return Verdict(
                False, "no_policy", f"source {source!r} has no privacy-policy version in force at {when}"
            )
        if self.purpose.value not in policy.allowed_purposes:
            return Verdict(
                False,
                "policy_disallows",
                f"policy {policy.version} of source {source!r} does not allow {self.purpose.value}",
            )
        granted_by: list[str] = []
        for role, subject_id in [("owner", it.owner_id), *(("depicted", s) for s in depicted)]:
            ref = refs.get(subject_id, str(subject_id))
            latest = _latest(history.get(subject_id, []), it.asset_id)
            if latest is not None and latest.decision != Decision.GRANTED:
                scope = "for this photo" if latest.asset_id else "for all photos"
                return Verdict(
                    False,
                    f"consent_{latest.decision}",
                    f"{role} {ref}: {self.purpose.value} {latest.decision} {scope} at {iso(latest.at)}",
                )
            if latest is None and self.purpose == Purpose.BIOMETRIC_PROCESSING:
                return Verdict(
                    False,
                    "no_explicit_consent",
                    f"{role} {ref}: no explicit consent to biometric_processing at {when}",
                )
            if latest is not None:
                granted_by.append(f"{role} {ref} granted at {iso(latest.at)}")
        basis = "; ".join(granted_by) if granted_by else "no objection on record"
        return Verdict(True, "allowed", f"policy {policy.version} allows {self.purpose.value}; {basis}")


def _latest(decisions: list[_Decision], asset_id: str) -> _Decision | None:
    """The latest decision that applies to this asset (subject-wide or for this asset).

    A later subject-wide revocation overrides an earlier per-photo grant, and a later
    per-photo grant overrides an earlier subject-wide denial; at the same instant the more
    restrictive one wins, whatever their scopes and the order they were recorded in
    (``records.prevails``: denial wins where two apply). ``decisions`` is in time order.
    """
    from .records import prevails

    best: _Decision | None = None
    for d in decisions:
        if d.asset_id not in (None, asset_id):
            continue
        if prevails(d.decision, d.at, best.decision if best else None, best.at if best else None):
            best = d
    return best
