"""Training as small functions (load data, build model, train one epoch, evaluate) that QAT reuses.

Runs unchanged under ``torchrun --nproc_per_node N``: DistributedDataParallel with a distributed
sampler (gloo on CPU, NCCL on GPU); only rank 0 evaluates and writes files.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgeres.config import PreprocessConfig
from edgeres.data.imagefolder import ImageList, load_splits
from edgeres.errors import EdgeresError, require
from edgeres.evaluate import EvalImages, classification_metrics, predict_logits, torch_predict_fn
from edgeres.models.checkpoint import load_checkpoint, load_weights, require_matching_classes, save_checkpoint
from edgeres.progress import progress_bar

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "onecycle")


@dataclass
class TrainConfig:
    """Everything ``edgeres train`` needs; the CLI only fills this in."""

    data: Path
    out: Path
    arch: str = "resnet18"
    task: str = "classify"  # or "detect": a CenterNet detector on the ResNet (see edgeres.train_detect)
    epochs: int = 10
    img_size: int = 224
    batch_size: int = 64
    optimizer: str = "sgd"
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
        return PreprocessConfig(input_size=(self.img_size, self.img_size), mean=self.mean, std=self.std)

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (0.05 if self.optimizer == "sgd" else 1e-3)


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed() -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op for a plain run)."""
    torch = require("torch", "desktop")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world == 1:
        return DistInfo(device="cuda" if cuda else "cpu")
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(local)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=f"cuda:{local}" if cuda else "cpu")


class TrainImages:
    """A torch Dataset over an ImageList with standard augmentation; images decoded once and cached."""

    def __init__(self, images: ImageList, cfg: PreprocessConfig, hflip: bool = False):
        torch = require("torch", "desktop")
        v2 = require("torchvision.transforms.v2", "desktop")
        self.labels = images.labels
        # Decoded RGB uint8 CHW tensors; the bundled sets are small. For big folders decode lazily.
        self._paths = images.paths
        self._cache: list | None = None
        if len(images) <= 50_000:
            self._cache = [self._to_tensor(img) for img in images.load_images()]
        size = cfg.input_size
        steps = [
            v2.RandomResizedCrop(size, scale=(0.7, 1.0), ratio=(0.8, 1.25), antialias=True),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3),
        ]
        if hflip:
            steps.append(v2.RandomHorizontalFlip())
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(cfg.mean), list(cfg.std))]
        self.transform = v2.Compose(steps)

    @staticmethod
    def _to_tensor(bgr: np.ndarray):
        import torch

        return torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1].transpose(2, 0, 1)))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from edgeres.processing import read_image

        img = self._cache[i] if self._cache is not None else self._to_tensor(read_image(self._paths[i]))
        return self.transform(img), int(self.labels[i])


def make_train_loader(dataset, batch_size: int, dist_info: DistInfo, seed: int, workers: int = 0):
    """A DataLoader that shards across ranks with DistributedSampler when distributed."""
    torch = require("torch", "desktop")
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

    if dist_info.distributed:
        sampler = DistributedSampler(
            dataset, num_replicas=dist_info.world_size, rank=dist_info.rank, shuffle=True, seed=seed, drop_last=True
        )
    else:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=True,
        pin_memory=dist_info.device.startswith("cuda"), persistent_workers=workers > 0,
    )


def build_model(cfg: TrainConfig, class_names: list[str]):
    """The network to train: random, ImageNet-initialized, or transferred from an edgeres checkpoint."""
    from edgeres.models.registry import check_arch, get_model

    check_arch(cfg.arch)
    if cfg.init_from and cfg.weights:
        raise EdgeresError("--init-from and --weights both set the starting weights; give one of them")
    model = get_model(cfg.arch, num_classes=len(class_names), weights=cfg.weights)
    if cfg.init_from:
        ckpt = load_checkpoint(cfg.init_from)
        if ckpt.config.arch != cfg.arch:
            raise EdgeresError(f"--init-from {cfg.init_from} is a {ckpt.config.arch}, not a {cfg.arch}")
        state = ckpt.state_dict
        if ckpt.config.class_names != class_names:  # new classes: keep the backbone, new head
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            state.update({k: v for k, v in model.state_dict().items() if k.startswith("fc.")})
        load_weights(model, state, cfg.arch, source=str(cfg.init_from))
    if cfg.freeze_backbone:
        for name, p in model.named_parameters():
            p.requires_grad = name.startswith("fc.")
    return model


def make_optimizer(model, cfg: TrainConfig):
    torch = require("torch", "desktop")
    params = [p for p in model.parameters() if p.requires_grad]
    lr = cfg.learning_rate()
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=True)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    raise EdgeresError(f"unknown optimizer '{cfg.optimizer}'; accepted: {', '.join(OPTIMIZERS)}")


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


