"""Hash-chained, append-only audit log."""

from .log import GENESIS, ChainReport, append, append_many, event_hash, iter_events, verify_chain

__all__ = ["GENESIS", "ChainReport", "append", "append_many", "event_hash", "iter_events", "verify_chain"]
