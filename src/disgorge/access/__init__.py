"""Who may call the API, and what each role may do.

- :mod:`.roles`: the scopes, the roles that bundle them, and :class:`Principal`, the
  authenticated caller a :class:`~disgorge.context.Context` acts for;
- :mod:`.principals`: users and service principals, bearer tokens (stored as SHA-256
  only) and authentication;
- :mod:`.settings`: the workspace's settings (the two-person rule's numbers).

The anchor is ethyca/fides's ``oauth/roles.py`` (a role is a set of scopes; every endpoint
declares the scope it needs); disgorge's API route table (:mod:`disgorge.api.table`) is
the single list of endpoints and scopes that ``docs/api.md`` is generated from.
"""

from .roles import ROLES, SCOPES, Principal, scopes_of

__all__ = ["ROLES", "SCOPES", "Principal", "scopes_of"]
