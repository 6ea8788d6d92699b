"""Scopes, roles, and the authenticated principal.

A scope is ``resource:action``. A role is a fixed set of scopes (fides's model: roles are
not edited per workspace, so an auditor means the same thing everywhere and the table in
``docs/api.md`` is the whole truth). Photo bytes are their own scope (``asset:bytes``):
reading a face is a different act from reading that a photo exists, and only the
privacy office and admins hold it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ROLES", "SCOPES", "Principal", "scopes_of"]

#: every scope, with what it allows (docs/api.md shows this table)
SCOPES: dict[str, str] = {
    "status:read": "the workspace's counts and health",
    "source:read": "sources and their policy versions",
    "source:write": "add sources and policy versions",
    "consent:read": "consent checks",
    "consent:write": "import consent decisions",
    "subject:read": "a subject's pseudonymous view (looked up by external id in a POST body)",
    "asset:read": "photo metadata (never the bytes)",
    "asset:bytes": "a photo's decrypted bytes (every read is audited)",
    "dataset:read": "dataset versions, diffs and Croissant exports",
    "dataset:write": "build dataset versions through the consent gate",
    "run:read": "runs and their inputs and outputs",
    "run:write": "record runs",
    "model:read": "models and their state",
    "model:write": "train, unlearn and retire models; start analysis jobs",
    "model:audit": "run a forgetting audit on a model",
    "lineage:read": "upstream and downstream of any node",
    "violation:read": "uses that consent did not cover",
    "erasure:read": "erasure requests, their plans, steps and verification",
    "erasure:create": "plan and create erasure requests (dry run included)",
    "erasure:approve": "approve, deny, resume and cancel erasure requests",
    "certificate:read": "download and verify erasure certificates",
    "sharing:read": "recipients, senders and transfers",
    "sharing:write": "register recipients and senders",
    "audit:read": "the audit log, its verification and checkpoints",
    "audit:write": "sign an audit checkpoint",
    "job:read": "long-running jobs and their progress",
    "principal:read": "users, service principals and tokens (never a token's secret)",
    "principal:write": "add and disable principals; create and revoke tokens",
    "settings:read": "the workspace's settings",
    "settings:write": "change the workspace's settings",
}

_VIEWER = frozenset(
    {
        "status:read",
        "source:read",
        "dataset:read",
        "run:read",
        "model:read",
        "lineage:read",
        "erasure:read",
        "sharing:read",
        "job:read",
    }
)
_AUDITOR = _VIEWER | {
    "subject:read",
    "asset:read",
    "consent:read",
    "violation:read",
    "certificate:read",
    "audit:read",
    "settings:read",
}
_ML_ENGINEER = _VIEWER | {
    "asset:read",
    "consent:read",
    "violation:read",
    "dataset:write",
    "run:write",
    "model:write",
    "model:audit",
}
_PRIVACY_OFFICER = _AUDITOR | {
    "asset:bytes",
    "source:write",
    "consent:write",
    "erasure:create",
    "erasure:approve",
    "sharing:write",
    "audit:write",
    "model:audit",
}

#: role -> the scopes it grants
ROLES: dict[str, frozenset[str]] = {
    "viewer": _VIEWER,
    "auditor": frozenset(_AUDITOR),
    "ml_engineer": frozenset(_ML_ENGINEER),
    "privacy_officer": frozenset(_PRIVACY_OFFICER),
    "admin": frozenset(SCOPES),
}


def scopes_of(role: str) -> frozenset[str]:
    """The scopes a role grants (an unknown role grants none)."""
    return ROLES.get(role, frozenset())


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: who the audit log names, and what they may do."""

    id: str
    name: str
    role: str
    kind: str = "user"

    @property
    def scopes(self) -> frozenset[str]:
        return scopes_of(self.role)

    def may(self, scope: str) -> bool:
        return scope in self.scopes
