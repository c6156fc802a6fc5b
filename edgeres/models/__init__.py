"""Model registry and checkpoints."""

from edgeres.models.registry import get_model, list_models, register_model

__all__ = ["get_model", "list_models", "register_model"]
