"""One training epoch and one evaluation, for every task: the task supplies the loss and the scorer.

QAT calls ``train_one_epoch`` unchanged with a fake-quantized model.
"""

from __future__ import annotations

import time

from edgeres.tasks.scoring import score, torch_predict_fn
from edgeres.train.optim import autocast_forward, optimizer_step


def freeze_backbone(model, task) -> None:
    """--freeze-backbone: the task says which parameters stay fixed (its head trains)."""
    for name, p in model.named_parameters():
        p.requires_grad = not task.is_frozen_parameter(name)


def train_one_epoch(model, loader, loss_fn, optimizer, scheduler, device: str, bar, bar_task, scaler=None,
                    max_steps: int | None = None, amp_dtype=None) -> dict:
    """One pass over ``loader``, whose batches are ``(x, *targets)``; ``loss_fn(outputs, targets)`` returns
    ``(loss, extras)`` where ``extras`` may count ``correct`` predictions (shown as training accuracy).

    Returns:
        Mean loss, images seen and images per second on this rank, and training accuracy (%) when counted.
    """
    import torch

    model.train()
    for module in model.modules():  # a frozen BatchNorm keeps its running statistics too (--freeze-backbone)
        params = list(module.parameters(recurse=False))
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and params and not any(
            p.requires_grad for p in params
        ):
            module.eval()
    if scaler is not None and amp_dtype is None:
        amp_dtype = torch.float16
    forward = autocast_forward(model, device, amp_dtype)
    seen, correct, counted, loss_sum, start = 0, 0, False, 0.0, time.perf_counter()
    for step, (x, *targets) in enumerate(loader):
        if max_steps is not None and step >= max_steps:
            break
        x = x.to(device, non_blocking=True)
        targets = [t.to(device, non_blocking=True) for t in targets]
        loss, extras = loss_fn(forward(x), targets)
        optimizer_step(loss, optimizer, scheduler, scaler)
        n = x.shape[0]
        seen += n
        loss_sum += float(loss.detach()) * n
        if "correct" in extras:
            counted, correct = True, correct + extras["correct"]
        rate = seen / (time.perf_counter() - start)
        bar.update(bar_task, advance=n, loss=loss_sum / seen, acc=100.0 * correct / seen, rate=rate)
    elapsed = time.perf_counter() - start
    stats = {"loss": loss_sum / max(seen, 1), "images": seen,
             "images_per_s": seen / elapsed if elapsed > 0 else 0.0}
    if counted:
        stats["train_top1"] = 100.0 * correct / max(seen, 1)
    return stats


def evaluate_model(task, model, data, device: str, batch_size: int = 64) -> dict:
    """The task's metrics of a torch model on an EvalSet; the model is left in train mode."""
    metrics = score(task, torch_predict_fn(model, device), data, batch_size)
    model.train()
    return metrics
