"""``edgeres train``: parse options, build a TrainConfig, call the library."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer


class Optimizer(str, Enum):
    sgd = "sgd"
    adamw = "adamw"


class Schedule(str, Enum):
    cosine = "cosine"
    onecycle = "onecycle"


def train(
    data: Path = typer.Option(
        ..., "--data", help="classify: ImageFolder DIR/train/<class>, DIR/val/<class> or DIR/<class>; "
        "detect: DIR/train and DIR/val, each COCO JSON or YOLO images/ + labels/."
    ),
    task: str = typer.Option("classify", "--task", help="classify, detect (CenterNet on the ResNet), or another "
                             "task in edgeres.tasks."),
    out: Path = typer.Option(Path("runs/train"), "--out", help="Run folder for best/last checkpoints."),
    arch: str = typer.Option("resnet18", "--arch", help="resnet18, resnet34, resnet50, resnet101, resnet152."),
    epochs: int = typer.Option(10, "--epochs", min=1),
    img_size: int = typer.Option(
        None, "--img-size", min=16, help="Square network input size [default: a detector's data's own image size "
        "when all images share one (a multiple of 32), else 224]."
    ),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Per process (per rank under torchrun)."),
    optimizer: Optimizer = typer.Option(None, "--optimizer", help="[default: sgd to classify, adamw to detect]"),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate [default: 0.05 SGD, 0.001 AdamW]."),
    weight_decay: float = typer.Option(5e-4, "--weight-decay"),
    schedule: Schedule = typer.Option(Schedule.onecycle, "--schedule"),
    label_smoothing: float = typer.Option(0.1, "--label-smoothing", min=0.0, max=0.5),
    hflip: bool = typer.Option(
        False, "--hflip/--no-hflip", help="Random horizontal flips (off: digits are not symmetric)."
    ),
    weights: str = typer.Option(None, "--weights", help="Start from 'imagenet' or a local torchvision .pth file."),
    init_from: Path = typer.Option(None, "--init-from", help="Start from an edgeres checkpoint (transfer learning)."),
    freeze_backbone: bool = typer.Option(False, "--freeze-backbone", help="Train only the classifier head."),
    resume: Path = typer.Option(None, "--resume", help="Continue the run in this folder."),
    val_split: float = typer.Option(0.2, "--val-split", help="Held-out fraction when DATA has no train/val."),
    seed: int = typer.Option(0, "--seed"),
    workers: int = typer.Option(0, "--workers", min=0, help="DataLoader worker processes."),
    max_steps: int = typer.Option(None, "--max-steps", min=1, help="Cap the steps per epoch (smoke runs)."),
    amp: bool = typer.Option(
        None, "--amp/--no-amp", help="Mixed precision: bf16 on CPUs with AMX/AVX512-BF16, fp16 on CUDA "
        "[default: on where supported]"
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing run folder."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Train a ResNet classifier or detector; runs unchanged under torchrun --nproc_per_node N."""
    from edgeres.cli.console import make_console
    from edgeres.tasks import get_task
    from edgeres.train import TrainConfig
    from edgeres.train import train as run_training
    from edgeres.workspace import record_trained_model

    cfg = TrainConfig(
        data=data, out=out, arch=arch, task=get_task(task).name,
        epochs=epochs, img_size=img_size, batch_size=batch_size,
        optimizer=optimizer.value if optimizer else None, lr=lr,
        weight_decay=weight_decay, schedule=schedule.value,
        label_smoothing=label_smoothing, hflip=hflip, weights=weights, init_from=init_from,
        freeze_backbone=freeze_backbone, resume=resume, val_split=val_split, seed=seed, workers=workers,
        max_steps_per_epoch=max_steps, amp=amp, force=force, progress=not quiet,
    )
    summary = run_training(cfg)
    if summary.get("epochs"):
        metric = get_task(task).metric
        best = out / "best.safetensors"
        make_console(stderr=True).print(
            f"best val {metric.label} {metric.fmt(summary[f'best_val_{metric.key}'])} in "
            f"{summary['train_seconds']:.0f} s -> {best}"
        )
        record_trained_model(best)
