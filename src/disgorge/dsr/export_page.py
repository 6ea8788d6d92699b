"""The page of an access export (:mod:`.export`): one HTML file a person reads offline.

Plain HTML: no script, no external resource, inline CSS; every value escaped with
:func:`html.escape`; photos are relative links to their files in the zip.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["render_page"]

_CSS = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%;font-size:.9rem}
td,th{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}img{max-width:8rem;max-height:8rem}
.note{color:#555;font-size:.9rem}code{font-size:.85rem;word-break:break-all}
"""


def _e(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return html.escape(", ".join(str(v) for v in value)) or "-"
    return html.escape(str(value))


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], empty: str) -> str:
    if not rows:
        return f'<p class="note">{html.escape(empty)}</p>'
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _people(n: int) -> str:
    if not n:
        return "only you"
    return f"you and {n} other person" if n == 1 else f"you and {n} other people"


def _photo_row(p: Mapping[str, Any]) -> list[str]:
    if p["file"]:
        link = html.escape(p["file"], quote=True)
        shown = f'<a href="{link}"><img src="{link}" alt="photo {_e(p["sha256"][:12])}"></a>'
    else:
        shown = f'<span class="note">{_e(p["no_file"])}</span>'
    policy = p["policy_at_collection"]
    now = p["policy_now"]
    where = f"{_e(p['source']['name'])} ({_e(p['source']['kind'])})"
    if p["also_held_through"]:
        where += f"; also through {_e(p['also_held_through'])}"
    for r in p["received_from"]:
        where += f"; received from {_e(r['from'])} on {_e(r['at'])}"
    rules = (
        f"at collection: {_e(policy['version'])}, allows {_e(policy['allows'])}"
        if policy
        else "at collection: none in force"
    )
    rules += f"<br>now: {_e(now['version'])}, allows {_e(now['allows'])}" if now else "<br>now: none in force"
    details = (
        f"<code>{_e(p['sha256'])}</code><br>{_e(p['media_type'])}, {_e(p['width'])}x{_e(p['height'])}, "
        f"{_e(p['size'])} bytes; taken {_e(p['captured_at'])}; collected {_e(p['collected_at'])}"
    )
    if p["origin"]:
        details += f"<br>file name when collected: {_e(p['origin'])}"
    faces = "not analysed" if p["faces"] is None else f"{_e(p['faces'])} face(s) found"
    role = "you provided it" if p["role"] == "owner" else "you appear in it"
    return [
        shown,
        details,
        f"{role}; shows {_e(_people(p['other_people']))}; {faces}; {_e(p['state'])}",
        where,
        rules,
    ]


def render_page(body: Mapping[str, Any]) -> str:
    """The export as one HTML page (no script, inline CSS, every value escaped)."""
    subject = body["subject"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>Your data: access export</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Everything we hold about you</h1>",
        f"<p>Prepared {_e(body['generated_at'])} from workspace <code>{_e(body['workspace_id'])}</code>. "
        f"You are recorded under the pseudonym <code>{_e(subject['ref'])}</code> (since "
        f"{_e(subject['since'])}; status {_e(subject['state'])}), never by your name or user id.</p>",
        '<p class="note">The same content, signed, is in <code>export.json</code>; see the end of this '
        "page to check it. Photos that show other people say only how many; who they are is not shown.</p>",
        f"<h2>Your photos ({len(body['photos'])})</h2>",
        _table(
            ["photo", "details", "who is in it", "where it came from", "privacy policy"],
            [_photo_row(p) for p in body["photos"]],
            "We hold no photos of you.",
        ),
        "<h2>Your consent</h2>",
        _table(
            ["purpose", "your decision now"],
            [[_e(k), _e(v)] for k, v in sorted(body["consent"]["now"].items())],
            "No purposes.",
        ),
        _table(
            ["date", "purpose", "decision", "policy version", "for one photo", "evidence held"],
            [
                [
                    _e(c["at"]),
                    _e(c["purpose"]),
                    _e(c["decision"]),
                    _e(c["policy_version"]),
                    f"<code>{_e(c['photo'][:16])}</code>" if c["photo"] else "all your photos",
                    _e(c["evidence_held"]),
                ]
                for c in body["consent"]["history"]
            ],
            "No consent decision of yours is on record.",
        ),
        "<h2>Datasets your photos are in</h2>",
        _table(
            ["dataset", "version", "purpose", "built", "your photos", "state"],
            [
                [
                    _e(d["name"]),
                    _e(d["version"]),
                    _e(d["purpose"]),
                    _e(d["built_at"]),
                    _e(d["your_photos"]),
                    _e(d["state"]),
                ]
                for d in body["datasets"]
            ],
            "None.",
        ),
        "<h2>Models trained on them</h2>",
        _table(
            ["model", "version", "created", "state"],
            [[_e(m["name"]), _e(m["version"]), _e(m["created_at"]), _e(m["state"])] for m in body["models"]],
            "None.",
        ),
        "<h2>Processing runs that used them</h2>",
        _table(
            ["job", "purpose", "started", "ended", "state"],
            [
                [_e(r["job"]), _e(r["purpose"]), _e(r["started_at"]), _e(r["ended_at"]), _e(r["state"])]
                for r in body["runs"]
            ],
            "None.",
        ),
        "<h2>Other outputs derived from them</h2>",
        _table(
            ["kind", "name", "version", "created", "state"],
            [
                [_e(o["kind"]), _e(o["name"]), _e(o["version"]), _e(o["created_at"]), _e(o["state"])]
                for o in body["other_outputs"]
            ],
            "None.",
        ),
        "<h2>Organisations your photos were sent to or received from</h2>",
        _table(
            ["date", "", "organisation", "purposes", "dataset", "your photos"],
            [
                [
                    _e(t["at"]),
                    _e(t["direction"]),
                    _e(t["organisation"]),
                    _e(t["purposes"]),
                    _e(t["dataset"]),
                    _e(t["your_photos"]),
                ]
                for t in body["transfers"]
            ],
            "None.",
        ),
        "<h2>Erasures concerning you</h2>",
        _table(
            ["requested", "of", "reason", "state", "last change", "certificate"],
            [
                [
                    _e(x["requested_at"]),
                    _e(x["of"]),
                    _e(x["reason"]),
                    _e(x["state"]),
                    _e(x["updated_at"]),
                    _e(x["certificate"]),
                ]
                for x in body["erasures"]
            ],
            "None.",
        ),
        "<h2>Checking this export</h2>",
        "<p>"
        "<code>export.json</code> is signed (Ed25519, over its body as canonical JSON: keys sorted, no "
        "spaces, UTF-8) with the key whose public half is "
        f"<code>{_e(body['public_key'])}</code>. Ask us for our public key by another channel, and "
        "compare. Each photo's file name is its SHA-256.</p>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
