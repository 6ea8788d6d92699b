"""The purposes and decisions consent is given for.

Purposes use the C2PA/CAWG training-and-mining vocabulary (``cawg.ai_training`` and its
siblings, written here without the prefix) plus two that face data needs:
``biometric_processing`` (GDPR Art. 9, BIPA) and ``third_party_sharing``.
"""

from __future__ import annotations

from enum import StrEnum

from ..errors import InvalidInput

__all__ = ["Decision", "Purpose", "parse_decision", "parse_purpose"]


class Purpose(StrEnum):
    AI_TRAINING = "ai_training"
    AI_GENERATIVE_TRAINING = "ai_generative_training"
    AI_INFERENCE = "ai_inference"
    DATA_MINING = "data_mining"
    BIOMETRIC_PROCESSING = "biometric_processing"
    THIRD_PARTY_SHARING = "third_party_sharing"


class Decision(StrEnum):
    GRANTED = "granted"
    DENIED = "denied"
    REVOKED = "revoked"
    #: allowed only under conditions disgorge cannot check: counts as not allowed
    CONSTRAINED = "constrained"


def parse_purpose(value: str, *, where: str = "purpose") -> Purpose:
    text = value.strip().lower().removeprefix("cawg.")
    try:
        return Purpose(text)
    except ValueError:
        raise InvalidInput(
            f"{where}: unknown purpose {value!r}; expected one of {', '.join(p.value for p in Purpose)}"
        ) from None


def parse_decision(value: str, *, where: str = "decision") -> Decision:
    text = value.strip().lower()
    try:
        return Decision(text)
    except ValueError:
        raise InvalidInput(
            f"{where}: unknown decision {value!r}; expected one of {', '.join(d.value for d in Decision)}"
        ) from None
