"""Training for every task: ``train(TrainConfig(...))`` (see ``edgeres.train.run``); QAT reuses the pieces."""

from edgeres.train.config import TrainConfig
from edgeres.train.run import build_model, train

__all__ = ["TrainConfig", "build_model", "train"]
