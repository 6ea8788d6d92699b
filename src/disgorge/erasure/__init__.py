"""Erasure: for now the forensic scanner; planner, executor and certificates follow."""

from .forensics import Hit, scan_tree

__all__ = ["Hit", "scan_tree"]
