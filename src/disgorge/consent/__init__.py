"""Consent: purposes, decisions, and consent history import."""

from .purposes import Decision, Purpose, parse_decision, parse_purpose
from .records import ConsentImportReport, ConsentRow, import_consent, parse_consent_file

__all__ = [
    "ConsentImportReport",
    "ConsentRow",
    "Decision",
    "Purpose",
    "import_consent",
    "parse_consent_file",
    "parse_decision",
    "parse_purpose",
]
