"""The ``certificate`` step: the erasure's signed certificate, built from its journal.

The body (docs/certificate.md) is built only from what the journal recorded: the plan's
pseudonymous scope and counts, each step's summary, the verification (look-alike
candidates as counts: they are other people's photos), the recipients' answers with their
own certificates, the Merkle root over the items' leaves, and a signed tree head of the
audit log as it stood, so that whoever keeps the certificate can later detect a truncated
or rewritten log. The rules of the format are :mod:`disgorge.erasure.certificate`'s; the
offline check is :func:`disgorge.signing.verify_certificate`.
"""

from __future__ import annotations

import base64
from typing import Any

from .. import audit
from .._merkle import merkle_root
from .._time import iso, utcnow
from ..catalog.models import ErasureRequest
from ..signing import ALGORITHM, SCHEMA, section_digests
from ._step import Execution, step
from .approvals import for_certificate as approvals_for_certificate
from .certificate import canonical
from .journal import find_request, step_views
from .recipients import recipients_for_certificate
from .verifier import for_certificate

__all__ = ["certify"]


def _withheld(req: ErasureRequest) -> dict[str, Any]:
    withheld = req.plan.get("withheld") or {}
    return {
        "photos": len(withheld.get("assets", [])),
        "models": [m["model"] for m in withheld.get("models", [])],
        "holds": withheld.get("holds", []),
    }


@step("certificate")
def certify(execution: Execution, req: ErasureRequest) -> dict[str, Any]:
    """The signed certificate."""
    from ..audit.service import checkpoint

    ctx = execution.ctx
    with ctx.reader() as session:
        steps = step_views(session, req.id, done_only=True)
        approvals = approvals_for_certificate(session, req.id)
    leaves = sorted(set(req.plan.get("leaves", [])))
    unlearned = next((s["summary"] or {} for s in steps if s["step"] == "unlearn_models"), {})
    body: dict[str, Any] = {
        "schema": SCHEMA,
        "request_id": req.id,
        "workspace_id": ctx.workspace_id,
        "scope": req.plan["scope"],
        "reason": req.reason,
        "requested_at": iso(req.created_at),
        "completed_at": iso(utcnow()),
        "counts": req.plan["counts"],
        "items": {"salt": req.plan.get("salt"), "leaves": leaves, "merkle_root": merkle_root(leaves)},
        "steps": steps,
        "verification": for_certificate(req.verification),
        "forgetting": unlearned.get("unlearned", []),
        "recipients": recipients_for_certificate(ctx, req.id),
        "approvals": approvals,
        # what legal holds kept: erased by a later erasure when the holds are released
        "withheld": _withheld(req),
        # a witness of the audit log as it stood (docs/audit.md): whoever keeps this
        # certificate can later detect a truncated or rewritten log
        "audit_tree_head": checkpoint(ctx),
        "public_key": ctx.public_key().public_bytes_raw().hex(),
    }
    body["section_digests"] = section_digests(body)
    signature = base64.b64encode(ctx.sign(canonical(body))).decode()
    certificate = {"body": body, "signature": signature, "algorithm": ALGORITHM}
    with ctx.sessions.begin() as session:
        find_request(session, req.id).certificate = certificate
        audit.append(
            session,
            "erasure.certified",
            {"request": req.id, "merkle_root": body["items"]["merkle_root"], "items": len(leaves)},
            actor=ctx.actor,
        )
    return {"merkle_root": body["items"]["merkle_root"]}
