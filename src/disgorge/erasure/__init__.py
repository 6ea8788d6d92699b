"""Erasure: plan, run, verify and certify the removal of personal data and all derived from it.

Callers use :mod:`disgorge.erasure.service` (the Workspace's erasure methods are one-line
calls into it). Below it, one job per module: :mod:`.plan` (the blast radius, from the
lineage), :mod:`.requests` (create, approve, cancel), :mod:`.runner` and :mod:`.journal`
(run the steps in order, resumable after a crash), :mod:`.steps` (the steps in order, and
the fault-injection hook tests and benchmarks use), :mod:`.samples`, :mod:`.verifier` and
:mod:`.forensics` (what is looked for afterwards, and the scan), :mod:`.certify` and
:mod:`.certificate` (the signed certificate), :mod:`.views` (what a request shows).
"""

from .forensics import Hit, scan_tree

__all__ = ["Hit", "scan_tree"]
