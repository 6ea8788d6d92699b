"""Consent: purposes, decisions, and consent history import."""

from .policy import ConsentGate, ItemRef, Verdict
from .purposes import Decision, Purpose, parse_decision, parse_purpose
from .records import ConsentImportReport, ConsentRow, import_consent, parse_consent_file

__all__ = [
    "ConsentGate",
    "ConsentImportReport",
    "ConsentRow",
    "Decision",
    "ItemRef",
    "Purpose",
    "Verdict",
    "import_consent",
    "parse_consent_file",
    "parse_decision",
    "parse_purpose",
]
