"""``calibrate`` as users run it: pick real images, calibrate (or reuse matching scales), write the
scales JSON and the Q/DQ ONNX into a calibration folder.

A calibration folder ``calibration/<model>-<method>/`` holds ``scales.json`` (the source of truth),
``model.fp32.onnx`` (the export its tensor names refer to) and ``model.qdq.onnx`` (the artifact).
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeres.errors import DataError, EdgeresError
from edgeres.models.checkpoint import file_sha256
from edgeres.processing import IMAGE_EXTENSIONS, read_image
from edgeres.quant.scales import Scales, data_hash

SCALES_FILE = "scales.json"
FP32_FILE = "model.fp32.onnx"
QDQ_FILE = "model.qdq.onnx"
RECOMMENDED_IMAGES = 500
DEFAULT_MAX_IMAGES = 512  # the default --num-images is min(this, the images there are)


class CalibrationNote(UserWarning):
    """Something calibration chose that the user should see (not a problem): which folder it read."""


@dataclass
class CalibConfig:
    model: Path
    data: Path
    out: Path
    method: str = "entropy"
    percentile: float = 99.99
    num_images: int | None = None  # None: min(DEFAULT_MAX_IMAGES, images available)
    batch_size: int = 32
    seed: int = 0
    force: bool = False
    trt_version: str | None = None
    progress: bool = True


@dataclass
class CalibResult:
    folder: Path
    scales: Scales
    reused: bool

    @property
    def qdq_onnx(self) -> Path:
        return self.folder / QDQ_FILE

    @property
    def fp32_onnx(self) -> Path:
        return self.folder / FP32_FILE


def find_images(folder: Path) -> list[Path]:
    """Every image file under ``folder`` (ImageFolder trees and flat folders alike), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            f"calibration data folder not found: {folder}; calibration needs real images "
            "(an ImageFolder tree or a folder of images)"
        )
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def calibration_folder(data: Path) -> Path:
    """The folder calibration reads: ``data/train`` when ``data`` holds ``train/`` and ``val/`` (val images are for
    measuring accuracy; calibrating on them would flatter it), else ``data``; the choice is announced."""
    data = Path(data)
    if (data / "train").is_dir() and (data / "val").is_dir():
        warnings.warn(
            f"calibrating on {data / 'train'}: {data} has train/ and val/, and val/ stays unseen for evaluation",
            CalibrationNote,
            stacklevel=2,
        )
        return data / "train"
    return data


def select_images(folder: Path, num_images: int | None = None, seed: int = 0, task=None) -> list[Path]:
    """A fixed, seeded choice of ``num_images`` images (None: min(512, all there are)); asking for more than exist
    is an error, never a fallback. ``task`` (an ``edgeres.tasks.base.Task``) may say which files under ``folder``
    are network inputs (a segmentation folder also holds its masks)."""
    images = find_images(folder)
    if task is not None and task.input_images is not None:
        images = task.input_images(folder, images)
    if not images:
        raise DataError(f"no images in {folder}; calibration needs real images ({', '.join(IMAGE_EXTENSIONS)})")
    if num_images is None:
        num_images = min(DEFAULT_MAX_IMAGES, len(images))
    if len(images) < num_images:
        raise DataError(
            f"{folder} has {len(images)} images but --num-images {num_images} was asked; "
            f"pass --num-images {len(images)} or add images"
        )
    if num_images < RECOMMENDED_IMAGES:
        warnings.warn(
            f"calibrating on {num_images} images; {RECOMMENDED_IMAGES}+ real images give steadier ranges", stacklevel=2
        )
    picks = np.random.default_rng(seed).permutation(len(images))[:num_images]
    return [images[i] for i in sorted(picks)]


def check_calibration_image(path: Path, image: np.ndarray, input_size: tuple[int, int]) -> None:
    """Refuse images far smaller than the network input (upscaled 2x+ they no longer look like real inputs)
    and images that are not 8-bit gray/color."""
    import cv2

    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is not None and (raw.dtype != np.uint8 or (raw.ndim == 3 and raw.shape[2] not in (3, 4))):
        channels = 1 if raw.ndim == 2 else raw.shape[2]
        raise DataError(
            f"calibration image {path} is {raw.dtype} with {channels} channels; accepted: 8-bit grayscale, RGB or RGBA"
        )
    h, w = image.shape[:2]
    if h * 2 < input_size[0] or w * 2 < input_size[1]:
        raise DataError(
            f"calibration image {path} is {w}x{h}, less than half the network input "
            f"{input_size[1]}x{input_size[0]}; calibrate with images like the ones the engine will see"
        )


def run_calibration(cfg: CalibConfig) -> CalibResult:
    """Calibrate ``cfg.model`` on ``cfg.data`` into ``cfg.out``, or reuse scales there whose hashes match.

    ``cfg.out`` is locked meanwhile: a second calibration into it, or a build reading it, is refused with
    one line; a full or read-only disk is reported as such."""
    from edgeres.fileio import ensure_free_space, output_lock, writing_into

    out = Path(cfg.out)
    with output_lock(out, "--out"), writing_into(out.parent, f"calibration {out}"):
        if Path(cfg.model).is_file():  # the FP32 and Q/DQ ONNX files
            ensure_free_space(out.parent, 2 * Path(cfg.model).stat().st_size, f"calibration {out}")
        return _run_calibration(cfg)


