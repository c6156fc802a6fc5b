"""``TrainConfig``: everything ``edgeres train`` needs; the CLI only fills it in."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgeres.config import PreprocessConfig

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "onecycle")
DEFAULT_IMG_SIZE = 224


@dataclass
class TrainConfig:
    """Everything ``edgeres train`` needs; the CLI only fills this in."""

    data: Path
    out: Path
    arch: str = "resnet18"
    task: str = "classify"  # a name in edgeres.tasks.TASKS
    epochs: int = 10
    img_size: int | None = None  # None: the task's default for the data (detect: the images' size), else 224
    batch_size: int = 64
    optimizer: str | None = None  # None: the task's default (classify: sgd, detect: adamw)
    lr: float | None = None  # default per optimizer: 0.05 (SGD), 1e-3 (AdamW)
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    label_smoothing: float = 0.1
    hflip: bool = False  # off by default: digits and text are not mirror-symmetric
    weights: str | None = None  # None, "imagenet" or a local torchvision .pth
    init_from: Path | None = None  # transfer learning from an edgeres checkpoint
    freeze_backbone: bool = False
    resume: Path | None = None
    val_split: float = 0.2
    seed: int = 0
    workers: int = 0
    max_steps_per_epoch: int | None = None
    amp: bool | None = None  # mixed precision (bf16 on CPUs with native bf16, fp16 on CUDA); None = auto
    force: bool = False
    progress: bool = True
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    extra: dict = field(default_factory=dict)

    def preprocess(self) -> PreprocessConfig:
        size = self.img_size or DEFAULT_IMG_SIZE
        return PreprocessConfig(input_size=(size, size), mean=self.mean, std=self.std)

    def optimizer_name(self) -> str:
        """``optimizer``, or the task's default when not given."""
        from edgeres.tasks import get_task

        return self.optimizer or get_task(self.task).default_optimizer

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (0.05 if self.optimizer_name() == "sgd" else 1e-3)


