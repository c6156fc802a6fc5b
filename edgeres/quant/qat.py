"""Quantization-aware training: fine-tune the fake-quantized model, starting from a calibration.

Reuses the training loop (``edgeres.train``: data, sampler, optimizer, ``train_one_epoch``, torchrun)
on a BatchNorm-folded model whose weights are fake-quantized per channel (ranges follow the weights)
and whose activations are fake-quantized with the calibration's ranges. The result is an ordinary
checkpoint plus a calibration folder written by the same Q/DQ writer, so ``edgeres build --precision
int8 --qat CKPT`` treats it like any calibrated model.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

from edgeres.errors import EdgeresError, require

QAT_CALIBRATION = "calibration"  # folder inside the QAT run


@dataclass
class QatConfig:
    model: Path
    data: Path
    out: Path
    epochs: int = 2
    lr: float = 1e-3
    batch_size: int = 64
    calib: Path | None = None
    method: str = "entropy"
    num_images: int = 512
    seed: int = 0
    max_steps_per_epoch: int | None = None
    val_split: float = 0.2
    force: bool = False
    progress: bool = True


def unfold_batchnorm(folded, arch: str, num_classes: int) -> dict:
    """A torchvision-layout state dict equal to a BN-folded model: each BatchNorm becomes the identity
    plus the folded bias (weight 1, mean 0, var 1 - eps), so every tool loads it as a normal checkpoint."""
    torch = require("torch", "desktop")
    from edgeres.models.registry import get_model

    template = get_model(arch, num_classes=num_classes)
    state = template.state_dict()
    folded_state = folded.state_dict()
    modules = dict(template.named_modules())
    handled = set()
    for name, module in modules.items():
        if isinstance(module, torch.nn.BatchNorm2d):
            parent, _, leaf = name.rpartition(".")
            prefix = parent + "." if parent else ""
            conv = prefix + ("conv" + leaf[2:] if leaf.startswith("bn") else str(int(leaf) - 1))
            state[conv + ".weight"] = folded_state[conv + ".weight"].detach().clone()
            bias = folded_state[conv + ".bias"].detach().clone()
            state[name + ".weight"] = torch.ones_like(bias)
            state[name + ".bias"] = bias
            state[name + ".running_mean"] = torch.zeros_like(bias)
            state[name + ".running_var"] = torch.full_like(bias, 1.0 - module.eps)
            handled |= {conv + ".weight", name + ".weight", name + ".bias", name + ".running_mean",
                        name + ".running_var"}
    for key in state:  # layers without BatchNorm (the classifier's fc, a detector's heads) are copied as they are
        if key not in handled and key in folded_state:
            state[key] = folded_state[key].detach().clone()
    return state


def qat(cfg: QatConfig) -> dict:
    """Fine-tune with fake quantization and write ``out/best.safetensors`` + ``out/calibration/``.

    Returns:
        The summary: FP32-start and INT8 (fake-quantized) val accuracy per epoch, paths.
    """
    torch = require("torch", "desktop")
    import onnx

    from edgeres.models.checkpoint import load_checkpoint, require_matching_classes, save_checkpoint
    from edgeres.progress import progress_bar
    from edgeres.quant.fakequant import fake_quant_model, strip_fake_quant
    from edgeres.quant.workflow import CalibConfig, load_calibration, run_calibration
    from edgeres.tasks import get_task
    from edgeres.train import TrainConfig
    from edgeres.train.distributed import make_train_loader, setup_distributed
    from edgeres.train.loop import evaluate_model, train_one_epoch
    from edgeres.train.optim import make_optimizer, make_scheduler

    out = Path(cfg.out)
    if (out / "best.safetensors").exists() and not cfg.force:
        raise EdgeresError(f"{out} already holds a QAT run; pass --force to overwrite it")
    dist_info = setup_distributed()
    ckpt = load_checkpoint(cfg.model)
    task = get_task(ckpt.config.task)
    pre = ckpt.config.preprocess
    # QAT trains on the same data, loss and metric as training did; no label smoothing, cosine schedule.
    tcfg = TrainConfig(data=cfg.data, out=out, arch=ckpt.config.arch, task=task.name, epochs=cfg.epochs,
                       img_size=pre.input_size[0], batch_size=cfg.batch_size, optimizer="sgd", lr=cfg.lr,
                       schedule="cosine", label_smoothing=0.0, seed=cfg.seed, val_split=cfg.val_split,
                       max_steps_per_epoch=cfg.max_steps_per_epoch, mean=pre.mean, std=pre.std)
    data = task.load_training_data(tcfg, pre, with_val=dist_info.is_main)
    require_matching_classes(ckpt.config, data.class_names, f"QAT data {cfg.data}")
    if cfg.calib is not None:
        calib = load_calibration(cfg.calib, cfg.model)
    else:
        calib_data = Path(cfg.data) / "train" if (Path(cfg.data) / "train").is_dir() else Path(cfg.data)
        calib_out = out / "start-calibration"
        if dist_info.is_main:
            run_calibration(CalibConfig(model=Path(cfg.model), data=calib_data, out=calib_out, method=cfg.method,
                                        num_images=min(cfg.num_images, len(data.train)), force=True,
                                        progress=cfg.progress))
        if dist_info.distributed:
            torch.distributed.barrier()
        calib = load_calibration(calib_out, cfg.model)
    fp32_onnx = onnx.load(str(calib.fp32_onnx))
    model = fake_quant_model(ckpt.build_model(), calib.scales, fp32_onnx, dynamic_weights=True)
    loader = make_train_loader(data.train, cfg.batch_size, dist_info, cfg.seed)
    steps = len(loader) if cfg.max_steps_per_epoch is None else min(len(loader), cfg.max_steps_per_epoch)
    optimizer = make_optimizer(model, tcfg)
    scheduler = make_scheduler(optimizer, tcfg, steps)
    model.to(dist_info.device)
    metric, loss_fn = task.metric, task.make_loss(0.0)

    def evaluate(net) -> float:
        return evaluate_model(task, net, data.val, dist_info.device)[metric.key]

    start_score = evaluate(model) if dist_info.is_main else None
    net = model
    if dist_info.distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[dist_info.local_rank] if dist_info.device != "cpu" else None)
    # The start (calibrated) weights are a candidate too: QAT never hands back a model worse than it was given.
    history, best_score = [], start_score if start_score is not None else -1.0
    best_state = copy.deepcopy(model.state_dict()) if dist_info.is_main else None
    t0 = time.perf_counter()
    extra = "loss {task.fields[loss]:.3f}  {task.fields[rate]:.0f} img/s"
    with progress_bar(enabled=cfg.progress and dist_info.is_main, extra=extra) as bar:
        for epoch in range(cfg.epochs):
            if dist_info.distributed:
                loader.sampler.set_epoch(epoch)
            bar_task = bar.add_task(f"QAT epoch {epoch + 1}/{cfg.epochs}", total=steps * cfg.batch_size, loss=0.0,
                                    acc=0.0, rate=0.0)
            if hasattr(data.train, "set_epoch"):
                data.train.set_epoch(epoch)
            stats = train_one_epoch(net, loader, loss_fn, optimizer, scheduler, dist_info.device, bar, bar_task,
                                    max_steps=cfg.max_steps_per_epoch)
            if dist_info.is_main:
                score = evaluate(model)
                stats.update(epoch=epoch + 1, **{f"val_{metric.key}_int8": score})
                history.append(stats)
                bar.console.print(f"QAT epoch {epoch + 1}: loss {stats['loss']:.3f}  fake-quantized val "
                                  f"{metric.label} {metric.fmt(score)} (start {metric.fmt(start_score)})")
                if score > best_score:
                    best_score, best_state = score, copy.deepcopy(model.state_dict())
            if dist_info.distributed:
                torch.distributed.barrier()
    summary = {}
    if dist_info.is_main:
        model.load_state_dict(best_state)
        strip_fake_quant(model)
        state = unfold_batchnorm(model.cpu(), ckpt.config.arch, ckpt.config.num_classes)
        plain = ckpt.build_model()
        plain.load_state_dict(state)
        summary = {"qat": True, "source_checkpoint": str(Path(cfg.model).resolve()),
                   "calibration": QAT_CALIBRATION, f"start_val_{metric.key}_int8": start_score,
                   f"best_val_{metric.key}_int8": best_score,
                   "epochs": cfg.epochs, "lr": cfg.lr, "history": history,
                   "train_seconds": round(time.perf_counter() - t0, 1),
                   "calibration_method": calib.scales.method}
        best = out / "best.safetensors"
        save_checkpoint(best, plain, ckpt.config, summary)
        write_qat_calibration(best, calib, out / QAT_CALIBRATION)
    if dist_info.distributed:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return summary


def write_qat_calibration(checkpoint: Path, start, folder: Path) -> None:
    """The QAT model's calibration folder: the calibration's activation ranges, per-channel weight ranges of
    the trained weights, keyed to a fresh export of ``checkpoint``; Q/DQ ONNX from the one writer."""
    import shutil
    import tempfile

    import onnx
    from onnx import numpy_helper

    from edgeres.models.checkpoint import file_sha256
    from edgeres.onnx_model.export import export_checkpoint
    from edgeres.quant.points import find_points
    from edgeres.quant.qdq import write_qdq_file
    from edgeres.quant.ranges import weight_amax
    from edgeres.quant.scales import Scales
    from edgeres.quant.workflow import FP32_FILE, QDQ_FILE, SCALES_FILE

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        export_checkpoint(checkpoint, tmp / FP32_FILE)
        model = onnx.load(str(tmp / FP32_FILE))
        inits = {i.name: i for i in model.graph.initializer}
        points = find_points(model)
        missing = [t for t in points.activations if t not in start.scales.activations]
        if missing:
            raise EdgeresError(f"the QAT export has tensors the calibration lacks (e.g. {missing[0]})")
        weights = {name: {"amax": [float(v) for v in weight_amax(numpy_helper.to_array(inits[name]), axis, "minmax")],
                          "axis": axis} for name, axis in points.weights.items()}
        old = start.scales
        scales = Scales(activations=dict(old.activations), weights=weights, method=old.method,
                        percentile=old.percentile, data=dict(old.data), source="qat",
                        model={**old.model, "checkpoint": str(Path(checkpoint).resolve()),
                               "sha256": file_sha256(Path(checkpoint)), "onnx_sha256": file_sha256(tmp / FP32_FILE)})
        scales.save(tmp / SCALES_FILE)
        write_qdq_file(tmp / FP32_FILE, scales, tmp / QDQ_FILE)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def qat_calibration_folder(checkpoint: Path) -> Path:
    """The calibration folder a QAT checkpoint was written with (``--qat CKPT`` in build)."""
    from edgeres.models.checkpoint import load_checkpoint

    summary = load_checkpoint(checkpoint).summary
    if not summary.get("qat"):
        raise EdgeresError(f"{checkpoint} is not a QAT checkpoint (run 'edgeres qat' first)")
    return Path(checkpoint).parent / summary.get("calibration", QAT_CALIBRATION)
