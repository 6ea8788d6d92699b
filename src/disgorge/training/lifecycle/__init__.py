"""A model's life as services: trained through the gate, used, audited, unlearned, retired.

- :mod:`.train`: training, prediction, the registry's views, retiring;
- :mod:`.unlearn`: exact unlearning and finishing one cut short;
- :mod:`.verify`: has a model forgotten (membership inference, retrain-from-scratch proof);
- :mod:`.store`: sealed checkpoints, the embedding loader, the biometric consent check.

Each function takes the :class:`~disgorge.context.Context` first, with the parameters of
the :class:`~disgorge.Workspace` method of the same name.
"""

from .store import checkpoints, embedding_loader
from .train import (
    FaceGuess,
    ModelView,
    Prediction,
    RetiredModel,
    TrainedModel,
    model,
    models,
    predict,
    retire_model,
    train_model,
)
from .unlearn import Unlearned, finish_unlearning, unlearn_model
from .verify import ModelAudit, membership_audit, model_audit

__all__ = [
    "FaceGuess",
    "ModelAudit",
    "ModelView",
    "Prediction",
    "RetiredModel",
    "TrainedModel",
    "Unlearned",
    "checkpoints",
    "embedding_loader",
    "finish_unlearning",
    "membership_audit",
    "model",
    "model_audit",
    "models",
    "predict",
    "retire_model",
    "train_model",
    "unlearn_model",
]
