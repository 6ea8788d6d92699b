"""The web UI: server-rendered pages for the privacy office, served by ``disgorge serve``
at ``/ui/`` in the same app as the API, with the same principals, roles and services.

:mod:`.app` has the router the API's app includes; :mod:`.framework` the page route
(session login, CSRF, scopes), the templates and the static files; :mod:`.pages` one
module per group of pages. See docs/ui.md.
"""

__all__ = ["UI_PREFIX", "is_ui_path"]

#: every path of the UI starts with it; the API's route table (docs/api.md, the OpenAPI
#: document, tests/test_api_authz.py) leaves these paths out
UI_PREFIX = "/ui"


def is_ui_path(path: str) -> bool:
    """Whether a route's path belongs to the web UI (not to the API's route table)."""
    return path == UI_PREFIX or path.startswith(UI_PREFIX + "/")
