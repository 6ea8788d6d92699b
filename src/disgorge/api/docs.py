"""``docs/api.md``, generated from the code: ``python -m disgorge.api.docs --write``.

The page is a short guide written here (:data:`GUIDE`: tokens, roles, the two-person rule,
pages, errors, jobs, the inbox, TLS and proxies) followed by tables built from what the
server really does: every endpoint of the route table (:func:`disgorge.api.endpoints`),
every role and scope (:mod:`disgorge.access.roles`), every setting
(:data:`disgorge.access.settings.DEFAULTS`) and every problem type an error can carry
(:data:`.problems.PROBLEM_TYPES` and one per :class:`~disgorge.errors.DisgorgeError`
subclass). ``tests/test_api_docs.py`` fails when the page is not what this module prints
now, so a route added without regenerating the page is caught.

    python -m disgorge.api.docs > docs/api.md      # or: python -m disgorge.api.docs --write
"""

import argparse
import sys
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from pathlib import Path

from ..access.roles import ROLES, SCOPES
from ..access.settings import DEFAULTS
from ..errors import DisgorgeError
from ..sharing import documents
from ..vision import models
from .app import endpoints
from .problems import PROBLEM_TYPES, problem_type
from .routes import RESOURCES
from .table import PUBLIC, SIGNED, Endpoint

__all__ = ["COMMAND", "main", "render"]

#: how to bring the page up to date (the test's failure message names it)
COMMAND = ".venv/bin/python -m disgorge.api.docs --write"
PAGE = Path("docs") / "api.md"

#: what each role is for (a role the table has and this lacks fails the generator)
ROLE_PURPOSE: dict[str, str] = {
    "viewer": "dashboards and curious colleagues: what exists and its state, never a subject or a photo",
    "auditor": "internal audit, the DPO's staff: subjects, consent, violations, the audit log, "
    "certificates; reads only",
    "ml_engineer": "build datasets through the consent gate, record runs, train, unlearn and audit models",
    "privacy_officer": "sources, consent, erasures and their approvals, sharing partners, audit "
    "checkpoints, photo bytes",
    "admin": "every scope: principals, tokens and settings besides",
}

#: what each setting means (a setting DEFAULTS has and this lacks fails the generator)
SETTING_MEANING: dict[str, str] = {
    "approvals_required": "approvals by privacy officers other than the requester that a large "
    "erasure needs (1 to 5)",
    "approval_subject_threshold": "an erasure reaching more subjects than this is large (0 to 10,000,000); "
    "so is every erasure of a source, a model or a transfer",
    "sticky_copies": "1: an erasure keeps its photos' PDQ hashes, sealed, and ingest and received bundles "
    "refuse their near-copies; 0: nothing is kept, and turning it off drops the hashes kept so far",
    "sticky_copy_distance": "the PDQ distance (bits of 256, 0 to 64) within which a photo is a near-copy "
    "of an erased one",
}

#: the generic problem types, status -> when (falls back to the HTTP phrase)
GENERIC_MEANING: dict[int, str] = {
    400: "a body that is not JSON, too deeply nested, or malformed (the inbox)",
    401: "no bearer token, or one that is unknown, expired or revoked; a signed query that does not verify",
    403: "a signature by no registered sender, or a stale one (the inbox)",
    404: "no route, or no such item",
    405: "the path exists, the method does not (`Allow` lists the methods)",
    408: "the request's headers or body did not arrive in time",
    409: "a replayed nonce (the inbox)",
    411: "a body without `Content-Length` (the inbox)",
    413: "a body larger than the server takes (`disgorge serve --max-body-mb`)",
    422: "a parameter or the body does not match the schema (the message names the field)",
    500: "a bug: the server's log has the exception's type; the answer never has details",
    503: "busy: every catalog slot is taken, or the catalog stayed locked; retry after `Retry-After` s",
}

