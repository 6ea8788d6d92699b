"""Sharing: recipients and senders, export bundles, and erasure that reaches recipients.

* :mod:`.documents` signs and checks the JSON documents two workspaces exchange;
* :mod:`.peers` keeps the other organisations (their names, keys, endpoints);
* :mod:`.bundle` writes and reads signed export bundles;
* :mod:`.share` sends a dataset version to a recipient and receives a bundle;
* :mod:`.outbox` carries a sender's erasure requests to its recipients;
* :mod:`.inbox` answers the requests a recipient receives;
* :mod:`.server` serves the inbox over HTTP (extra ``server``).
"""

from .documents import REQUEST_TYPE, RESPONSE_TYPE, sign_document, verify_document

__all__ = ["REQUEST_TYPE", "RESPONSE_TYPE", "sign_document", "verify_document"]
