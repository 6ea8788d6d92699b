"""Consent files (CSV and JSONL) with bad rows: nothing is imported.

What every bad-input test checks is said in conftest.py ("bad input").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import assert_private, write_rows
from disgorge import InvalidInput, NotFound, Workspace

# -- 9: consent files -----------------------------------------------------------------------------
GOOD_CONSENT = """
subject,purpose,decision,at,policy_version
Ada_Lovelace,ai_training,granted,2014-01-01,v1
Alan_Turing,biometric_processing,denied,2014-01-02T10:00:00Z,v1
"""


def _import_good_consent(ws: Workspace, tmp_path: Path) -> Path:
    good = write_rows(tmp_path / "consent" / "good.csv", GOOD_CONSENT)
    report = ws.import_consent(good)
    assert (report.imported, report.subjects_created) == (2, 2)
    return good


def _assert_only_good_consent(ws: Workspace, good: Path) -> None:
    status = ws.status()
    assert status["consent_records"] == 2
    assert status["subjects"] == 2
    assert ws.subject("Ada_Lovelace")["consent_now"]["ai_training"] == "granted"
    assert ws.subject("Alan_Turing")["consent_now"]["ai_training"] == "none"
    with pytest.raises(NotFound):
        ws.subject("Grace_Hopper")
    assert len(ws.audit_events(limit=1000, action="consent.imported")) == 1
    again = ws.import_consent(good)  # and importing the good file again duplicates nothing
    assert (again.imported, again.already_present) == (0, 2)


def test_consent_csv_with_bad_rows_imports_nothing_and_keeps_earlier_consent(
    ws: Workspace, tmp_path: Path
) -> None:
    good = _import_good_consent(ws, tmp_path)
    bad = write_rows(
        tmp_path / "consent" / "bad.csv",
        """
subject,purpose,decision,at
Ada_Lovelace,ai_training,revoked,2015-01-01
Grace_Hopper,face_swapping,granted,2015-01-02
Alan_Turing,ai_training,granted,2015-13-45
Grace_Hopper,data_mining,granted,2015-01-03
""",
    )

    with pytest.raises(InvalidInput) as caught:
        ws.import_consent(bad)

    message = str(caught.value)
    assert message.startswith("bad.csv: 2 bad row(s), nothing imported")
    assert "bad.csv line 3: purpose: unknown purpose 'face_swapping'" in message
    assert "bad.csv line 4: at: '2015-13-45' is not an ISO 8601" in message
    assert "line 2" not in message and "line 5" not in message
    _assert_only_good_consent(ws, good)
    assert_private(ws, message)


BAD_JSONL = {
    "broken-json": ('{"subject": "Grace_Hopper", "purpose": "ai_training", "decision": ', "not valid JSON"),
    "not-an-object": ('["Grace_Hopper", "ai_training", "granted", "2015-01-01"]', "expected a JSON object"),
    "nested-object": (
        '{"subject": {"name": "Grace_Hopper"}, "purpose": "ai_training", "decision": "granted", '
        '"at": "2015-01-01"}',
        "field 'subject' must not be an object",
    ),
    "unknown-column": (
        '{"subject": "Grace_Hopper", "purpose": "ai_training", "decision": "granted", '
        '"at": "2015-01-01", "email": "grace@example.org"}',
        "unknown column(s) email",
    ),
    "bad-decision": (
        '{"subject": "Grace_Hopper", "purpose": "ai_training", "decision": "maybe", "at": "2015-01-01"}',
        "decision: unknown decision 'maybe'",
    ),
}


@pytest.mark.parametrize("kind", list(BAD_JSONL))
def test_consent_jsonl_with_a_malformed_line_imports_nothing(
    ws: Workspace, tmp_path: Path, kind: str
) -> None:
    good = _import_good_consent(ws, tmp_path)
    line2, reason = BAD_JSONL[kind]
    first = '{"subject": "Grace_Hopper", "purpose": "data_mining", "decision": "granted", "at": "2015-01-01"}'
    last = '{"subject": "Ada_Lovelace", "purpose": "ai_training", "decision": "revoked", "at": "2015-02-01"}'
    bad = write_rows(tmp_path / "consent" / "bad.jsonl", f"{first}\n{line2}\n{last}\n")

    with pytest.raises(InvalidInput) as caught:
        ws.import_consent(bad)

    message = str(caught.value)
    assert "bad.jsonl line 2: " in message and reason in message, message
    _assert_only_good_consent(ws, good)
    assert_private(ws, message)
