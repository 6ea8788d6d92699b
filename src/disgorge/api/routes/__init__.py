"""The API's resources, one module each; :data:`RESOURCES` is the order the app mounts them."""

from . import admin, erasures, inbox, meta, status

__all__ = ["RESOURCES"]

RESOURCES = [status.resource, admin.resource, erasures.resource, inbox.resource, meta.resource]