GUIDE = """\
# The REST API

`disgorge serve` answers HTTP for one workspace: the `/v1` resources, for people and
systems holding a **bearer token** (everything the CLI does), and the **inbox** where other
organisations send their erasure requests, signed with their own keys. This page is written
by `python -m disgorge.api.docs`: the guide is kept in `src/disgorge/api/docs.py`, and every
table after it is built from the code (the route table, the roles, the settings, the error
classes); a test fails when the page is not what the code produces.

```bash
pip install 'disgorge[server]'
disgorge user add alice --role privacy_officer
disgorge token create --user alice --expires 90d     # printed once: dg_<id>_<secret>
disgorge serve                                       # http://127.0.0.1:8765
curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8765/v1/status
```

## Authentication: bearer tokens

Every `/v1` call but the inbox's sends `Authorization: Bearer dg_<id>_<secret>`.

* `disgorge user add NAME --role ROLE` adds a user (`--service` for another system: a
  service principal); `disgorge user list`, `disgorge user disable NAME` (its tokens stop
  working at once). Over the API: `POST /v1/principals`, `POST /v1/principals/{name}/disable`.
* `disgorge token create --user NAME --expires 90d` (or `12h`, `2w`, `never`) prints the token
  **once**. The workspace keeps only its SHA-256 (128 random bits need no slow hash: there is
  nothing to guess from the digest) and compares in constant time; a lost token cannot be
  shown again, only revoked and replaced. `disgorge token list` shows each by its prefix
  `dg_<id>_…`, with its state and when it was last used (written at most once a minute);
  `disgorge token revoke ID` ends one at once. Over the API: `POST /v1/principals/{name}/tokens`,
  `GET /v1/tokens`, `DELETE /v1/tokens/{id}`.
* A call without a valid token gets `401` with `WWW-Authenticate: Bearer`; a token whose role
  lacks the operation's scope gets `403`. Both are decided before the body is read, so a caller
  without the scope learns nothing from validation errors.
* Every write is audited with the principal's name as the actor; the audit log never holds a
  token's secret. `GET /v1/me` says who a token is and what it may do.

## Roles and scopes

Each operation needs one **scope** (`resource:action`); a principal has one **role**, a fixed
set of scopes (the same in every workspace: roles are not edited). The tables at the end list
every scope and which role holds it.

<<roles>>

Photo bytes are a scope of their own (`asset:bytes`, privacy officers and admins): reading a
face is a different act from reading that a photo exists, and every read is audited.

## Erasures and the two-person rule

`POST /v1/erasures` (a subject by its external id or `sub_` ref in the body, never in a URL;
a photo by sha256; a source; a model; a transfer) creates a request in `planned` with its plan
(the dry run alone is `POST /v1/erasures/plan`). The request runs once approved:

* a **large** erasure (a whole source, a model or a transfer, or more subjects than
  `approval_subject_threshold`) needs `approvals_required` approvals by **privacy officers other
  than the requester**: asking is not approving, and an admin's approval does not count toward
  them. Any one deny (`/deny`) ends the request;
* a smaller one needs one approval, which may be the requester's own: a privacy officer (or an
  admin) who asks approves in the same call.

Each decision is a row (who, when, why) and an audit event, and the certificate names the
approvers by principal id. `GET /v1/settings` shows the rule's settings, `PUT
/v1/settings/{key}` (`settings:write`, admins) or `disgorge settings set KEY VALUE` changes
them:

<<settings>>

**The shell is outside the API's access control.** The workspace's owner at the shell (the
CLI, the Python `Workspace`) holds the key-encryption key and could read or destroy everything
anyway; roles cannot bind them. Their decision (`disgorge erase ... --yes`,
`disgorge erasure approve`) is final on its own and recorded with their OS user
(`$DISGORGE_ACTOR`, else the login name). The rule binds API principals: run the server as a
user the privacy officers are not, and keep the key file (`.disgorge/kek.key`) readable by that
user only.

## Pages

Every list answers one page: `?limit=` (1 to 1000, default 100) and `?offset=` (default 0) in,
and `{"items": [...], "total": N, "limit": L, "offset": O, "next_offset": O2}` out, where
`next_offset` is the `offset` of the next page or `null` on the last. Filters are query
parameters of each list (`GET /v1/erasures?state=planned`).

## Errors: RFC 9457 problem details

Every error, from any route, is `application/problem+json`:

```json
{"type": "urn:disgorge:problem:not-found", "title": "Not Found", "status": 404,
 "detail": "no erasure request 4f2a9c1e", "error": "no erasure request 4f2a9c1e"}
```

`type` names the kind of problem (listed at the end), `detail` is one line naming ids and what
to do next, never personal data (no external subject id, no file name of a subject), and
`error` repeats `detail` for inbox clients older than this format. A busy server answers `503`
with `Retry-After` (seconds) instead of queueing without end; a `500` carries no details (the
server's log has the exception's type). Each endpoint's possible error statuses are in the
table below and, with their meaning, in the OpenAPI document.

## Long-running work: jobs

An operation that takes longer than an HTTP request should (running an erasure, training,
analysis) answers `202 Accepted` at once with what it started: a job (`{"id", "kind", "state":
"queued", ...}`) or, for erasures, the request whose `steps` show its progress. Follow it with
`GET /v1/jobs/{id}` (`state`: `queued`, `running`, `succeeded`, `failed`; `done`/`total`;
`result` or `error`). Jobs run one at a time, in order, in the server; they are rows in the
catalog, so a `202` is never lost: after a restart an erasure resumes from its journal, an
analysis, an unlearning or an ingest runs again (its result says `resumed_after_crash`), and a
training cut off is marked `failed` and can be started again. A job is claimed by the process
running it: a second server on the same workspace leaves it alone, and takes it over only once
that process is gone. An idle server also asks the recipients of the erasures requested over
the API that are `awaiting_recipients` again, every 10 s (one made at the shell is left to
`disgorge erasure resume`).

## Uploads: photos in, bundles out

A client has no folder on the server, so files travel as uploads: `POST /v1/uploads` with the
raw bytes as the body (a `.zip` or `.tar(.gz)` of photos, a manifest CSV, a bundle) answers
`{"upload": "upl_...", "bytes", "sha256"}`; the call that uses it names it (`POST /v1/ingest`,
`POST /v1/bundles`, `POST /v1/find`, `POST /v1/models/{ref}/predict`). A bundle shared with
`POST /v1/transfers` is downloaded once from `GET /v1/files/{id}`. These files hold photos in
clear, so they live outside the workspace (`$TMPDIR/disgorge-<workspace id>/uploads`, 0700,
files 0600), are overwritten and unlinked when the call that uses them ends, and `disgorge gc`
removes any left unused past its grace period.

## The inbox: other organisations

Organisations photos were shared with, or received from, talk to this server without tokens:
`POST /v1/erasure-requests` takes a sender's erasure request signed with its Ed25519 key, which
must be registered here (`disgorge sender add NAME --public-key KEY`); the signature, the
addressee and the nonce are checked before anything is believed. `GET
/v1/erasure-requests/{nonce}` answers the signed state of a request (with the certificate once
done) only to the sender that sent it, which signs its query (`Authorization: Disgorge ...`).
`GET /v1/public-key` and `GET /healthz` are public. The protocol and its documents:
[sharing.md](sharing.md).

## OpenAPI

`GET /v1/openapi.json` is the OpenAPI 3.1 document (every route, its body and answer schemas,
its scope as `x-disgorge-scope`, its errors), for any authenticated caller (a valid token,
whatever its role): the route list is not published to the world. Its security schemes are
`bearer` (a token) and `senderSignature` (the inbox's signed documents), and each operation
names the one it needs (none for the two public ones). There is no `/docs` page (it would load
scripts from a CDN): load the document into your own viewer or client generator. The Python
client, `disgorge.client.Client(url, token)`, and the CLI's `--server URL --token T` (or
`$DISGORGE_SERVER`, `$DISGORGE_TOKEN`) call the same routes.

## Deployment: TLS, or a reverse proxy

A token is a password: never send one over plain HTTP across a network. `disgorge serve` binds
`127.0.0.1:8765` (this machine only) unless told otherwise, and warns when it binds any other
address without TLS. Two ways to serve other machines:

**TLS in the server.** Give a certificate and its key, both PEM files (the certificate file may
hold the chain; the key must not be encrypted, so keep it readable by the server's user only):

```bash
disgorge serve --host 0.0.0.0 --port 8443 --tls-cert /etc/disgorge/cert.pem --tls-key /etc/disgorge/key.pem
```

The server checks that the two match before it starts, and says `https://` in its first line;
a certificate without a key (or a key without a certificate) is refused.

**Behind a reverse proxy** that terminates TLS (nginx, Caddy, a load balancer): bind the server
to loopback and let the proxy forward to it.

```nginx
server {
    listen 443 ssl;
    server_name disgorge.example.org;
    ssl_certificate     /etc/ssl/disgorge.pem;
    ssl_certificate_key /etc/ssl/disgorge.key;
    client_max_body_size 64m;                # as disgorge serve --max-body-mb
    location / {
        proxy_pass http://127.0.0.1:8765;    # disgorge serve --host 127.0.0.1 --port 8765
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_set_header X-Forwarded-Proto $scheme;
    }
}
```

What the server trusts of a proxy's headers, exactly: it reads `X-Forwarded-For` and
`X-Forwarded-Proto` only on connections whose peer is `127.0.0.1` or `::1` (a proxy on the
same machine), and ignores them from every other peer (`FORWARDED_ALLOW_IPS` is not read). It
never reads `Forwarded`, `X-Forwarded-Host` or `X-Real-IP`. Even when read, they change only
the client address the access log prints and the request's scheme (seen only in the `Location`
of a trailing-slash redirect): no access decision depends on an address or on a header other
than `Authorization`, so a forged header can at worst misattribute a log line. A proxy on
another machine works as well; the log then shows the proxy's address.
"""


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _who(e: Endpoint) -> str:
    if e.auth == PUBLIC:
        return "public"
    if e.auth == SIGNED:
        return "signed by a registered sender"
    return f"`{e.scope}`" if e.scope else "any token"


