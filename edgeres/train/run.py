"""``train``: one loop for every task (the task supplies data, model, loss and metric), writing ``best``/``last``
checkpoints, ``history.json`` and the resumable ``train_state.pt`` to the run folder (rank 0 only).

Runs unchanged under ``torchrun --nproc_per_node N``: DistributedDataParallel with a distributed sampler.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edgeres.errors import EdgeresError, require
from edgeres.models.checkpoint import load_checkpoint, load_weights, require_matching_classes, save_checkpoint
from edgeres.progress import progress_bar
from edgeres.train.config import TrainConfig
from edgeres.train.distributed import DistInfo, make_train_loader, setup_distributed
from edgeres.train.loop import evaluate_model, freeze_backbone, train_one_epoch
from edgeres.train.optim import autocast_dtype, make_optimizer, make_scheduler


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
    distributed."""
    torch = require("torch", "desktop")
    optimizer = make_optimizer(model, cfg)
    steps = len(loader) if cfg.max_steps_per_epoch is None else min(len(loader), cfg.max_steps_per_epoch)
    scheduler = make_scheduler(optimizer, cfg, steps)
    start_epoch, best, history = 0, -1.0, []
    if cfg.resume:
        start_epoch, best, history = resume_state(cfg, model, optimizer, scheduler, model_cfg, steps)
    model.to(dist_info.device, memory_format=torch.channels_last)
    amp_dtype = autocast_dtype(dist_info.device, cfg.amp)
    if dist_info.distributed:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[dist_info.local_rank] if dist_info.device != "cpu" else None)
    return TrainingRun(model, optimizer, scheduler, steps, start_epoch, best, history, amp_dtype)


def check_out_dir(cfg: TrainConfig) -> None:
    from edgeres.fileio import probe_writable

    existing = [p for p in ("best.safetensors", "last.safetensors") if (cfg.out / p).exists()]
    if existing and not (cfg.force or cfg.resume):
        raise EdgeresError(
            f"{cfg.out} already holds a training run ({', '.join(existing)}); pass --force to overwrite "
            "it or --resume to continue it"
        )
    probe_writable(cfg.out, "--out")  # a read-only or full disk is found now, not after the first epoch


def check_start_weights(cfg: TrainConfig) -> None:
    if cfg.init_from and cfg.weights:
        raise EdgeresError("--init-from and --weights both set the starting weights; give one of them")


def resolve_config(cfg: TrainConfig):
    """The task, its architecture name and the defaults that follow the task and the data; checked before torch
    loads and any image is decoded, so a typo in --task or --arch fails at once."""
    from edgeres.tasks import get_task

    task = get_task(cfg.task)
    check_start_weights(cfg)
    cfg.arch = task.resolve_arch(cfg.arch)
    cfg.optimizer = cfg.optimizer or task.default_optimizer
    if cfg.img_size is None and cfg.resume:  # a resumed run keeps its own input size
        folder = Path(cfg.resume).parent if Path(cfg.resume).is_file() else Path(cfg.resume)
        if (folder / "last.safetensors").is_file():
            cfg.img_size = load_checkpoint(folder / "last.safetensors").config.preprocess.input_size[0]
    if cfg.img_size is None:
        cfg.img_size = task.default_img_size(cfg.data)
    task.check_input_size(cfg.preprocess().input_size)
    cfg.out = Path(cfg.out)
    return task


def build_model(cfg: TrainConfig, class_names: list[str]):
    """The network to train: the task's model (random, --weights, --init-from), with --freeze-backbone applied."""
    from edgeres.tasks import get_task

    task = get_task(cfg.task)
    check_start_weights(cfg)
    model = task.init_model(cfg, class_names)
    if cfg.freeze_backbone:
        freeze_backbone(model, task)
    return model


