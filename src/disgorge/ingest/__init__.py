"""Ingest: walking folders and archives, safe decoding, manifests, the pipeline."""

from .decode import ALLOWED_FORMATS, DEFAULT_MAX_PIXELS, Probe, probe
from .manifest import ManifestEntry, read_manifest
from .members import Member, walk
from .pipeline import IngestOptions, IngestReport, Rejection, run_ingest

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "IngestOptions",
    "IngestReport",
    "ManifestEntry",
    "Member",
    "Probe",
    "Rejection",
    "probe",
    "read_manifest",
    "run_ingest",
    "walk",
]