def _roles() -> str:
    missing = set(ROLES) - set(ROLE_PURPOSE)
    if missing:
        raise SystemExit(f"disgorge.api.docs: ROLE_PURPOSE lacks {sorted(missing)}")
    return _table(
        ("role", "for", "scopes"),
        ((f"`{role}`", ROLE_PURPOSE[role], len(scopes)) for role, scopes in ROLES.items()),
    )


def _settings() -> str:
    missing = set(DEFAULTS) - set(SETTING_MEANING)
    if missing:
        raise SystemExit(f"disgorge.api.docs: SETTING_MEANING lacks {sorted(missing)}")
    return _table(
        ("setting", "default", "meaning"),
        ((f"`{key}`", value, SETTING_MEANING[key]) for key, value in DEFAULTS.items()),
    )


def _endpoints() -> str:
    table = endpoints()
    parts = [
        "## Endpoints",
        "",
        f"{len(table)} endpoints. *Who*: the scope a token's role must hold, `any token` (any valid "
        "token), `signed by a registered sender` (the inbox) or `public`. *Errors*: the statuses "
        "an endpoint can answer besides its success, each a problem detail.",
    ]
    for resource in RESOURCES:
        rows = list(resource.endpoints)
        if not rows:
            continue
        parts += ["", f"### {resource.tag}", ""]
        if resource.description:
            parts += [resource.description, ""]
        parts.append(
            _table(
                ("method", "path", "who", "what", "success", "errors"),
                (
                    (
                        e.method,
                        f"`{e.path}`",
                        _who(e),
                        e.summary,
                        e.status,
                        " ".join(str(s) for s in sorted(e.errors)),
                    )
                    for e in rows
                ),
            )
        )
    return "\n".join(parts)


