"""A typed Python client of a disgorge server's HTTP API (``disgorge serve``, docs/api.md).

::

    from disgorge.client import Client

    with Client("https://disgorge.example.org", token) as api:
        print(api.status()["assets"])
        request = api.erase("subject", "Ada_Lovelace", reason="GDPR Art. 17 request 123")
        done = api.wait_erasure(request["id"], timeout=600)
        for row in api.iter_erasures(state="completed"):
            ...

One method per endpoint, named as :class:`disgorge.Workspace` names the same operation;
the results are the services' own typed dicts (those the server's OpenAPI document
declares: the client imports their types only, never the server). Lists are iterators
(``iter_...``) that fetch page after page, so a caller never handles offsets. Long work
answers at once: :meth:`Client.wait_erasure` and :meth:`Client.wait_job` poll until it
has got somewhere. Any other endpoint: :meth:`Client.request`.

Every error answer raises an :class:`ApiError` carrying the problem details (``status``,
``type``, ``detail``); 401, 403, 404 and 422 raise subclasses that are disgorge's own
:class:`~disgorge.errors.Unauthenticated`, :class:`~disgorge.errors.Forbidden`,
:class:`~disgorge.errors.NotFound` and :class:`~disgorge.errors.InvalidInput` as well, so
code written against a :class:`~disgorge.Workspace` catches them unchanged. A server
that cannot be reached raises :class:`ApiError` with ``status`` 0.

The token is sent in the ``Authorization`` header and nowhere else: not in ``repr``, a
URL or a message. Over ``http://`` to a host other than this machine it would travel in
clear: the client warns (:class:`TokenInClearWarning`); use https.
"""

from .access import AccessCalls
from .audit import AuditCalls
from .base import (
    ApiError,
    ApiForbidden,
    ApiInvalidInput,
    ApiNotFound,
    ApiUnauthenticated,
    TokenInClearWarning,
    WaitTimedOut,
    sends_token_in_clear,
)
from .catalog import CatalogCalls
from .erasures import MOVING_STATES, ErasureCalls
from .sharing import SharingCalls

__all__ = [
    "MOVING_STATES",
    "ApiError",
    "ApiForbidden",
    "ApiInvalidInput",
    "ApiNotFound",
    "ApiUnauthenticated",
    "Client",
    "TokenInClearWarning",
    "WaitTimedOut",
    "sends_token_in_clear",
]


class Client(AccessCalls, ErasureCalls, CatalogCalls, AuditCalls, SharingCalls):
    """A disgorge server at ``base_url`` (``https://HOST[:PORT][/PATH]``), called with the
    bearer ``token``; see :class:`~disgorge.client.base.Transport` for ``timeout``,
    ``verify``, ``retries`` and ``page_size``. Use it as a context manager, or call
    :meth:`close`."""
