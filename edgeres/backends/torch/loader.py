"""Loads an edgeres checkpoint as an eval-mode torch module."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class ModelLoader:
    """Callable returning the checkpoint's model in eval mode (``threads`` sets torch's intra-op threads)."""

    checkpoint: Path
    threads: int | None = None

    def __call__(self):
        from edgeres.errors import require
        from edgeres.models.checkpoint import load_checkpoint

        torch = require("torch", "desktop")
        if self.threads:
            torch.set_num_threads(self.threads)
        return load_checkpoint(self.checkpoint).build_model()
