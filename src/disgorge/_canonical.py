"""The one canonical JSON of signed and hashed documents.

Certificates, signed documents (bundles, requests, answers), tree heads and audit events
are hashed or signed over these bytes: keys sorted, no spaces, UTF-8 without escaping. A
verifier in another language must produce the same bytes (docs/certificate.md).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["canonical"]


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
