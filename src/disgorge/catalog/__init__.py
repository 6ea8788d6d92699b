"""The catalog: SQLAlchemy models, engine set-up and Alembic migrations."""

from .db import (
    SCHEMA_HEAD,
    current_revision,
    head_revision,
    make_engine,
    make_sessionmaker,
    purge_free_space,
    upgrade,
)
from .models import (
    Asset,
    AssetSubject,
    AuditEvent,
    AuditHead,
    Base,
    ConsentRecord,
    Meta,
    PolicyVersion,
    Source,
    Subject,
)

__all__ = [
    "SCHEMA_HEAD",
    "Asset",
    "AssetSubject",
    "AuditEvent",
    "AuditHead",
    "Base",
    "ConsentRecord",
    "Meta",
    "PolicyVersion",
    "Source",
    "Subject",
    "current_revision",
    "head_revision",
    "make_engine",
    "make_sessionmaker",
    "purge_free_space",
    "upgrade",
]