def _run_calibration(cfg: CalibConfig) -> CalibResult:
    """``run_calibration`` without the lock."""
    from edgeres.models.checkpoint import load_checkpoint
    from edgeres.onnx_model.export import export_checkpoint
    from edgeres.quant.calibrate import calibrate_onnx, check_method
    from edgeres.quant.qdq import write_qdq_file

    check_method(cfg.method)
    if cfg.trt_version:  # before calibrating: a refused version must not cost (and then discard) a calibration
        from edgeres.quant.trt_cache import cache_header

        cache_header(cfg.trt_version)
    ckpt = load_checkpoint(cfg.model)
    model_sha = file_sha256(Path(cfg.model))
    data = calibration_folder(cfg.data)
    from edgeres.tasks import get_task

    paths = select_images(data, cfg.num_images, cfg.seed, task=get_task(ckpt.config.task))
    data_sha = data_hash(paths, data)
    out = Path(cfg.out)
    existing = out / SCALES_FILE
    if existing.is_file():
        old = Scales.load(existing)
        same = (
            old.model.get("sha256") == model_sha
            and old.data.get("sha256") == data_sha
            and old.method == cfg.method
            and (cfg.method != "percentile" or old.percentile == cfg.percentile)
        )
        if same and (out / QDQ_FILE).is_file() and (out / FP32_FILE).is_file():
            if cfg.trt_version:
                _write_cache(old, cfg.trt_version, out)
            _refresh_qdq(out, old)
            return CalibResult(out, old, reused=True)
        if not cfg.force:
            raise EdgeresError(
                f"{out} holds a calibration of another model, data or method; pass --force to "
                "replace it or choose another --out"
            )

    pre = ckpt.config.preprocess
    images = []
    for p in paths:
        img = read_image(p)
        check_calibration_image(p, img, pre.input_size)
        images.append(img)

    def batches():
        from edgeres.processing import preprocess

        for start in range(0, len(images), cfg.batch_size):
            yield preprocess(images[start : start + cfg.batch_size], pre)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)
    try:
        export_checkpoint(cfg.model, tmp / FP32_FILE)
        scales = calibrate_onnx(
            tmp / FP32_FILE, batches, cfg.method, cfg.percentile, count=len(images), progress=cfg.progress
        )
        scales.model = {
            "checkpoint": str(Path(cfg.model).resolve()),
            "sha256": model_sha,
            "onnx_sha256": file_sha256(tmp / FP32_FILE),
            "arch": ckpt.config.arch,
            "class_names": ckpt.config.class_names,
        }
        scales.data = {"folder": str(data.resolve()), "sha256": data_sha, "images": len(paths), "seed": cfg.seed}
        scales.save(tmp / SCALES_FILE)
        write_qdq_file(tmp / FP32_FILE, scales, tmp / QDQ_FILE)
        if cfg.trt_version:
            _write_cache(scales, cfg.trt_version, tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return CalibResult(out, scales, reused=False)


def _refresh_qdq(folder: Path, scales: Scales) -> None:
    """A reused calibration's Q/DQ artifact, rewritten from its scales when this edgeres's writer makes another one
    (a folder from before the stem's weights were put on -64..64, ``quant.signs``); the scales stay as they are."""
    import onnx

    from edgeres.fileio import atomic_path
    from edgeres.quant.qdq import write_qdq

    current = write_qdq(onnx.load(str(folder / FP32_FILE)), scales).SerializeToString()
    if current == (folder / QDQ_FILE).read_bytes():
        return
    with atomic_path(folder / QDQ_FILE) as tmp:
        tmp.write_bytes(current)
    warnings.warn(f"rewrote {folder / QDQ_FILE} from its scales with this edgeres's Q/DQ writer (the scales are "
                  "unchanged; rebuild engines made from the old file to get its form)", CalibrationNote, stacklevel=3)


def _write_cache(scales: Scales, trt_version: str, folder: Path) -> Path:
    from edgeres.quant.trt_cache import write_cache

    path = folder / f"calib.trt-{trt_version}.cache"
    write_cache(scales, trt_version, path)
    return path


def load_calibration(folder: Path, checkpoint: Path) -> CalibResult:
    """Open a calibration folder for a build, refusing scales that belong to another model."""
    folder = Path(folder)
    if folder.is_file() and folder.name == SCALES_FILE:
        folder = folder.parent
    scales_file = folder / SCALES_FILE
    if not scales_file.is_file():
        raise EdgeresError(f"{folder} is not a calibration folder (no {SCALES_FILE}); run 'edgeres calibrate'")
    scales = Scales.load(scales_file)
    scales.check_model(file_sha256(Path(checkpoint)), str(scales_file))
    for name in (FP32_FILE, QDQ_FILE):
        if not (folder / name).is_file():
            raise EdgeresError(f"{folder} is missing {name}; recalibrate with 'edgeres calibrate --force'")
    if file_sha256(folder / FP32_FILE) != scales.model.get("onnx_sha256"):
        raise EdgeresError(f"{folder / FP32_FILE} is not the export these scales were computed on; recalibrate")
    return CalibResult(folder, scales, reused=True)
