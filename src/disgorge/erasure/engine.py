"""Former home of the erasure engine, now split by job (see :mod:`disgorge.erasure.service`).

Only the names other modules imported from here stay, re-exported, until they import them
from their new homes: ``STEPS`` (:mod:`.steps`), ``samples_folder`` (:mod:`.samples`),
``active_models_using`` (:mod:`.verifier`).
"""

from __future__ import annotations

from .samples import samples_folder
from .steps import STEPS
from .verifier import active_models_using

__all__ = ["STEPS", "active_models_using", "samples_folder"]
