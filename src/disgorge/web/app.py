"""The UI's router: every page module's routes under ``/ui``, none in the OpenAPI document.

``disgorge.api.app.create_app`` includes :data:`router`. Its routes are not rows of the
API's route table (:mod:`disgorge.api.table`): they answer HTML to a browser with a
session cookie, not JSON to a bearer token; ``tests/test_api_authz.py`` leaves out the
paths :func:`disgorge.web.is_ui_path` names, and ``tests/test_web.py`` checks the UI's
own rules (login, CSRF, scopes).
"""

from __future__ import annotations

from fastapi import APIRouter

from . import UI_PREFIX
from .pages import audit, cases, catalog, erasures, holds, lineage, login, overview, subjects, violations

__all__ = ["router"]

router = APIRouter(prefix=UI_PREFIX, include_in_schema=False)
for _module in (login, overview, cases, subjects, erasures, holds, lineage, violations, catalog, audit):
    router.include_router(_module.router)
