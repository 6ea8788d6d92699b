"""Sharing: recipients and senders, export bundles, and erasure that reaches recipients.

* :mod:`.documents` signs and checks the JSON documents two workspaces exchange;
* :mod:`.peers` keeps the other organisations (their names, keys, endpoints);
* :mod:`.bundle` writes and reads signed export bundles (:mod:`.metadata` strips the
  photos' location);
* :mod:`.share` sends a dataset version to a recipient; :mod:`.receive` takes in a bundle
  or records a legacy transfer; :mod:`.transfers` lists both directions;
* :mod:`.provenance` says which photos a sender's request may erase;
* :mod:`.outbox` carries a sender's erasure requests to its recipients, and
  :mod:`.query` signs the state queries it polls them with;
* :mod:`.inbox` answers the requests a recipient receives;
* :mod:`.server` serves the inbox over HTTP (extra ``server``), with :mod:`.limits`
  (what it takes on at once), :mod:`.worker` (the thread that runs the requests),
  :mod:`.asgi` (uvicorn's settings, the access log) and :mod:`.openapi` (its schemas).

Every function here takes a :class:`~disgorge.context.Context`, never the workspace;
only :mod:`.server`, an interface layer like the CLI, opens a workspace.
"""

from .documents import REQUEST_TYPE, RESPONSE_TYPE, sign_document, verify_document

__all__ = ["REQUEST_TYPE", "RESPONSE_TYPE", "sign_document", "verify_document"]
