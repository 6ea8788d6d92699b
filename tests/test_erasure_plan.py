"""Erasure plans and requests: what a request covers, what is refused, cancel and approve.

The tests run on the synthetic workspace of conftest.py (``syn``, copied by ``sws``).
"""

from __future__ import annotations

import sys

import pytest
from sqlalchemy import select

from conftest import GROUP, REASON, Syn, cli, raw_scan, sha
from disgorge import ErasureBlocked, NotFound, Workspace
from disgorge.catalog.models import (
    Subject,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses SIGKILL and fork (Linux only)"
)


# -- bad input --------------------------------------------------------------------------------
def test_a_subject_that_does_not_exist_is_not_found_and_nothing_is_created(sws: Workspace) -> None:
    before = (sws.status(), len(sws.audit_events(limit=10_000)))
    with pytest.raises(NotFound, match="no subject"):
        sws.erasure_plan("subject", "Nobody_At_All")
    with pytest.raises(NotFound, match="no subject"):
        sws.erase("subject", "Nobody_At_All", reason=REASON)
    with pytest.raises(NotFound):
        sws.erase("asset", "ab" * 32, reason=REASON)
    with pytest.raises(NotFound, match="no source"):
        sws.erase("source", "nowhere", reason=REASON)
    out = cli("erase", "--subject", "Nobody_At_All", "--reason", REASON, "--yes", "-w", str(sws.root))
    assert out.returncode == 1 and "no subject" in out.stderr
    assert sws.erasures() == []
    assert (sws.status(), len(sws.audit_events(limit=10_000))) == before
    # the external id asked about is not stored anywhere either
    assert raw_scan(sws.config.home, {"id": b"Nobody_At_All"}) == []


def test_a_photo_of_two_subjects_goes_with_either_and_the_plan_says_why(sws: Workspace, syn: Syn) -> None:
    alan, grace = sws.subject_ref("Alan_Turing"), sws.subject_ref("Grace_Hopper")
    plan = sws.erasure_plan("subject", "Grace_Hopper")
    assert (plan["counts"]["photos"], plan["owned"], plan["depicting"]) == (4, 3, 1)
    assert plan["subjects"] == [grace]  # only Grace's key is destroyed
    [note] = plan["notes"]
    assert (
        alan in note and "show this subject" in note and "a photo of a person is that person's data" in note
    )

    result = sws.erase("subject", "Grace_Hopper", reason=REASON)
    assert result["state"] == "completed" and result["verification"]["ok"], result["verification"]
    with pytest.raises(NotFound):
        sws.asset(sha(syn.photos[GROUP]))
    # Alan's other photos survive, readable with his (untouched) key
    for name, data in syn.of("Alan_Turing").items():
        if name != GROUP:
            assert sws.read_asset(sha(data)) == data
    assert sws.status()["subjects_erased"] == 1
    with sws.reader() as session:
        states = dict(session.execute(select(Subject.ref, Subject.state)).all())
    assert states[grace] == "erased" and states[alan] == "active"
    # the shared photo is refused at re-ingest, whoever is said to own it
    report = sws.ingest(syn.folder, source="app", manifest=syn.manifest)
    assert report.ingested == 0 and report.duplicates == 9
    refused = {r.path: r.reason for r in report.rejected}
    assert set(refused) == {GROUP} | set(syn.of("Grace_Hopper"))
    assert all("erased" in why for why in refused.values())


def test_gc_keeps_the_samples_of_an_open_erasure(sws: Workspace) -> None:
    """The samples of a planned erasure are what its verifier will need: gc leaves them."""
    planned = sws.erase("subject", "Ada_Lovelace", reason=REASON, execute=False)
    path = sws.config.home / "erasure" / f"{planned['id']}.samples"
    assert path.exists()
    assert sws.gc(grace_seconds=0).orphan_samples == 0 and path.exists()


def test_cancel_works_before_execution_and_is_refused_after(sws: Workspace, syn: Syn) -> None:
    first = sws.erase("subject", "Ada_Lovelace", reason=REASON, execute=False)
    cancelled = sws.erasure_cancel(first["id"], reason="the request was withdrawn")
    assert cancelled["state"] == "cancelled"
    with pytest.raises(ErasureBlocked, match="only a planned erasure can be approved"):
        sws.erasure_approve(first["id"])
    for data in syn.of("Ada_Lovelace").values():  # nothing happened to her photos
        assert sws.read_asset(sha(data)) == data

    second = sws.erase("subject", "Ada_Lovelace", reason=REASON, execute=False)
    done = sws.erasure_approve(second["id"])
    assert done["state"] == "completed"
    with pytest.raises(ErasureBlocked, match="can no longer be cancelled"):
        sws.erasure_cancel(second["id"])
    out = cli("erasure", "cancel", second["id"], "-w", str(sws.root))
    assert out.returncode == 1 and "can no longer be cancelled" in out.stderr
    assert sws.erasure(second["id"])["state"] == "completed"
