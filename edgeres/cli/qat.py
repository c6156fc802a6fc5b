"""``edgeres qat``: quantization-aware fine-tuning from a calibration."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeres.cli.model_source import model_options


@model_options
def qat(
    model: Path = typer.Option(None, "--model", help="FP32 checkpoint or .pth state dict [default: the workspace's "
                               "model]."),
    data: Path = typer.Option(
        ..., "--data", help="Training data (the model's classes): DIR/train, DIR/val (ImageFolder; COCO/YOLO for a "
        "detector)."
    ),
    epochs: int = typer.Option(2, "--epochs", min=1),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate (SGD, cosine); small: this is fine-tuning."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    calib: Path = typer.Option(None, "--calib", help="Start from this calibration folder [default: calibrate]."),
    method: str = typer.Option("entropy", "--method", help="Calibration method when none is given."),
    out: Path = typer.Option(Path("runs/qat"), "--out"),
    max_steps: int = typer.Option(None, "--max-steps", min=1, help="Cap the steps per epoch."),
    seed: int = typer.Option(0, "--seed"),
    force: bool = typer.Option(False, "--force"),
    quiet: bool = typer.Option(False, "--quiet"),
    request=None,
) -> None:
    """Fine-tune with fake quantization; then: edgeres build --precision int8 --qat OUT/best.safetensors."""
    from edgeres.cli.console import make_console
    from edgeres.cli.model_source import resolve_for_command
    from edgeres.quant.qat import QatConfig
    from edgeres.quant.qat import qat as run_qat

    resolved = resolve_for_command(request, needs_torch="qat (fine-tuning)")
    summary = run_qat(QatConfig(model=resolved.path, data=data, out=out, epochs=epochs, lr=lr,
                                batch_size=batch_size, calib=calib, method=method, max_steps_per_epoch=max_steps,
                                seed=seed, force=force, progress=not quiet))
    if summary:
        from edgeres.tasks import get_task, task_names

        # the summary names the task's primary metric (start_val_<key>_int8); its task says how to print it
        key = next(k for k in summary if k.startswith("start_val_") and k.endswith("_int8"))[10:-5]
        metric = next(get_task(t).metric for t in task_names() if get_task(t).metric.key == key)
        change = (f"{metric.label} {metric.fmt(summary[f'start_val_{key}_int8'])} -> "
                  f"{metric.fmt(summary[f'best_val_{key}_int8'])}")
        make_console(stderr=True).print(
            f"QAT: fake-quantized val {change} -> {out / 'best.safetensors'}; "
            f"build it with: edgeres build --precision int8 --qat {out / 'best.safetensors'}"
        )
