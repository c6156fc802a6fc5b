"""``build``: export -> (quantize) -> the backend's builder -> engine + manifest, written atomically as a folder.

An engine folder ``engines/NAME/`` holds ``NAME.onnx`` (ONNX Runtime, OpenVINO) or ``NAME.plan`` (TensorRT) and
``NAME.manifest.json``. The backend comes from the table in ``edgeres.backends``: its package checks the request,
builds the engine file from the export or the Q/DQ artifact this module prepares (``backends.base.BuildJob``), and
reports its manifest facts; this module writes the manifest.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from edgeres.backends import backend_module, backend_names
from edgeres.backends.base import BuildJob
from edgeres.backends.trt.builder import check_qdq_for_tensorrt  # noqa: F401  (public here: the TensorRT-rule check)
from edgeres.backends.trt.loader import TrtBuildOptions
from edgeres.errors import EdgeresError
from edgeres.fileio import replace_folder, write_json_atomic
from edgeres.manifest import MANIFEST_SUFFIX, make_manifest
from edgeres.models.checkpoint import file_sha256
from edgeres.onnx_model.export import output_names
from edgeres.quant.mixed import plan_mixed_precision
from edgeres.tasks import get_task

PRECISIONS = ("fp32", "fp16", "int8", "mixed")
BACKENDS = ("auto", *backend_names())
# "extended" fusions are portable across CPUs; "all" adds layout transforms chosen for this CPU's ISA.
SAVED_OPT_LEVELS = ("basic", "extended", "all")


@dataclass
class BuildConfig:
    """What to build; the CLI fills it from options and the workspace."""

    model: Path
    out: Path
    precision: str = "fp32"
    backend: str = "auto"
    opset: int = 17
    exporter: str = "torchscript"
    max_batch: int = 32
    opt_level: str = "extended"
    normalize_in_network: bool = False
    force: bool = False
    build_command: str = ""
    calib: Path | None = None  # calibration folder (scales.json + Q/DQ ONNX) for int8
    calib_data: Path | None = None  # images to calibrate from when no --calib is given
    calib_method: str = "entropy"
    num_images: int | None = None  # None: min(512, the images there are)
    max_drop: float = 0.5  # mixed: accepted drop of the task's primary metric vs FP32, in points (top-1, mAP@0.5, mIoU)
    val_data: Path | None = None  # mixed: images the sensitivity is measured on
    tensorrt: TrtBuildOptions | None = None  # TensorRT-only options (None: defaults)
    score_threshold: float = 0.3  # detect: the defaults predict and the camera loop use
    nms_iou: float = 0.5
    backend_reason: str = ""  # why this backend (the CLI resolves ``auto`` before building); recorded in the manifest
    int8_cpu: str = "auto"  # CPU INT8: which CPUs the engine is for (backends.cpu_int8.int8_cpu_target)


def pick_backend(requested: str, precision: str = "fp32", model: Path | None = None) -> str:
    """The backend to build for (``choose_backend`` without its reason)."""
    return choose_backend(requested, precision, model)[0]


def choose_backend(requested: str, precision: str = "fp32", model: Path | None = None) -> tuple[str, str]:
    """(backend, why). ``auto`` means TensorRT when it and a GPU are present, otherwise the fastest CPU engine that
    is installed and exact on this CPU (``backends.cpu_int8.pick_cpu_backend``: OpenVINO for INT8 classifiers on
    x86 when installed, else ONNX Runtime). A named backend is kept as asked."""
    accepted = ("auto", *backend_names())  # the table as it is now (BACKENDS: as it was at import)
    if requested not in accepted:
        raise EdgeresError(f"unknown backend '{requested}'; accepted: {', '.join(accepted)}")
    if requested != "auto":
        return requested, f"--backend {requested}"
    from edgeres.backends import auto_gpu_backend
    from edgeres.backends.cpu_int8 import pick_cpu_backend
    from edgeres.device.cpu import cpu_facts

    on_gpu = auto_gpu_backend()
    if on_gpu is not None:
        return on_gpu
    task = get_task("classify")
    if model is not None and Path(model).is_file():
        from edgeres.models.checkpoint import checkpoint_task

        task = get_task(checkpoint_task(model))
    backend, why = pick_cpu_backend(precision, task.name, cpu_facts(), checked=task.cpu_int8_checked)
    return backend, "auto: " + why


def build_engine(cfg: BuildConfig, progress: bool = True) -> tuple[Path, dict]:
    """Build an engine folder and return (engine file, manifest).

    The ``--out`` folder is locked for the build (a second build into it is refused, naming the first) and so,
    for reading, is a ``--calib`` folder (a calibration rewriting it meanwhile is refused); a full or
    read-only disk is reported as such. See ``_build_engine`` for the rest.
    """
    from edgeres.fileio import ensure_free_space, output_lock, writing_into

    out = Path(cfg.out)
    with contextlib.ExitStack() as locks:
        locks.enter_context(output_lock(out, "--out"))
        if cfg.calib is not None and Path(cfg.calib).is_dir():
            locks.enter_context(output_lock(Path(cfg.calib), "--calib folder", shared=True))
        with writing_into(out.parent, f"engine {out}"):
            if Path(cfg.model).is_file():  # the engine, its source ONNX and the temporary folder's copy
                ensure_free_space(out.parent, 2 * Path(cfg.model).stat().st_size, f"engine {out}")
            return _build_engine(cfg, progress)


def _build_engine(cfg: BuildConfig, progress: bool = True) -> tuple[Path, dict]:
    """Build an engine folder and return (engine file, manifest).

    Raises:
        EdgeresError: impossible combinations (FP16 without a GPU, ...), an existing folder without
            ``force``, or an export that does not match torch.
    """
    if cfg.precision not in PRECISIONS:
        raise EdgeresError(f"unknown precision '{cfg.precision}'; accepted: {', '.join(PRECISIONS)}")
    backend, reason = choose_backend(cfg.backend, cfg.precision, cfg.model)
    reason = cfg.backend_reason or reason
    if cfg.opt_level not in SAVED_OPT_LEVELS:
        raise EdgeresError(f"unknown --opt-level '{cfg.opt_level}'; accepted: {', '.join(SAVED_OPT_LEVELS)}")
    if cfg.max_batch < 1:
        raise EdgeresError(f"--max-batch must be at least 1, got {cfg.max_batch}")
    from edgeres.backends.cpu_int8 import INT8_CPU_TARGETS

    if cfg.int8_cpu not in INT8_CPU_TARGETS:
        raise EdgeresError(f"unknown --int8-cpu '{cfg.int8_cpu}'; accepted: {', '.join(INT8_CPU_TARGETS)}")
    module = backend_module(backend)
    checked = module.check_request(cfg)  # what it cannot build, and whether it is installed: before calibrating
    quantized = cfg.precision in ("int8", "mixed")
    if quantized and cfg.normalize_in_network:
        raise EdgeresError(f"--uint8-input is not supported with --precision {cfg.precision} yet; use float input")
    calib = resolve_calibration(cfg) if quantized else None
    plan = plan_mixed_precision(cfg, calib) if cfg.precision == "mixed" else None
    checked = module.check_calibrated(cfg, calib, plan, checked)
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise EdgeresError(f"{out} exists and is not a folder; --out names an engine folder (e.g. engines/NAME)")
    if out.exists() and any(out.iterdir()):
        if not cfg.force:
            raise EdgeresError(f"{out} already exists; pass --force to replace that engine")
        # --force replaces only an engine folder: a mistyped --out must never delete someone's files.
        if not any(out.glob("*" + MANIFEST_SUFFIX)):
            raise EdgeresError(f"{out} is not an edgeres engine folder (no *{MANIFEST_SUFFIX}); refusing to replace "
                               "it even with --force; choose another --out")
    if not Path(cfg.model).is_file():
        raise EdgeresError(f"model checkpoint not found: {cfg.model}")

    start = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)
    try:
        engine_file = tmp / (out.name + module.ENGINE_SUFFIX)
        job = _prepare_job(cfg, calib, plan, tmp, engine_file, checked)
        built = module.build(job)
        if job.exported is not None and job.exported.exists():  # what the builder did not keep
            job.exported.unlink()
        manifest = make_manifest(cfg, job.config, built.preprocess, engine_file, backend, built.backend_info,
                                 built.input_info, job.export)
        manifest["device"].update(built.device)
        manifest |= built.extra
        if calib is not None:
            manifest.setdefault("calibration", calibration_facts(calib))
        if plan is not None:
            manifest["mixed"] = plan.to_dict()
        manifest["build_seconds"] = round(time.perf_counter() - start, 2)
        manifest["backend_choice"] = {"requested": cfg.backend, "picked": backend, "reason": reason}
        write_json_atomic(tmp / (out.name + MANIFEST_SUFFIX), manifest)
        replace_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / engine_file.name, manifest


def _prepare_job(cfg: BuildConfig, calib, mixed, folder: Path, engine_file: Path, checked) -> BuildJob:
    """What every backend builds from: the FP32 export (unquantized builds; checked against torch) or the
    calibration's TensorRT-form Q/DQ artifact (with the mixed plan's float layers), and the export facts."""
    import onnx

    from edgeres.models.checkpoint import load_checkpoint
    from edgeres.onnx_model.export import export_checkpoint

    config = load_checkpoint(cfg.model).config
    if calib is None:
        exported = folder / "exported.onnx"
        result = export_checkpoint(cfg.model, exported, opset=cfg.opset, exporter=cfg.exporter,
                                   normalize_in_network=cfg.normalize_in_network)
        return BuildJob(cfg, config, folder, engine_file, export=result.to_dict() | {"path": None}, exported=exported,
                        checked=checked)
    qdq = _mixed_qdq(calib, mixed) if mixed is not None else onnx.load(str(calib.qdq_onnx))
    export = {"exporter": "torchscript", "opset": 17, "output_names": output_names(config.task),
              "fp32_onnx_sha256": calib.scales.model.get("onnx_sha256")}
    return BuildJob(cfg, config, folder, engine_file, export=export, calib=calib, qdq=qdq, mixed=mixed,
                    checked=checked)


def _mixed_qdq(calib, mixed):
    import onnx

    from edgeres.quant.checker import check_qdq_model
    from edgeres.quant.qdq import write_qdq

    qdq = write_qdq(onnx.load(str(calib.fp32_onnx)), calib.scales, set(mixed.float_layers))
    problems = check_qdq_model(qdq, set(mixed.float_layers))
    if problems:
        raise EdgeresError(f"the mixed Q/DQ model breaks TensorRT rules: {problems[0]}")
    return qdq


def resolve_calibration(cfg: BuildConfig):
    """The calibration an INT8 build uses: ``--calib``, else calibrate (or reuse) from ``--calib-data`` or
    the workspace's ``calibration/images``. Never a fallback to random data."""
    from edgeres.models.checkpoint import load_checkpoint
    from edgeres.quant.workflow import CalibConfig, load_calibration, run_calibration
    from edgeres.workspace import find_workspace, short_arch

    if cfg.calib is not None:
        return load_calibration(cfg.calib, cfg.model)
    ws = find_workspace()
    data = cfg.calib_data
    if data is None and ws is not None:
        data = ws.root / ws.default("calibration", "data", "calibration/images")
    if data is None:
        raise EdgeresError("--precision int8 needs a calibration: pass --calib calibration/NAME (written by "
                           "'edgeres calibrate') or --calib-data DIR with real images")
    name = (ws.model_name if ws is not None and ws.model_name else None) or short_arch(
        load_checkpoint(cfg.model).config.arch)
    root = ws.calibration_dir if ws is not None else Path("calibration")
    return run_calibration(CalibConfig(model=Path(cfg.model), data=Path(data), out=root / f"{name}-{cfg.calib_method}",
                                       method=cfg.calib_method, num_images=cfg.num_images))


def calibration_facts(calib) -> dict:
    """What an INT8 manifest records of its calibration (reports label rows with it; rebuilds check it)."""
    scales = calib.scales
    return {"folder": str(calib.folder.resolve()), "method": scales.method, "percentile": scales.percentile,
            "source": scales.source, "images": scales.data.get("images"), "data_sha256": scales.data.get("sha256"),
            "scales_sha256": file_sha256(calib.folder / "scales.json")}


