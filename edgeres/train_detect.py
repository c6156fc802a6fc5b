"""Training a CenterNet detector: the classifier's loop with detection data, targets and loss.

Shares the classifier's pieces (``TrainConfig``, distributed setup, loader, optimizer, schedule, run
folder handling); ``train_detect_epoch`` is what QAT of a detector calls with a fake-quantized model.
Data problems (boxes outside images, unknown categories, missing files) stop the run before it starts:
the loaders collect them and raise one report.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from edgeres.config import PreprocessConfig
from edgeres.errors import EdgeresError, require

SIZE_WEIGHT = 0.1  # CenterNet's weights: heatmap focal loss 1, size L1 0.1, offset L1 1
OFFSET_WEIGHT = 1.0
MIN_VISIBLE = 0.5  # an augmented box keeps its label when at least half of it stays in the image


def detection_arch(arch: str) -> str:
    """``--task detect --arch resnet18`` means the CenterNet detector on a ResNet-18."""
    from edgeres.models.registry import check_arch, model_task

    name = arch if arch.startswith("centernet_") else f"centernet_{arch}"
    check_arch(name)
    if model_task(name) != "detect":
        raise EdgeresError(f"'{arch}' is not a detector; detectors: centernet_resnet18/34/50")
    return name


class DetectionTrainImages:
    """A torch Dataset of detection samples: decoded once at network size, augmented, encoded as targets."""

    def __init__(self, dataset, cfg: PreprocessConfig, augment: bool = True, seed: int = 0):
        from edgeres.processing import read_image, resize_uint8

        self.cfg = cfg
        self.num_classes = len(dataset.class_names)
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        h, w = cfg.input_size
        self.images, self.boxes, self.labels = [], [], []
        for sample in dataset.samples:
            img = read_image(sample.path)
            sy, sx = h / img.shape[0], w / img.shape[1]
            self.images.append(np.ascontiguousarray(resize_uint8(img, cfg)[..., ::-1]))  # RGB, network size
            self.boxes.append(sample.boxes.astype(np.float32) * np.array([sx, sy, sx, sy], np.float32))
            self.labels.append(sample.labels.astype(np.int64))
        self.output_hw = (h // 4, w // 4)

    def __len__(self) -> int:
        return len(self.images)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int):
        import torch

        from edgeres.tasks.detect.targets import encode_centernet

        img, boxes, labels = self.images[i], self.boxes[i], self.labels[i]
        if self.augment:
            # torch.initial_seed() differs per epoch inside DataLoader workers (set_epoch does not reach them).
            rng = np.random.default_rng([self.seed, self.epoch, i, torch.initial_seed() % 2**32])
            img, boxes, labels = random_affine(img, boxes, labels, rng)
            img = color_jitter(img, rng)
        mean = np.asarray(self.cfg.mean, np.float32) * 255.0
        std = np.asarray(self.cfg.std, np.float32) * 255.0
        x = ((img.astype(np.float32) - mean) / std).transpose(2, 0, 1)
        t = encode_centernet(boxes, labels, self.num_classes, self.cfg.input_size, self.output_hw)
        return (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(t["heatmap"]),
                torch.from_numpy(t["size"]), torch.from_numpy(t["offset"]), torch.from_numpy(t["mask"]))


def random_affine(img: np.ndarray, boxes: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                  scale: tuple[float, float] = (0.75, 1.25), translate: float = 0.15):
    """Zoom and shift an image with its boxes; boxes less than half visible afterwards are dropped."""
    cv2 = require("cv2", "desktop")
    h, w = img.shape[:2]
    s = float(rng.uniform(*scale))
    tx = (1 - s) * w / 2 + float(rng.uniform(-translate, translate)) * w
    ty = (1 - s) * h / 2 + float(rng.uniform(-translate, translate)) * h
    matrix = np.array([[s, 0, tx], [0, s, ty]], dtype=np.float32)
    out = cv2.warpAffine(img, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=(114, 114, 114))
    if len(boxes) == 0:
        return out, boxes, labels
    moved = boxes * s + np.array([tx, ty, tx, ty], np.float32)
    clipped = np.clip(moved, 0, [w, h, w, h]).astype(np.float32)
    area = (moved[:, 2] - moved[:, 0]) * (moved[:, 3] - moved[:, 1])
    kept_area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    wide, tall = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    keep = (kept_area >= MIN_VISIBLE * area) & (wide >= 2) & (tall >= 2)
    return out, clipped[keep], labels[keep]


def color_jitter(img: np.ndarray, rng: np.random.Generator, strength: float = 0.3) -> np.ndarray:
    """Random brightness, contrast and per-channel gain on a uint8 RGB image."""
    x = img.astype(np.float32)
    gain = 1 + rng.uniform(-strength, strength, size=3).astype(np.float32) * 0.5
    contrast = 1 + float(rng.uniform(-strength, strength))
    bright = float(rng.uniform(-strength, strength)) * 64
    mean = x.mean()
    x = (x - mean) * contrast + mean + bright
    return np.clip(x * gain, 0, 255).astype(np.uint8)


def centernet_loss(output, heatmap, size, offset, mask):
    """CenterNet's loss: penalty-reduced focal loss on the heatmap, L1 on size and offset at object centres.

    Returns:
        (total, parts) where parts holds the three terms as floats.
    """
    import torch
    import torch.nn.functional as F

    c = heatmap.shape[1]
    logits = output[:, :c].float()
    pos = heatmap.ge(1.0 - 1e-6).float()
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    p = torch.sigmoid(logits)
    pos_loss = (log_p * (1 - p) ** 2 * pos).sum()
    neg_loss = (log_not_p * p**2 * (1 - heatmap) ** 4 * (1 - pos)).sum()
    num_pos = pos.sum().clamp(min=1.0)
    heat = -(pos_loss + neg_loss) / num_pos
    m = mask.unsqueeze(1)
    denom = (m.sum() * 2).clamp(min=1.0)
    size_l1 = ((output[:, c : c + 2] - size).abs() * m).sum() / denom
    offset_l1 = ((output[:, c + 2 : c + 4] - offset).abs() * m).sum() / denom
    total = heat + SIZE_WEIGHT * size_l1 + OFFSET_WEIGHT * offset_l1
    parts = {"heatmap": float(heat.detach()), "size": float(size_l1.detach()), "offset": float(offset_l1.detach())}
    return total, parts


def train_detect_epoch(model, loader, optimizer, scheduler, device: str, bar, task, max_steps: int | None = None,
                       amp_dtype=None) -> dict:
    """One pass over ``loader`` (QAT of a detector calls this with a fake-quantized model).

    Inputs are channels-last (2-3x faster convolutions on CPUs); ``amp_dtype`` runs the forward pass under
    autocast (the loss is computed in float32).
    """
    import torch

    from edgeres.train import autocast_forward, optimizer_step

    model.train()
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    forward = autocast_forward(model, device, amp_dtype)
    seen, loss_sum, start = 0, 0.0, time.perf_counter()
    for step, (x, heatmap, size, offset, mask) in enumerate(loader):
        if max_steps is not None and step >= max_steps:
            break
        x = x.to(device, non_blocking=True)
        targets = [t.to(device, non_blocking=True) for t in (heatmap, size, offset, mask)]
        loss, _ = centernet_loss(forward(x), *targets)
        optimizer_step(loss, optimizer, scheduler, scaler)
        n = x.shape[0]
        seen += n
        loss_sum += float(loss.detach()) * n
        bar.update(task, advance=n, loss=loss_sum / seen, rate=seen / (time.perf_counter() - start))
    elapsed = time.perf_counter() - start
    return {"loss": loss_sum / max(seen, 1), "images": seen, "images_per_s": seen / elapsed if elapsed > 0 else 0.0}


def build_detector(cfg, class_names: list[str]):
    """The detector to train: random, ImageNet backbone, or a backbone from an edgeres checkpoint."""
    from edgeres.models.centernet import backbone_state_from_classifier
    from edgeres.models.checkpoint import load_checkpoint, load_weights
    from edgeres.models.registry import get_model

    if cfg.init_from and cfg.weights:
        raise EdgeresError("--init-from and --weights both set the starting weights; give one of them")
    model = get_model(cfg.arch, num_classes=len(class_names), weights=cfg.weights)
    if cfg.init_from:
        ckpt = load_checkpoint(cfg.init_from)
        own = model.state_dict()
        if ckpt.config.task == "detect":
            if ckpt.config.arch != cfg.arch:
                raise EdgeresError(f"--init-from {cfg.init_from} is a {ckpt.config.arch}, not a {cfg.arch}")
            state = dict(ckpt.state_dict)
            if ckpt.config.class_names != class_names:  # new classes: keep all but the class heatmap's last conv
                for k in ("heatmap.2.weight", "heatmap.2.bias"):
                    state[k] = own[k]
        else:
            backbone = cfg.arch.removeprefix("centernet_")
            if ckpt.config.arch != backbone:
                raise EdgeresError(f"--init-from {cfg.init_from} is a {ckpt.config.arch} classifier; "
                                   f"{cfg.arch} needs a {backbone} backbone")
            state = {**own, **backbone_state_from_classifier(ckpt.state_dict)}
        load_weights(model, state, cfg.arch, source=str(cfg.init_from))
    if cfg.freeze_backbone:
        for name, p in model.named_parameters():
            p.requires_grad = not name.startswith("backbone.")
    return model


def load_detection_data(cfg) -> tuple:
    """The train and val splits of ``cfg.data`` (a folder with train/ and val/, COCO or YOLO each)."""
    from edgeres.data.detection import load_detection_splits

    train_set, val_set = load_detection_splits(Path(cfg.data))
    if train_set.class_names != val_set.class_names:
        raise EdgeresError(f"{cfg.data}: train and val name different classes "
                           f"({train_set.class_names[:6]} vs {val_set.class_names[:6]})")
    return train_set, val_set


def train_detector(cfg) -> dict:
    """Train a CenterNet detector and write ``best``/``last`` checkpoints to ``cfg.out`` (rank 0 only).

    The best checkpoint is the one with the highest validation mAP@0.5.
    """
    from edgeres.config import ModelConfig
    from edgeres.evaluate import torch_predict_fn
    from edgeres.evaluate_detect import DetectionImages, evaluate_detections
    from edgeres.progress import progress_bar
    from edgeres.train import _check_out_dir, _save_state, make_train_loader, prepare_run, setup_distributed

    torch = require("torch", "desktop")
    cfg.arch = detection_arch(cfg.arch)
    cfg.out = Path(cfg.out)
    _check_out_dir(cfg)
    train_set, val_set = load_detection_data(cfg)  # every data problem is reported before training starts
    if len(train_set) == 0 or len(val_set) == 0:
        raise EdgeresError(f"{cfg.data} needs images in both train/ and val/")
    dist_info = setup_distributed()
    torch.manual_seed(cfg.seed + dist_info.rank)
    class_names = train_set.class_names
    pre = cfg.preprocess()
    if pre.input_size[0] % 32 or pre.input_size[1] % 32:
        raise EdgeresError(f"--img-size {cfg.img_size} must be a multiple of 32 for a detector (stride-32 backbone)")
    model_cfg = ModelConfig(arch=cfg.arch, class_names=class_names, task="detect", preprocess=pre)
    data = DetectionTrainImages(train_set, pre, augment=True, seed=cfg.seed)
    val = DetectionImages(val_set, pre) if dist_info.is_main else None
    loader = make_train_loader(data, cfg.batch_size, dist_info, cfg.seed, cfg.workers)
    if len(loader) == 0:
        raise EdgeresError(f"{len(data)} training images is fewer than one batch of {cfg.batch_size}")

    run = prepare_run(cfg, build_detector(cfg, class_names), loader, model_cfg, dist_info)
    model, optimizer, scheduler, steps, amp_dtype = run.model, run.optimizer, run.scheduler, run.steps, run.amp_dtype
    start_epoch, best_map, history = run.start_epoch, run.best, run.history

    summary: dict = {}
    t0 = time.perf_counter()
    extra = "loss {task.fields[loss]:.3f}  {task.fields[rate]:.0f} img/s"
    with progress_bar(enabled=cfg.progress and dist_info.is_main, extra=extra) as bar:
        for epoch in range(start_epoch, cfg.epochs):
            data.set_epoch(epoch)
            if dist_info.distributed:
                loader.sampler.set_epoch(epoch)
            task = bar.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=steps * cfg.batch_size, loss=math.nan,
                                rate=0.0)
            stats = train_detect_epoch(model, loader, optimizer, scheduler, dist_info.device, bar, task,
                                       max_steps=cfg.max_steps_per_epoch, amp_dtype=amp_dtype)
            if dist_info.is_main:
                plain = getattr(model, "module", model)
                metrics = evaluate_detections(torch_predict_fn(plain, dist_info.device), val, class_names)
                plain.train()
                stats.update(epoch=epoch + 1, val_map50=metrics["map50"], val_map=metrics["map"])
                history.append(stats)
                bar.console.print(
                    f"epoch {epoch + 1}: loss {stats['loss']:.3f}  val mAP@0.5 {metrics['map50']:.3f}  "
                    f"mAP@0.5:0.95 {metrics['map']:.3f}  ({stats['images_per_s']:.0f} img/s"
                    f"{', ' + str(amp_dtype).removeprefix('torch.') if amp_dtype else ''})"
                )
                summary = _summary(cfg, train_set, val_set, history, time.perf_counter() - t0)
                if metrics["map50"] > best_map:
                    best_map = metrics["map50"]
                    save_checkpoint_pair(cfg, model, model_cfg, {**summary, "best_epoch": epoch + 1}, best=True)
                save_checkpoint_pair(cfg, model, model_cfg, summary, best=False)
                _save_state(cfg, epoch + 1, optimizer, scheduler, best_map, history)
            if dist_info.distributed:
                torch.distributed.barrier()
    if dist_info.distributed:
        torch.distributed.destroy_process_group()
    summary["best_val_map50"] = best_map
    return summary


def save_checkpoint_pair(cfg, model, model_cfg, summary: dict, best: bool) -> None:
    from edgeres.models.checkpoint import save_checkpoint

    save_checkpoint(cfg.out / ("best.safetensors" if best else "last.safetensors"), model, model_cfg, summary)


def _summary(cfg, train_set, val_set, history: list, seconds: float) -> dict:
    from dataclasses import asdict

    conf = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items() if k not in ("progress", "force")}
    return {
        "task": "detect",
        "data": str(cfg.data),
        "train_images": len(train_set),
        "val_images": len(val_set),
        "train_boxes": int(train_set.summary.get("boxes", 0)),
        "epochs": len(history),
        "final_val_map50": history[-1]["val_map50"] if history else None,
        "best_val_map50": max(h["val_map50"] for h in history) if history else None,
        "best_val_map": max(h["val_map"] for h in history) if history else None,
        "train_seconds": round(seconds, 1),
        "config": conf,
    }
