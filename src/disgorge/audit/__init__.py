"""Hash-chained, append-only audit log."""

from .log import GENESIS, ChainReport, append, event_hash, iter_events, verify_chain

__all__ = ["GENESIS", "ChainReport", "append", "event_hash", "iter_events", "verify_chain"]
