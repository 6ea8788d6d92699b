"""The erasure certificate: any changed byte fails verification and says where.

The offline verification of a real-photo erasure's certificate is in test_erasure_lfw.py.
The tests run on the synthetic workspace of conftest.py (``syn``, copied by ``sws``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import REASON, cli
from disgorge import Workspace
from disgorge.erasure.certificate import verify_certificate

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses SIGKILL and fork (Linux only)"
)


# -- the certificate -------------------------------------------------------------------------
def test_a_certificate_with_one_byte_changed_fails_and_says_where(sws: Workspace, tmp_path: Path) -> None:
    rid = sws.erase("subject", "Ada_Lovelace", reason=REASON)["id"]
    out = cli("certificate", "export", rid, "--out", str(tmp_path / "cert.json"), "-w", str(sws.root))
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "cert.json").read_text()
    pem = (tmp_path / "cert.pub.pem").read_bytes()
    cert = json.loads(text)
    assert verify_certificate(cert, pem).ok
    body = cert["body"]
    # one changed byte in each section of the body: (what to find, what to put, where it is)
    cases = [
        (REASON, REASON.replace("117", "118"), "body.reason"),
        (
            body["items"]["leaves"][0],
            "0" + body["items"]["leaves"][0][1:]
            if body["items"]["leaves"][0][0] != "0"
            else "1" + body["items"]["leaves"][0][1:],
            "body.items",
        ),
        ('"photos": 3', '"photos": 2', "body.counts"),
        (
            body["request_id"],
            body["request_id"][:-1] + ("0" if body["request_id"][-1] != "0" else "1"),
            "body.request_id",
        ),
        (body["completed_at"], body["completed_at"].replace(":", ";", 1), "body.completed_at"),
    ]
    for old, new, where in cases:
        assert text.count(old) >= 1 and len(old.encode()) == len(new.encode())
        changed = text.replace(old, new, 1)
        assert sum(a != b for a, b in zip(changed.encode(), text.encode(), strict=True)) == 1
        check = verify_certificate(json.loads(changed), pem)
        assert not check.ok and check.where == where, (where, check)
        (tmp_path / "bad.json").write_text(changed)
        out = cli(
            "certificate",
            "verify",
            str(tmp_path / "bad.json"),
            "--public-key",
            str(tmp_path / "cert.pub.pem"),
        )
        assert out.returncode == 1 and "INVALID" in out.stdout and where in out.stdout, out.stdout
    # the signature itself
    sig = cert["signature"]
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    check = verify_certificate({**cert, "signature": flipped}, pem)
    assert not check.ok and "signature" in (check.where or "")
    # another workspace's key
    with Workspace.init(tmp_path / "other", actor="x") as other:
        check = verify_certificate(cert, other.public_key_pem())
    assert not check.ok and "signed by another key" in check.reason
