"""Croissant 1.1 JSON-LD for a dataset version, with its consent coverage.

:func:`export_croissant` describes one dataset version (built through the consent gate)
as a `Croissant <http://mlcommons.org/croissant/1.1>`_ dataset:

* the dataset-level fields Croissant requires (name, description, license, url, creator,
  datePublished, conformsTo) and its semantic ``version``;
* one RecordSet, ``members``, with the member photos inline (``data``): their sha256,
  media type, width, height and source. Never a subject ref, an external id or a path;
* the Croissant RAI fields that disgorge knows (``rai:dataCollection``,
  ``rai:personalSensitiveInformation``, ``rai:dataUseCases`` from the purpose...);
* a ``disgorge:`` extension, ``disgorge:consentCoverage``: the purpose the version was
  built for, when, how many photos it holds and how many the gate kept out (by rule),
  and the Merkle root of the members' sha256s. docs/standards.md documents it.

The export is deterministic: the same version gives the same document (its dates are the
build time, not the export time).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from typing_extensions import TypeAliasType

from .. import audit
from .._version import __version__
from ..catalog.models import Asset, DatasetMember, Source
from ..context import Context, meta_value
from ..datasets import dataset_view, find_dataset
from ..errors import InvalidInput
from . import DISGORGE_IRI

__all__ = [
    "CONFORMS_TO",
    "CONTEXT",
    "DISGORGE_CONTEXT",
    "RECORD_SET",
    "CroissantDocument",
    "croissant_document",
    "export_croissant",
    "write_croissant",
]

#: A Croissant 1.1 JSON-LD document. A plain dict under a name, not a TypedDict: its schema
#: is the Croissant specification's (keys such as ``@context``, ``cr:...`` and ``rai:...``
#: are JSON-LD terms, not Python names), and docs/standards.md documents the
#: ``disgorge:`` extension; mlcroissant checks the documents in the tests. Named (rather
#: than a bare ``dict[str, Any]``) so that the API's schema, and tests/test_result_types.py,
#: can tell "a standard document, specified elsewhere" from "untyped".
CroissantDocument = TypeAliasType("CroissantDocument", dict[str, Any])

CONFORMS_TO = "http://mlcommons.org/croissant/1.1"
#: the namespace of the ``disgorge:`` terms in Croissant documents
DISGORGE_CONTEXT = f"{DISGORGE_IRI}croissant/"
RECORD_SET = "members"

#: Croissant 1.1's recommended @context (its Appendix 1), the terms mlcroissant 1.1 expects
#: besides, and the disgorge extension
CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "sc": "https://schema.org/",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "dct": "http://purl.org/dc/terms/",
    "annotation": "cr:annotation",
    "arrayShape": "cr:arrayShape",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "containedIn": "cr:containedIn",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "description": {"@container": "@language"},
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "excludes": "cr:excludes",
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isArray": "cr:isArray",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "name": {"@container": "@language"},
    "parentField": "cr:parentField",
    "path": "cr:path",
    "readLines": "cr:readLines",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sdVersion": "cr:sdVersion",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
    "unArchive": "cr:unArchive",
    "value": "cr:value",
    "disgorge": DISGORGE_CONTEXT,
    "disgorge:excluded_by_rule": {"@type": "@json"},
}

#: source kind -> the Croissant RAI collection type it corresponds to
_COLLECTION_TYPES = {
    "app": "Self-reporting",
    "scrape": "Web Scraping",
    "transfer": "Secondary Data Analysis",
    "partner": "Secondary Data Analysis",
    "other": "Others",
}

#: what each purpose means, for rai:dataUseCases
_USES = {
    "ai_training": "Training AI/ML models (non-generative).",
    "ai_generative_training": "Training generative AI models.",
    "ai_inference": "Input to AI/ML inference.",
    "data_mining": "Text and data mining.",
    "biometric_processing": "Biometric processing (e.g. face recognition or verification).",
    "third_party_sharing": "Sharing with third parties.",
}

_FIELDS = (
    ("sha256", "sc:Text", "SHA-256 of the photo's bytes, hex (the record's key)."),
    ("media_type", "sc:Text", "Media type of the photo, e.g. image/jpeg."),
    ("width", "sc:Integer", "Width of the photo in pixels."),
    ("height", "sc:Integer", "Height of the photo in pixels."),
    ("source", "sc:Text", "Name of the source the photo came from."),
)


def _members(session: Session, artifact_id: str) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Asset.sha256, Asset.media_type, Asset.width, Asset.height, Source.name, Source.kind)
        .join(DatasetMember, DatasetMember.asset_id == Asset.id)
        .join(Source, Source.id == Asset.source_id)
        .where(DatasetMember.dataset_id == artifact_id)
        .order_by(Asset.sha256)
    ).all()
    return [
        {
            "sha256": r.sha256,
            "media_type": r.media_type,
            "width": r.width,
            "height": r.height,
            "source": r.name,
            "_kind": r.kind,
        }
        for r in rows
    ]


def export_croissant(session: Session, dataset_ref: str, *, workspace_id: str) -> CroissantDocument:
    """Croissant 1.1 JSON-LD describing the dataset version ``NAME@VERSION`` (or NAME's latest)."""
    ds = find_dataset(session, dataset_ref)
    view = dataset_view(session, f"{ds.name}@{ds.version}")
    members = _members(session, ds.artifact_id)
    sources = Counter((m["source"], m["_kind"]) for m in members)
    purpose = view["purpose"]
    ident = f"{ds.name}@{ds.version}"
    url = f"disgorge://{workspace_id}/dataset/{ident}"
    source_text = ", ".join(f"{name} ({kind}, {n} photos)" for (name, kind), n in sorted(sources.items()))
    rules = view["excluded_by_rule"]
    excluded_text = "; ".join(f"{rule}: {n}" for rule, n in rules.items()) if rules else "none were kept out"
    fields = [
        {
            "@type": "cr:Field",
            "@id": f"{RECORD_SET}/{name}",
            "name": name,
            "description": text,
            "dataType": data_type,
        }
        for name, data_type, text in _FIELDS
    ]
    data = [{f"{RECORD_SET}/{k}": m[k] for k, _, _ in _FIELDS} for m in members]
    return {
        "@context": dict(CONTEXT),
        "@type": "sc:Dataset",
        "name": ds.name,
        "description": (
            f"Dataset version {ident} of a disgorge workspace: {view['members']} photos of people, "
            f"each covered for {purpose} by its subjects' consent and its source's privacy policy "
            f"when the version was built ({view['built_at']}). Built through disgorge's consent gate."
        ),
        "conformsTo": CONFORMS_TO,
        "version": ds.version,
        "datePublished": view["built_at"],
        "dateCreated": view["built_at"],
        "url": url,
        "license": {
            "@type": "sc:CreativeWork",
            "name": f"Restricted: consent-based use for {purpose} only",
            "description": (
                "Not an open license. These are personal photos; each may be used only for the "
                f"purpose {purpose}, which their subjects' consent and their sources' privacy "
                "policies covered when this version was built. Consent can be withdrawn: check the "
                "workspace (`disgorge` consent and violation audit) before every new use."
            ),
        },
        "creator": {
            "@type": "sc:Organization",
            "name": f"disgorge workspace {workspace_id}",
            "url": f"disgorge://{workspace_id}",
        },
        "citeAs": f"disgorge dataset {ident} (workspace {workspace_id}, merkle root {view['merkle_root']})",
        "keywords": ["personal photos", "consent", purpose],
        "isLiveDataset": False,
        "distribution": [],
        "recordSet": [
            {
                "@type": "cr:RecordSet",
                "@id": RECORD_SET,
                "name": RECORD_SET,
                "description": (
                    "One record per member photo: its sha256 and technical properties. No subject "
                    "identifier, name or file path."
                ),
                "key": {"@id": f"{RECORD_SET}/sha256"},
                "field": fields,
                "data": data,
            }
        ],
        "rai:dataCollection": (
            f"Photos ingested into a disgorge workspace from these sources: {source_text}. Each photo "
            "is stored encrypted under its subject's key; subjects are known by keyed pseudonymous "
            "refs only."
        ),
        "rai:dataCollectionType": sorted({_COLLECTION_TYPES.get(kind, "Others") for _, kind in sources}),
        "rai:dataPreprocessingProtocol": [
            (
                f"Consent gate: of the {view['members'] + view['excluded']} photos selected, those not "
                f"covered for {purpose} at {view['built_at']} were kept out ({excluded_text}). A photo "
                "is covered when its source's privacy policy in force allowed the purpose and neither "
                "its owner nor anyone depicted had denied, revoked or constrained consent for it "
                "(biometric processing needs explicit consent)."
            )
        ],
        "rai:personalSensitiveInformation": [
            "Photos of identifiable people (personal data). Faces are biometric data when processed "
            "for identification (GDPR Art. 9, BIPA).",
        ],
        "rai:dataUseCases": [f"{purpose}: {_USES.get(purpose, purpose)}"],
        "rai:dataLimitations": [
            "Use is limited to the purpose above. Consent given when the version was built may have "
            "been withdrawn since; photos of erased subjects can no longer be read."
        ],
        "rai:dataReleaseMaintenancePlan": (
            "Versions are immutable and follow semantic versioning: dropping photos (for example after "
            "a consent withdrawal) makes a new MAJOR version; adding photos only, a new MINOR version."
        ),
        "disgorge:consentCoverage": {
            "@type": "disgorge:ConsentCoverage",
            "disgorge:purpose": purpose,
            "disgorge:built_at": view["built_at"],
            "disgorge:members": view["members"],
            "disgorge:excluded": view["excluded"],
            "disgorge:excluded_by_rule": dict(rules),
            "disgorge:merkle_root": view["merkle_root"],
            "disgorge:producer": f"disgorge {__version__}",
        },
    }


def write_croissant(ctx: Context, ref: str, path: str | Path) -> CroissantDocument:
    """Write the dataset version as Croissant 1.1 JSON-LD to ``path``; returns the document.

    The file is written whole or not at all (a temporary renamed over it), and the export
    is in the audit log: a dataset that leaves the workspace is accounted for.
    """
    target = Path(path)
    with ctx.sessions.begin() as session:
        doc = export_croissant(session, ref, workspace_id=meta_value(session, "workspace_id").decode())
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            tmp.replace(target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise InvalidInput(f"cannot write {target}: {exc.strerror or exc}") from None
        _audit_export(ctx, session, doc)
    return doc


def croissant_document(ctx: Context, ref: str) -> CroissantDocument:
    """The dataset version as Croissant 1.1 JSON-LD, without writing a file (the API answers
    it); audited as an export, as :func:`write_croissant` is."""
    with ctx.sessions.begin() as session:
        doc = export_croissant(session, ref, workspace_id=meta_value(session, "workspace_id").decode())
        _audit_export(ctx, session, doc)
    return doc


def _audit_export(ctx: Context, session: Session, doc: CroissantDocument) -> None:
    coverage = doc["disgorge:consentCoverage"]
    audit.append(
        session,
        "dataset.exported",
        {
            "dataset": f"{doc['name']}@{doc['version']}",
            "format": "croissant",
            "members": coverage["disgorge:members"],
        },
        actor=ctx.actor,
    )