def _scopes() -> str:
    roles = list(ROLES)
    rows = (
        (f"`{scope}`", meaning, *("✓" if scope in ROLES[r] else "" for r in roles))
        for scope, meaning in SCOPES.items()
    )
    used: dict[str, int] = {}
    for e in endpoints():
        if e.scope:
            used[e.scope] = used.get(e.scope, 0) + 1
    unknown = sorted(set(used) - set(SCOPES))
    if unknown:
        raise SystemExit(f"disgorge.api.docs: endpoints name scopes that do not exist: {unknown}")
    return "\n".join(
        [
            "## Scopes and roles",
            "",
            "Every scope, what it allows, and the roles that hold it.",
            "",
            _table(("scope", "allows", *(f"`{r}`" for r in roles)), rows),
        ]
    )


#: error classes defined outside errors.py, imported so that they are among the subclasses
ELSEWHERE = (documents.SignatureError, models.FacesUnavailable)


def _error_classes() -> list[type[DisgorgeError]]:
    """The errors the server can answer with: disgorge's own, not a client's (disgorge.client
    raises its own subclasses, on the caller's side) nor any a test or plugin defines; the
    same list whatever else the process imported."""
    found: list[type[DisgorgeError]] = []
    pending = list(DisgorgeError.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls not in found:
            found.append(cls)
            pending += cls.__subclasses__()
    return [
        cls
        for cls in found
        if cls.__module__.startswith("disgorge.") and not cls.__module__.startswith("disgorge.client")
    ]


def _problems() -> str:
    rows: dict[str, tuple[str, int, str]] = {}
    for status, urn in PROBLEM_TYPES.items():
        try:
            phrase = HTTPStatus(status).phrase.lower()
        except ValueError:
            phrase = ""
        rows[urn] = (urn, status, GENERIC_MEANING.get(status, phrase))
    for cls in _error_classes():
        urn = problem_type(cls.status, cls("x"))
        doc = (cls.__doc__ or "").strip().splitlines()
        when = f"{doc[0] if doc else ''} (`{cls.__name__}`)".replace("``", "`")
        if urn in rows:  # the class and an HTTP-level error share the type
            when = f"{when}; or {rows[urn][2]}"
        rows[urn] = (urn, cls.status, when)
    typed = {status for _, status, _ in rows.values()}
    for status in sorted({s for e in endpoints() for s in e.errors} - typed):
        rows[f"about:blank ({status})"] = ("about:blank", status, "no type of its own yet")
    return "\n".join(
        [
            "## Problem types",
            "",
            "The `type` of every problem detail the server answers: one per error class of "
            "disgorge (`urn:disgorge:problem:<class>`), and one per status for the errors that "
            "come from HTTP itself.",
            "",
            _table(
                ("type", "status", "when"),
                ((f"`{u}`", s, w) for u, s, w in sorted(rows.values(), key=lambda r: (r[1], r[0]))),
            ),
        ]
    )


def render() -> str:
    """The whole of ``docs/api.md``."""
    guide = GUIDE.replace("<<roles>>", _roles()).replace("<<settings>>", _settings())
    generated = "\n\n".join([_endpoints(), _scopes(), _problems()])
    note = f"<!-- generated by {COMMAND}: edit src/disgorge/api/docs.py, not this file -->"
    return f"{note}\n\n{guide}\n{generated}\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m disgorge.api.docs", description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help=f"write {PAGE} (run from the checkout's root)")
    args = parser.parse_args(argv)
    text = render()
    if not args.write:
        sys.stdout.write(text)
        return 0
    if not PAGE.parent.is_dir():
        parser.error(f"no {PAGE.parent}/ here: run from the checkout's root")
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