def train_one_epoch(model, loader, criterion, optimizer, scheduler, device: str, bar, task,
                    scaler=None, max_steps: int | None = None, amp_dtype=None) -> dict:
    """One pass over ``loader``. QAT calls this unchanged with a fake-quantized model.

    Returns:
        Mean loss, training accuracy (%), images seen and images per second on this rank.
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
    seen, correct, loss_sum, start = 0, 0, 0.0, time.perf_counter()
    for step, (x, y) in enumerate(loader):
        if max_steps is not None and step >= max_steps:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = forward(x)
        loss = criterion(logits, y)
        optimizer_step(loss, optimizer, scheduler, scaler)
        n = y.shape[0]
        seen += n
        loss_sum += float(loss.detach()) * n
        correct += int((logits.detach().argmax(1) == y).sum())
        rate = seen / (time.perf_counter() - start)
        bar.update(task, advance=n, loss=loss_sum / seen, acc=100.0 * correct / seen, rate=rate)
    elapsed = time.perf_counter() - start
    return {
        "loss": loss_sum / max(seen, 1),
        "train_top1": 100.0 * correct / max(seen, 1),
        "images": seen,
        "images_per_s": seen / elapsed if elapsed > 0 else 0.0,
    }


def evaluate_model(model, val: EvalImages, device: str, batch_size: int = 256) -> dict:
    """Classification metrics of a torch model on pre-processed validation images."""
    logits = predict_logits(torch_predict_fn(model, device), val, batch_size=batch_size)
    return classification_metrics(val.labels, logits, val.images.class_names)


@dataclass
class TrainingRun:
    """What every training loop starts from: the (device, DDP-wrapped) model, optimizer, per-step schedule,
    where a resumed run left off, and the autocast dtype."""

    model: object
    optimizer: object
    scheduler: object
    steps: int
    start_epoch: int
    best: float
    history: list
    amp_dtype: object


def prepare_run(cfg: TrainConfig, model, loader, model_cfg, dist_info: DistInfo) -> TrainingRun:
    """Optimizer and schedule for ``model``, a resumed run's state, channels-last on the device, DDP when
    distributed (shared by classifier and detector training)."""
    torch = require("torch", "desktop")
    optimizer = make_optimizer(model, cfg)
    steps = len(loader) if cfg.max_steps_per_epoch is None else min(len(loader), cfg.max_steps_per_epoch)
    scheduler = make_scheduler(optimizer, cfg, steps)
    start_epoch, best, history = 0, -1.0, []
    if cfg.resume:
        start_epoch, best, history = _resume(cfg, model, optimizer, scheduler, model_cfg, steps)
    model.to(dist_info.device, memory_format=torch.channels_last)
    amp_dtype = autocast_dtype(dist_info.device, cfg.amp)
    if dist_info.distributed:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[dist_info.local_rank] if dist_info.device != "cpu" else None)
    return TrainingRun(model, optimizer, scheduler, steps, start_epoch, best, history, amp_dtype)


def _check_out_dir(cfg: TrainConfig) -> None:
    from edgeres.fileio import probe_writable

    existing = [p for p in ("best.safetensors", "last.safetensors") if (cfg.out / p).exists()]
    if existing and not (cfg.force or cfg.resume):
        raise EdgeresError(
            f"{cfg.out} already holds a training run ({', '.join(existing)}); pass --force to overwrite "
            "it or --resume to continue it"
        )
    probe_writable(cfg.out, "--out")  # a read-only or full disk is found now, not after the first epoch


def train(cfg: TrainConfig) -> dict:
    """Train a classifier and write ``best``/``last`` checkpoints to ``cfg.out`` (rank 0 only).

    Returns:
        The training summary (also stored in the checkpoints and ``history.json``).
    """
    from edgeres.config import ModelConfig
    from edgeres.models.registry import check_arch

    if cfg.task == "detect":
        from edgeres.train_detect import train_detector

        return train_detector(cfg)
    if cfg.task != "classify":
        raise EdgeresError(f"unknown task '{cfg.task}'; accepted: classify, detect")
    check_arch(cfg.arch)  # before torch loads and any image is decoded: a typo in --arch fails at once
    torch = require("torch", "desktop")
    cfg.out = Path(cfg.out)
    _check_out_dir(cfg)
    dist_info = setup_distributed()
    torch.manual_seed(cfg.seed + dist_info.rank)
    train_list, val_list = load_splits(cfg.data, cfg.val_split, cfg.seed)
    class_names = train_list.class_names
    pre = cfg.preprocess()
    model_cfg = ModelConfig(arch=cfg.arch, class_names=class_names, preprocess=pre)
    train_set = TrainImages(train_list, pre, hflip=cfg.hflip)
    val = EvalImages(val_list, pre) if dist_info.is_main else None
    loader = make_train_loader(train_set, cfg.batch_size, dist_info, cfg.seed, cfg.workers)
    if len(loader) == 0:
        raise EdgeresError(f"{len(train_set)} training images is fewer than one batch of {cfg.batch_size}")

    run = prepare_run(cfg, build_model(cfg, class_names), loader, model_cfg, dist_info)
    model, optimizer, scheduler, steps, amp_dtype = run.model, run.optimizer, run.scheduler, run.steps, run.amp_dtype
    start_epoch, best_top1, history = run.start_epoch, run.best, run.history
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

    summary = {}
    t0 = time.perf_counter()
    extra = "loss {task.fields[loss]:.3f}  acc {task.fields[acc]:.1f}%  {task.fields[rate]:.0f} img/s"
    with progress_bar(enabled=cfg.progress and dist_info.is_main, extra=extra) as bar:
        for epoch in range(start_epoch, cfg.epochs):
            if dist_info.distributed:
                loader.sampler.set_epoch(epoch)
            task = bar.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=steps * cfg.batch_size, loss=math.nan,
                                acc=0.0, rate=0.0)
            stats = train_one_epoch(model, loader, criterion, optimizer, scheduler, dist_info.device, bar, task,
                                    scaler=scaler, max_steps=cfg.max_steps_per_epoch, amp_dtype=amp_dtype)
            if dist_info.is_main:
                metrics = evaluate_model(getattr(model, "module", model), val, dist_info.device)
                stats.update(epoch=epoch + 1, val_top1=metrics["top1"], val_top5=metrics["top5"])
                history.append(stats)
                bar.console.print(
                    f"epoch {epoch + 1}: loss {stats['loss']:.3f}  train {stats['train_top1']:.1f}%  "
                    f"val top-1 {metrics['top1']:.2f}%  ({stats['images_per_s']:.0f} img/s)"
                )
                summary = _summary(cfg, train_list, val_list, history, time.perf_counter() - t0)
                if metrics["top1"] > best_top1:
                    best_top1 = metrics["top1"]
                    best_summary = {**summary, "best_epoch": epoch + 1}
                    save_checkpoint(cfg.out / "best.safetensors", model, model_cfg, best_summary)
                save_checkpoint(cfg.out / "last.safetensors", model, model_cfg, summary)
                _save_state(cfg, epoch + 1, optimizer, scheduler, best_top1, history)
            if dist_info.distributed:
                torch.distributed.barrier()
    if dist_info.distributed:
        torch.distributed.destroy_process_group()
    summary["best_top1"] = best_top1
    return summary


def _summary(cfg: TrainConfig, train_list: ImageList, val_list: ImageList, history: list, seconds: float) -> dict:
    conf = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items() if k not in ("progress", "force")}
    return {
        "data": str(cfg.data),
        "train_images": len(train_list),
        "val_images": len(val_list),
        "epochs": len(history),
        "final_val_top1": history[-1]["val_top1"] if history else None,
        "best_val_top1": max(h["val_top1"] for h in history) if history else None,
        "train_seconds": round(seconds, 1),
        "config": conf,
    }


def _save_state(cfg: TrainConfig, epoch: int, optimizer, scheduler, best_top1: float, history: list) -> None:
    import torch

    from edgeres.fileio import atomic_path, write_json_atomic

    # The history travels inside the state too: train_state.pt is the one file whose rename commits an epoch, so a
    # kill between it and history.json cannot leave a resumed run with an epoch missing from its history.
    state = {"epoch": epoch, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "best_top1": best_top1, "history": json.dumps(history)}
    with atomic_path(cfg.out / "train_state.pt") as tmp:
        torch.save(state, tmp)
    write_json_atomic(cfg.out / "history.json", history)


def _resume(cfg: TrainConfig, model, optimizer, scheduler, model_cfg, steps_per_epoch: int) -> tuple[int, float, list]:
    """Restore weights, optimizer and schedule from a run folder (or its last checkpoint)."""
    import warnings

    import torch

    run = Path(cfg.resume)
    run = run.parent if run.is_file() else run
    ckpt = load_checkpoint(run / "last.safetensors")
    if ckpt.config.arch != cfg.arch:
        raise EdgeresError(f"--resume {run} is a {ckpt.config.arch} run, not {cfg.arch}")
    require_matching_classes(ckpt.config, model_cfg.class_names, f"data folder {cfg.data}")
    load_weights(model, ckpt.state_dict, cfg.arch, source=str(run / "last.safetensors"))
    state_file = run / "train_state.pt"
    if not state_file.is_file():
        raise EdgeresError(f"cannot resume: {state_file} is missing")
    state = torch.load(state_file, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    # Step the new schedule to where this run is instead of loading the saved one: --epochs may have grown,
    # and a loaded OneCycleLR keeps its old total and raises once training passes it.
    if int(state["epoch"]) < cfg.epochs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()" is intended here
            for _ in range(int(state["epoch"]) * steps_per_epoch):
                scheduler.step()
    history_file = run / "history.json"
    if isinstance(state.get("history"), str):
        history = json.loads(state["history"])
    else:  # a run saved before the history was kept in the state
        history = json.loads(history_file.read_text()) if history_file.is_file() else []
    if cfg.out != run:
        cfg.out.mkdir(parents=True, exist_ok=True)
    return int(state["epoch"]), float(state["best_top1"]), history
