"""The one exception tree of disgorge.

Every error a user can cause or meet derives from :class:`DisgorgeError`, so the CLI and
the server catch one type at their boundary and turn it into a one-line message (CLI,
exit code 1) or one JSON error shape (server). Messages name the ids involved and what
to do next; they never carry personal data (external subject ids, photo bytes, paths
inside a subject's folder)::

    DisgorgeError
    ├── WorkspaceError        no workspace, already initialised, schema out of date
    │   └── RestoreNeeded     a catalog restored from before an erasure (run restore-check)
    ├── KekError              wrong or missing key-encryption key
    ├── NotFound              unknown subject, asset, source, policy version
    ├── InvalidInput          a malformed row, date, purpose, manifest or archive member
    │   └── SignatureError    a signed document that does not verify (sharing.documents)
    ├── IntegrityError        a blob or audit event that was altered
    ├── KeyDestroyed          the subject's data key was destroyed (crypto-shredded)
    ├── ConsentDenied         a run or export that consent does not cover (and no override)
    ├── ErasureBlocked        an erasure that cannot be planned or run as asked
    ├── Unauthenticated       no API token, or one that is unknown, expired or revoked
    ├── Forbidden             a principal whose role lacks the scope an operation needs
    ├── FacesUnavailable      the ``faces`` extra is not installed (vision.models)
    ├── ClusterError          a Dask cluster that does not answer, or no dask (cluster)
    ├── ApiError              an error answer of a disgorge server, or none (client)
    │   ├── ApiUnauthenticated    401, and an Unauthenticated too
    │   ├── ApiForbidden          403, and a Forbidden too
    │   ├── ApiNotFound           404, and a NotFound too
    │   └── ApiInvalidInput       422, and an InvalidInput too
    └── WaitTimedOut          a client's wait for a job or an erasure ran out of time (client)

The subclasses defined next to the code that raises them are named with their module;
tests/test_architecture.py checks that this tree names every subclass there is.
"""

from __future__ import annotations

__all__ = [
    "ConsentDenied",
    "DisgorgeError",
    "ErasureBlocked",
    "Forbidden",
    "IntegrityError",
    "InvalidInput",
    "KekError",
    "KeyDestroyed",
    "NotFound",
    "RestoreNeeded",
    "Unauthenticated",
    "WorkspaceError",
]


class DisgorgeError(Exception):
    """Root of every error disgorge raises on purpose."""

    #: HTTP status the server maps this error to.
    status: int = 400


class WorkspaceError(DisgorgeError):
    """The workspace is missing, already exists, or its schema is not current."""

    status = 409


class RestoreNeeded(WorkspaceError):
    """The catalog lacks erasures the erasure ledger recorded: it was restored from an
    older backup, and ``disgorge restore-check`` must replay them before it is used."""


class KekError(DisgorgeError):
    """The key-encryption key is missing or does not belong to this workspace."""

    status = 403


class NotFound(DisgorgeError):
    """An id (subject ref, asset sha256, source name) that the catalog does not hold."""

    status = 404


class InvalidInput(DisgorgeError):
    """Input that cannot be used as given: the message says which file/row and why."""

    status = 422


class IntegrityError(DisgorgeError):
    """Stored data does not match what was written: tampering or corruption."""

    status = 409


class KeyDestroyed(DisgorgeError):
    """The data-encryption key of a subject was destroyed, so its data is gone for good."""

    status = 410


class ConsentDenied(DisgorgeError):
    """A use (run, export) that the consent of some of its items does not cover."""

    status = 403


class ErasureBlocked(DisgorgeError):
    """An erasure that cannot be planned or run as asked (unhandled artifact, running twice)."""

    status = 409


class Unauthenticated(DisgorgeError):
    """An API call without a valid token: none, unknown, expired, revoked, or disabled user."""

    status = 401


class Forbidden(DisgorgeError):
    """A principal whose role lacks the scope, or a rule (two-person approval) says no."""

    status = 403