def train(cfg: TrainConfig) -> dict:
    """Train a model of ``cfg.task`` and write ``best``/``last`` checkpoints to ``cfg.out`` (rank 0 only); the
    best is the one with the highest value of the task's primary metric on the val split.

    Returns:
        The training summary (also stored in the checkpoints and ``history.json``).
    """
    from edgeres.config import ModelConfig

    task = resolve_config(cfg)
    key = task.metric.key
    check_out_dir(cfg)
    torch = require("torch", "desktop")
    dist_info = setup_distributed()
    torch.manual_seed(cfg.seed + dist_info.rank)
    pre = cfg.preprocess()
    data = task.load_training_data(cfg, pre, with_val=dist_info.is_main)  # every data problem, before training
    model_cfg = ModelConfig(arch=cfg.arch, class_names=data.class_names, task=task.name, preprocess=pre)
    loader = make_train_loader(data.train, cfg.batch_size, dist_info, cfg.seed, cfg.workers)
    if len(loader) == 0:
        raise EdgeresError(f"{len(data.train)} training images is fewer than one batch of {cfg.batch_size}")
    model = build_model(cfg, data.class_names)

    run = prepare_run(cfg, model, loader, model_cfg, dist_info)
    model, optimizer, scheduler, steps, amp_dtype = run.model, run.optimizer, run.scheduler, run.steps, run.amp_dtype
    best, history = run.best, run.history
    loss_fn = task.make_loss(cfg.label_smoothing)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

    summary: dict = {}
    t0 = time.perf_counter()
    extra = "loss {task.fields[loss]:.3f}  {task.fields[rate]:.0f} img/s"
    with progress_bar(enabled=cfg.progress and dist_info.is_main, extra=extra) as bar:
        for epoch in range(run.start_epoch, cfg.epochs):
            if hasattr(data.train, "set_epoch"):  # augmentation seeded per epoch
                data.train.set_epoch(epoch)
            if dist_info.distributed:
                loader.sampler.set_epoch(epoch)
            bar_task = bar.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=steps * cfg.batch_size,
                                    loss=math.nan, acc=0.0, rate=0.0)
            stats = train_one_epoch(model, loader, loss_fn, optimizer, scheduler, dist_info.device, bar, bar_task,
                                    scaler=scaler, max_steps=cfg.max_steps_per_epoch, amp_dtype=amp_dtype)
            if dist_info.is_main:
                metrics = evaluate_model(task, getattr(model, "module", model), data.val, dist_info.device)
                stats.update(epoch=epoch + 1, **{f"val_{k}": metrics[k] for k in task.metric.history_keys})
                history.append(stats)
                amp = f", {str(amp_dtype).removeprefix('torch.')}" if amp_dtype else ""
                bar.console.print(
                    f"epoch {epoch + 1}: loss {stats['loss']:.3f}  val {task.metric.label} "
                    f"{task.metric.fmt(metrics[key])}  ({stats['images_per_s']:.0f} img/s{amp})"
                )
                summary = run_summary(cfg, task, data.summary, history, time.perf_counter() - t0)
                if metrics[key] is not None and metrics[key] > best:
                    best = metrics[key]
                    save_checkpoint(cfg.out / "best.safetensors", model, model_cfg,
                                    {**summary, "best_epoch": epoch + 1})
                save_checkpoint(cfg.out / "last.safetensors", model, model_cfg, summary)
                save_state(cfg, epoch + 1, optimizer, scheduler, best, history)
            if dist_info.distributed:
                torch.distributed.barrier()
    if dist_info.distributed:
        torch.distributed.destroy_process_group()
    return summary


def run_summary(cfg: TrainConfig, task, data_summary: dict, history: list, seconds: float) -> dict:
    """What a run did: data counts, per-metric final and best validation values, time and the whole config."""
    conf = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items() if k not in ("progress", "force")}
    summary = {"task": task.name, "data": str(cfg.data), **data_summary, "epochs": len(history),
               "primary_metric": task.metric.key}
    for k in task.metric.history_keys:
        values = [h[f"val_{k}"] for h in history if h.get(f"val_{k}") is not None]
        summary[f"final_val_{k}"] = history[-1].get(f"val_{k}") if history else None
        summary[f"best_val_{k}"] = max(values) if values else None
    summary.update(train_seconds=round(seconds, 1), config=conf)
    return summary


def save_state(cfg: TrainConfig, epoch: int, optimizer, scheduler, best: float, history: list) -> None:
    import torch

    from edgeres.fileio import atomic_path, write_json_atomic

    # The history travels inside the state too: train_state.pt is the one file whose rename commits an epoch, so a
    # kill between it and history.json cannot leave a resumed run with an epoch missing from its history.
    state = {"epoch": epoch, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "best": best, "history": json.dumps(history)}
    with atomic_path(cfg.out / "train_state.pt") as tmp:
        torch.save(state, tmp)
    write_json_atomic(cfg.out / "history.json", history)


def resume_state(cfg: TrainConfig, model, optimizer, scheduler, model_cfg, steps_per_epoch: int) -> tuple:
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
    best = state["best"] if "best" in state else state["best_top1"]  # runs saved before the task layer
    return int(state["epoch"]), float(best), history
