"""The catalog over the API: sources, consent, subjects, photos, lineage, datasets, runs, models.

A subject is always named in a request body (its external id or ``sub_`` ref), never in a
URL. Training, unlearning and analysis answer with a job: wait for it with ``wait_job``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from .base import Transport, params, seg

if TYPE_CHECKING:
    from ..api.routes.catalog import ConsentImported
    from ..api.routes.datasets import DatasetBuildView
    from ..api.routes.lineage import LineageView, ViolationSummary
    from ..api.routes.models import ModelListed
    from ..assets import AssetView
    from ..audit.violations import ViolationUse
    from ..consent.service import ConsentCheckResult, SubjectView
    from ..datasets.build import DatasetDiff, DatasetView
    from ..interop.croissant import CroissantDocument
    from ..jobs import JobView
    from ..runs.service import RecordedRun, RunDetail, RunView
    from ..sources import SourceView
    from ..training.lifecycle import ModelAudit, ModelView, RetiredModel

__all__ = ["CatalogCalls"]


def _version_of(ref: str) -> tuple[str, str | None]:
    """``NAME@VERSION`` -> (NAME, VERSION); ``NAME`` -> (NAME, None)."""
    name, at, version = ref.partition("@")
    return name, (version if at else None)


class CatalogCalls(Transport):
    # -- sources and their policies -----------------------------------------------------------
    def iter_sources(self, *, kind: str | None = None) -> Iterator[SourceView]:
        return cast("Iterator[SourceView]", self.pages("/v1/sources", kind=kind))

    def source(self, name: str) -> SourceView:
        """One source: its photo count and policy versions."""
        return cast("SourceView", self.request("GET", f"/v1/sources/{seg(name)}"))

    def add_source(self, name: str, *, kind: str = "app", description: str = "") -> SourceView:
        body = {"name": name, "kind": kind, "description": description}
        return cast("SourceView", self.request("POST", "/v1/sources", json=body))

    def add_policy(
        self,
        source: str,
        version: str,
        *,
        text: str,
        effective_from: str,
        effective_to: str | None = None,
        allows: Iterable[str] = (),
    ) -> SourceView:
        """Add a privacy-policy version to a source (the server keeps only its text's sha256)."""
        body = {
            "version": version,
            "text": text,
            "effective_from": effective_from,
            "effective_to": effective_to,
            "allows": list(allows),
        }
        return cast("SourceView", self.request("POST", f"/v1/sources/{seg(source)}/policies", json=body))

    # -- consent and subjects -----------------------------------------------------------------
    def import_consent(self, text: str, *, format: str = "csv") -> ConsentImported:
        """Import a consent history (CSV or JSON Lines text, docs/formats.md): all or nothing."""
        body = {"text": text, "format": format}
        return cast("ConsentImported", self.request("POST", "/v1/consent/import", json=body))

    def consent_check(self, subject: str, purpose: str, *, at: str | None = None) -> ConsentCheckResult:
        """May a subject's photos be used for ``purpose`` (at ``at``, else now)? A verdict per photo."""
        body = {"subject": subject, "purpose": purpose, "at": at}
        return cast("ConsentCheckResult", self.request("POST", "/v1/consent/check", json=body))

    def subject(self, subject: str) -> SubjectView:
        """A subject by external id or ``sub_`` ref: its photos and consent history."""
        body = {"external_id": subject}
        return cast("SubjectView", self.request("POST", "/v1/subjects/lookup", json=body))

    # -- photos --------------------------------------------------------------------------------
    def iter_assets(self, *, source: str | None = None, state: str | None = None) -> Iterator[AssetView]:
        """Photos' catalog entries (never their bytes), oldest ingested first."""
        return cast("Iterator[AssetView]", self.pages("/v1/assets", source=source, state=state))

    def asset(self, sha256: str) -> AssetView:
        return cast("AssetView", self.request("GET", f"/v1/assets/{seg(sha256)}"))

    def read_asset(self, sha256: str) -> bytes:
        """A photo's decrypted bytes (scope ``asset:bytes``; the server audits the read)."""
        return self.request_bytes(f"/v1/assets/{seg(sha256)}/bytes")

    # -- lineage and violations ----------------------------------------------------------------
    def lineage(self, kind: str, ident: str, *, direction: str = "downstream", hops: int = 50) -> LineageView:
        """Everything downstream (derived from) or upstream (feeding) a node. ``kind``:
        subject (external id or ref), source, asset, dataset or model (``NAME[@V]``),
        transfer, run or artifact (id)."""
        body = {"kind": kind, "id": ident, "direction": direction, "hops": hops}
        return cast("LineageView", self.request("POST", "/v1/lineage", json=body))

    def iter_violations(
        self, *, source: str | None = None, purpose: str | None = None, as_of: str | None = None
    ) -> Iterator[ViolationUse]:
        """Uses (dataset versions, runs) of photos their consent did not cover (at ``as_of``)."""
        found = self.pages("/v1/violations", source=source, purpose=purpose, as_of=as_of)
        return cast("Iterator[ViolationUse]", found)

    def violation_summary(self, *, as_of: str | None = None) -> ViolationSummary:
        """The violation audit's totals over all uses."""
        body = self.request("GET", "/v1/violations", params={**params(as_of=as_of), "limit": 1})
        return cast("ViolationSummary", body["summary"])

    # -- datasets and runs -----------------------------------------------------------------------
    def iter_datasets(self, *, purpose: str | None = None) -> Iterator[DatasetView]:
        """The latest version of each dataset, by name."""
        return cast("Iterator[DatasetView]", self.pages("/v1/datasets", purpose=purpose))

    def dataset(self, ref: str, *, members: bool = False) -> DatasetView:
        """A dataset version, ``NAME`` (the latest) or ``NAME@VERSION``; its members' sha256s if asked."""
        name, version = _version_of(ref)
        query = params(version=version, members=members or None)
        return cast("DatasetView", self.request("GET", f"/v1/datasets/{seg(name)}", params=query))

    def build_dataset(
        self, name: str, *, purpose: str, source: str | None = None, subjects: Sequence[str] | None = None
    ) -> DatasetBuildView:
        """Build a dataset version through the consent gate (``created`` false: nothing changed)."""
        body = {"name": name, "purpose": purpose, "source": source, "subjects": subjects}
        return cast("DatasetBuildView", self.request("POST", "/v1/datasets", json=body))

    def croissant(self, ref: str) -> CroissantDocument:
        """A dataset version as Croissant JSON-LD (the export is audited)."""
        name, version = _version_of(ref)
        path = f"/v1/datasets/{seg(name)}/croissant"
        return cast("CroissantDocument", self.request("GET", path, params=params(version=version)))

    def dataset_diff(self, name: str, from_version: str, to_version: str | None = None) -> DatasetDiff:
        """Photos added and removed between two versions (``to_version``: the latest)."""
        query = params(**{"from": from_version, "to": to_version})
        return cast("DatasetDiff", self.request("GET", f"/v1/datasets/{seg(name)}/diff", params=query))

    def iter_runs(
        self, *, job: str | None = None, purpose: str | None = None, state: str | None = None
    ) -> Iterator[RunView]:
        """Runs, newest first."""
        return cast("Iterator[RunView]", self.pages("/v1/runs", job=job, purpose=purpose, state=state))

    def run(self, run_id: str) -> RunDetail:
        """One run: purpose, consent check, inputs and outputs."""
        return cast("RunDetail", self.request("GET", f"/v1/runs/{seg(run_id)}"))

    def record_run(
        self,
        job: str,
        *,
        purpose: str,
        inputs: Sequence[str],
        outputs: Sequence[Mapping[str, Any]],
        parameters: Mapping[str, Any] | None = None,
        code_version: str = "",
        at: str | None = None,
        override: tuple[str, str] | None = None,
    ) -> RecordedRun:
        """Record a run done elsewhere through the consent gate. ``outputs``: ``{kind, name,
        version, uri}``; ``override``: (role, justification), for admins only."""
        body = {
            "job": job,
            "purpose": purpose,
            "inputs": list(inputs),
            "outputs": [dict(o) for o in outputs],
            "parameters": dict(parameters or {}),
            "code_version": code_version,
            "at": at,
            "override": {"role": override[0], "justification": override[1]} if override else None,
        }
        return cast("RecordedRun", self.request("POST", "/v1/runs", json=body))

    # -- models and analysis ---------------------------------------------------------------------
    def iter_models(self, *, name: str | None = None, state: str | None = None) -> Iterator[ModelListed]:
        """Model versions, trained here or recorded from elsewhere, by name."""
        return cast("Iterator[ModelListed]", self.pages("/v1/models", name=name, state=state))

    def model(self, ref: str) -> ModelView:
        """A model version, ``NAME`` (the latest) or ``NAME@VERSION``."""
        return cast("ModelView", self.request("GET", f"/v1/models/{seg(ref)}"))

    def train_model(
        self,
        name: str,
        *,
        dataset: str,
        shards: int = 8,
        slices: int = 4,
        seed: int = 0,
        code_version: str = "",
    ) -> JobView:
        """Train a SISA face model on a dataset version (``NAME[@V]``): a job."""
        body = {
            "name": name,
            "dataset": dataset,
            "shards": shards,
            "slices": slices,
            "seed": seed,
            "code_version": code_version,
        }
        return cast("JobView", self.request("POST", "/v1/models", json=body))

    def unlearn_model(
        self,
        ref: str,
        *,
        subjects: Sequence[str] = (),
        shas: Sequence[str] = (),
        reason: str = "unlearning request",
    ) -> JobView:
        """Make a model forget subjects' (external ids or refs) or photos' (sha256) data: a job."""
        body = {"subjects": list(subjects), "shas": list(shas), "reason": reason}
        return cast("JobView", self.request("POST", f"/v1/models/{seg(ref)}/unlearn", json=body))

    def retire_model(self, ref: str, *, reason: str) -> RetiredModel:
        """Retire a model version and everything derived from it."""
        path = f"/v1/models/{seg(ref)}/retire"
        return cast("RetiredModel", self.request("POST", path, json={"reason": reason}))

    def model_audit(self, ref: str, *, forgotten: Sequence[str]) -> ModelAudit:
        """Has the model forgotten these subjects? Membership inference and a retrain proof."""
        path = f"/v1/models/{seg(ref)}/audit"
        return cast("ModelAudit", self.request("POST", path, json={"forgotten": list(forgotten)}))

    def analyze(
        self,
        *,
        shas: Sequence[str] | None = None,
        force: bool = False,
        cnn: bool = False,
        embedder: str = "dlib",
        workers: int | None = None,
    ) -> JobView:
        """Detect faces and hash photos (every one not analysed yet, or ``shas``): a job."""
        body = {
            "shas": list(shas) if shas is not None else None,
            "force": force,
            "cnn": cnn,
            "embedder": embedder,
            "workers": workers,
        }
        return cast("JobView", self.request("POST", "/v1/analysis", json=body))
