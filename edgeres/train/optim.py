"""Optimizer, per-step schedule, autocast (bf16 on CPUs that have it, fp16 on CUDA) and the step itself."""

from __future__ import annotations

from edgeres.errors import EdgeresError, require
from edgeres.train.config import OPTIMIZERS, SCHEDULES, TrainConfig


def make_optimizer(model, cfg: TrainConfig):
    torch = require("torch", "desktop")
    params = [p for p in model.parameters() if p.requires_grad]
    lr = cfg.learning_rate()
    name = cfg.optimizer_name()
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    raise EdgeresError(f"unknown optimizer '{name}'; accepted: {', '.join(OPTIMIZERS)}")


def make_scheduler(optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """A per-step schedule over the whole run."""
    torch = require("torch", "desktop")
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.learning_rate(), total_steps=total, pct_start=0.15
        )
    raise EdgeresError(f"unknown schedule '{cfg.schedule}'; accepted: {', '.join(SCHEDULES)}")


def autocast_dtype(device: str, requested: bool | None):
    """The autocast dtype for training: bf16 on CPUs with native bf16 (AMX, AVX512-BF16), fp16 on CUDA, else None."""
    import torch

    if requested is False:
        return None
    if device.startswith("cuda"):
        return torch.float16
    native = bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)())
    if requested and not native:
        raise EdgeresError("--amp needs a CUDA GPU or a CPU with native bf16 (AMX or AVX512-BF16); "
                           "this one has neither")
    return torch.bfloat16 if native else None


def autocast_forward(model, device: str, amp_dtype):
    """``x -> float32 outputs``: channels-last input (2-3x faster convolutions on CPUs), the forward pass under
    autocast when ``amp_dtype`` is set; losses are then computed in float32."""
    import torch

    device_type = "cuda" if str(device).startswith("cuda") else "cpu"

    def forward(x):
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            return model(x).float()

    return forward


def optimizer_step(loss, optimizer, scheduler, scaler=None) -> None:
    """Backward, step (through the GradScaler for float16) and advance the per-step schedule."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    if scheduler is not None:
        scheduler.step()


