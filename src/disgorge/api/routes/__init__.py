"""The API's resources, one module each, each with a ``resource`` (:class:`..table.Resource`).

:data:`RESOURCES` is every module's resource, found by walking this package, so adding a
module adds its routes (and its rows of the route table, and of docs/api.md).
"""

import importlib
import pkgutil

from ..table import Resource

__all__ = ["RESOURCES"]


def _discover() -> list[Resource]:
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        resource = getattr(module, "resource", None)
        if isinstance(resource, Resource):
            found.append(resource)
    return found


RESOURCES: list[Resource] = _discover()
