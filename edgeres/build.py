"""``build``: export -> (quantize) -> backend build -> engine + manifest, written atomically as a folder.

An engine folder ``engines/NAME/`` holds ``NAME.onnx`` (ONNX Runtime) or ``NAME.plan`` (TensorRT) and
``NAME.manifest.json``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edgeres import __version__
from edgeres.backends.trt.loader import TrtBuildOptions
from edgeres.engine import ENGINE_SUFFIXES, MANIFEST_SUFFIX, SCHEMA_VERSION, backend_version
from edgeres.errors import EdgeresError
from edgeres.export import output_names
from edgeres.fileio import replace_folder, write_json_atomic
from edgeres.models.checkpoint import file_sha256
from edgeres.quant.mixed import plan_mixed_precision

PRECISIONS = ("fp32", "fp16", "int8", "mixed")
BACKENDS = ("auto", "onnxruntime", "openvino", "tensorrt")
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
    max_drop: float = 0.5  # mixed: accepted top-1 drop vs FP32, in points
    val_data: Path | None = None  # mixed: images the sensitivity is measured on
    tensorrt: TrtBuildOptions | None = None  # TensorRT-only options (None: defaults)
    score_threshold: float = 0.3  # detect: the defaults predict and the camera loop use
    nms_iou: float = 0.5
    backend_reason: str = ""  # why this backend (the CLI resolves ``auto`` before building); recorded in the manifest


def pick_backend(requested: str, precision: str = "fp32", model: Path | None = None) -> str:
    """The backend to build for (``choose_backend`` without its reason)."""
    return choose_backend(requested, precision, model)[0]


def choose_backend(requested: str, precision: str = "fp32", model: Path | None = None) -> tuple[str, str]:
    """(backend, why). ``auto`` means TensorRT when it and a GPU are present, otherwise the fastest CPU engine that
    is installed and exact on this CPU (``backends.cpu_int8.pick_cpu_backend``: OpenVINO for INT8 classifiers on
    x86 when installed, else ONNX Runtime). A named backend is kept as asked."""
    if requested not in BACKENDS:
        raise EdgeresError(f"unknown backend '{requested}'; accepted: {', '.join(BACKENDS)}")
    if requested != "auto":
        return requested, f"--backend {requested}"
    import importlib.util

    from edgeres.backends.cpu_int8 import pick_cpu_backend
    from edgeres.sysinfo import cpu_facts, gpu_facts

    if importlib.util.find_spec("tensorrt") is not None and gpu_facts().get("gpus"):
        return "tensorrt", "auto: TensorRT and an NVIDIA GPU are present"
    task = "classify"
    if model is not None and Path(model).is_file():
        from edgeres.models.checkpoint import load_checkpoint

        task = load_checkpoint(model).config.task
    backend, why = pick_cpu_backend(precision, task, cpu_facts())
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
    if cfg.precision not in PRECISIONS:
        raise EdgeresError(f"unknown precision '{cfg.precision}'; accepted: {', '.join(PRECISIONS)}")
    if cfg.opt_level not in SAVED_OPT_LEVELS:
        raise EdgeresError(f"unknown --opt-level '{cfg.opt_level}'; accepted: {', '.join(SAVED_OPT_LEVELS)}")
    if cfg.max_batch < 1:
        raise EdgeresError(f"--max-batch must be at least 1, got {cfg.max_batch}")
    if backend == "onnxruntime" and cfg.precision == "fp16":
        raise EdgeresError("FP16 needs a GPU: the ONNX Runtime CPU engine would silently run FP32; "
                           "build --precision fp32 here, or FP16 with --backend tensorrt on a GPU machine")
    quantized = cfg.precision in ("int8", "mixed")
    if backend == "openvino":
        from edgeres.backends.openvino.loader import openvino

        if cfg.precision != "int8":
            raise EdgeresError(f"--backend openvino builds INT8 engines only (--precision int8); for "
                               f"--precision {cfg.precision} use --backend onnxruntime")
        openvino()  # installed? (before minutes of calibration)
    if quantized and cfg.normalize_in_network:
        raise EdgeresError(f"--uint8-input is not supported with --precision {cfg.precision} yet; use float input")
    trt_plan = None
    if backend == "tensorrt" and (cfg.calib is None or cfg.precision == "mixed"):
        from edgeres.backends.trt.runner import check_tensorrt_available

        check_tensorrt_available()  # before minutes of calibration or sensitivity analysis
        trt_plan = _check_tensorrt_request(cfg)  # so is a request this TensorRT or device refuses (e.g. DLA rules)
    calib = resolve_calibration(cfg) if quantized else None
    plan = plan_mixed_precision(cfg, calib) if cfg.precision == "mixed" else None
    if backend == "tensorrt":
        from edgeres.backends.trt.runner import check_tensorrt_available

        if calib is not None and plan is None:
            check_qdq_for_tensorrt(calib.qdq_onnx)

        check_tensorrt_available()
        trt_plan = trt_plan or _check_tensorrt_request(cfg)  # version, device and option conflicts, before export
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
        engine_file = tmp / (out.name + ENGINE_SUFFIXES[backend])
        if backend == "tensorrt":
            manifest = _build_tensorrt(cfg, calib, tmp, engine_file, trt_plan | {"mixed": plan})
        elif backend == "openvino":
            manifest = _build_openvino_int8(cfg, calib, engine_file)
        elif calib is not None:
            manifest = _build_onnxruntime_int8(cfg, calib, tmp, engine_file, plan)
        else:
            manifest = _build_onnxruntime(cfg, tmp, engine_file)
        manifest["build_seconds"] = round(time.perf_counter() - start, 2)
        manifest["backend_choice"] = {"requested": cfg.backend, "picked": backend, "reason": reason}
        write_json_atomic(tmp / (out.name + MANIFEST_SUFFIX), manifest)
        replace_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / engine_file.name, manifest


def _check_tensorrt_request(cfg: BuildConfig) -> dict:
    """The installed TensorRT's features and this GPU, with the request checked against both (warnings kept)."""
    import warnings

    import tensorrt

    from edgeres.backends.trt import versions
    from edgeres.backends.trt.loader import trt_current_facts

    opts = cfg.tensorrt or TrtBuildOptions()
    feat = versions.features(tensorrt.__version__)
    facts = trt_current_facts()
    if facts.get("compute_capability") is None:
        raise EdgeresError("no NVIDIA GPU found (CUDA runtime and nvidia-smi see none): TensorRT engines are built on "
                           "the GPU they run on; 'edgeres doctor' says what is missing")
    found = versions.check_request(
        feat, cfg.precision, opts.int8_from, opts.dla_core, facts.get("dla_cores"), opts.version_compatible,
        opts.hardware_compat, opts.builder_opt_level, facts.get("compute_capability"), jetson=bool(facts.get("jetson")))
    batches = versions.batch_profile(opts.min_batch, opts.opt_batch, cfg.max_batch, dla=opts.dla_core is not None)
    for message in found:
        warnings.warn(message, stacklevel=3)
    return {"features": feat, "facts": facts, "options": opts, "warnings": found, "batches": batches}


def _build_tensorrt(cfg: BuildConfig, calib, folder: Path, engine_file: Path, plan: dict) -> dict:
    """Export (or take the calibration's ONNX) -> TensorRT plan; the source ONNX stays beside the engine so the
    recorded trtexec command reproduces the build."""
    import onnx

    from edgeres.backends.trt import versions
    from edgeres.backends.trt.loader import build_plan, default_timing_cache, fp16_onnx, onnx_input
    from edgeres.export import export_checkpoint
    from edgeres.models.checkpoint import load_checkpoint
    from edgeres.quant.trt_cache import write_cache

    feat, facts, opts = plan["features"], plan["facts"], plan["options"]
    config = load_checkpoint(cfg.model).config
    name = Path(cfg.out).name
    source, calib_cache, export = folder / f"{name}.source.onnx", None, None
    if calib is None:
        export = export_checkpoint(cfg.model, source, opset=cfg.opset, exporter=cfg.exporter,
                                   normalize_in_network=cfg.normalize_in_network).to_dict()
    elif plan["mixed"] is not None:  # the Q/DQ artifact with the plan's sensitive layers left float
        onnx.save(_mixed_qdq(calib, plan["mixed"]), str(source))
    else:
        shutil.copyfile(calib.fp32_onnx if opts.int8_from == "cache" else calib.qdq_onnx, source)
    if calib is not None:
        export = {"exporter": "torchscript", "opset": 17, "output_names": output_names(config.task),
                  "fp32_onnx_sha256": calib.scales.model.get("onnx_sha256")}
        if opts.int8_from == "cache":
            calib_cache = folder / f"{name}.calib.cache"
            write_cache(calib.scales, str(feat.version), calib_cache)
    if feat.strongly_typed and cfg.precision == "fp16":  # TensorRT 11: the precision lives in the ONNX types
        typed = folder / f"{name}.fp16.onnx"
        fp16_onnx(source, typed)
        typed.replace(source)
    input_name, dims = onnx_input(source)
    timing = (None if opts.timing_cache == "off" else Path(opts.timing_cache) if opts.timing_cache
              else default_timing_cache(Path(cfg.out).resolve().parent, str(feat.version), facts["compute_capability"]))
    low, opt, high = plan["batches"]
    plan_bytes, result = build_plan(source, cfg.precision, opts, plan["batches"], timing, calib_cache)
    engine_file.write_bytes(plan_bytes)
    trtexec = versions.trtexec_command(
        feat, source.name, engine_file.name, input_name, dims[1:], cfg.precision, low, opt, high, opts.workspace_mib,
        str(timing.resolve()) if timing else None, opts.builder_opt_level, opts.dla_core, opts.version_compatible,
        opts.hardware_compat, calib_cache.name if calib_cache else None, engine_dir=Path(cfg.out).resolve())
    pre = config.preprocess.to_dict() | {"normalize_in_network": cfg.normalize_in_network}
    if cfg.normalize_in_network:
        pre["layout"] = "NHWC"
    manifest = make_manifest(
        cfg, config, pre, engine_file, backend="tensorrt",
        backend_info={"version_compatible": opts.version_compatible, "hardware_compat": opts.hardware_compat,
                      "dla_core": opts.dla_core, "int8_from": opts.int8_from if calib is not None else None,
                      "strongly_typed": feat.strongly_typed, "build_seconds": round(result.seconds, 2),
                      "layers": result.layers, "warnings": plan["warnings"] + result.warnings,
                      "timing_cache": result.timing_cache, "source_onnx": source.name, "trtexec": trtexec,
                      "batch_profile": {"min": low, "opt": opt, "max": high}, "dla": result.dla},
        input_info={"name": input_name, "shape": [-1, *dims[1:]],
                    "dtype": "uint8" if cfg.normalize_in_network else "float32", "max_batch": high,
                    "min_batch": low, "opt_batch": opt},  # opt: the batch TensorRT tuned the engine for
        export=export | {"path": None},
    )
    manifest["device"].update(gpu=facts.get("gpu"), compute_capability=facts.get("compute_capability"),
                              l4t=facts.get("l4t"), dla_core=opts.dla_core)
    if calib is not None:
        manifest["calibration"] = {"folder": str(calib.folder.resolve()), "method": calib.scales.method,
                                   "images": calib.scales.data.get("images"),
                                   "scales_sha256": file_sha256(calib.folder / "scales.json")}
    if plan["mixed"] is not None:
        manifest["mixed"] = plan["mixed"].to_dict()
    return manifest


def _mixed_qdq(calib, mixed):
    import onnx

    from edgeres.quant.checker import check_qdq_model
    from edgeres.quant.qdq import write_qdq

    qdq = write_qdq(onnx.load(str(calib.fp32_onnx)), calib.scales, set(mixed.float_layers))
    problems = check_qdq_model(qdq, set(mixed.float_layers))
    if problems:
        raise EdgeresError(f"the mixed Q/DQ model breaks TensorRT rules: {problems[0]}")
    return qdq


def _build_onnxruntime(cfg: BuildConfig, folder: Path, engine_file: Path) -> dict:
    from edgeres.backends.onnxrt.loader import write_optimized_model
    from edgeres.export import export_checkpoint
    from edgeres.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(cfg.model)
    exported = folder / "exported.onnx"
    result = export_checkpoint(cfg.model, exported, opset=cfg.opset, exporter=cfg.exporter,
                               normalize_in_network=cfg.normalize_in_network)
    write_optimized_model(exported, engine_file, cfg.opt_level)
    exported.unlink()
    config = ckpt.config
    pre = config.preprocess.to_dict()
    pre["normalize_in_network"] = cfg.normalize_in_network
    if cfg.normalize_in_network:
        pre["layout"] = "NHWC"
    h, w = config.preprocess.input_size
    shape = [-1, h, w, 3] if cfg.normalize_in_network else [-1, 3, h, w]
    return make_manifest(
        cfg, config, pre, engine_file, backend="onnxruntime",
        backend_info={"saved_opt_level": cfg.opt_level, "runtime_opt_level": "all",
                      "isa_bound": cfg.opt_level == "all"},
        input_info={"name": result.input_name, "shape": shape,
                    "dtype": "uint8" if cfg.normalize_in_network else "float32", "max_batch": cfg.max_batch},
        export=result.to_dict() | {"path": None},
    )


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


def check_qdq_for_tensorrt(qdq_onnx: Path) -> None:
    """Run the TensorRT-rule checker; a TensorRT build of a file that breaks the rules is refused."""
    import onnx

    from edgeres.quant.checker import check_qdq_model

    problems = check_qdq_model(onnx.load(str(qdq_onnx)))
    if problems:
        raise EdgeresError(f"{qdq_onnx} breaks {len(problems)} TensorRT Q/DQ rule(s): "
                           + "; ".join(str(p) for p in problems[:3]))


def _build_onnxruntime_int8(cfg: BuildConfig, calib, folder: Path, engine_file: Path, plan=None) -> dict:
    """Q/DQ artifact -> CPU rewrite -> ONNX Runtime-optimized file whose every Conv/Gemm is an integer kernel
    (except, for ``mixed``, the layers the plan keeps float; their Q/DQ artifact is saved beside the engine)."""
    import onnx

    from edgeres.backends.onnxrt.loader import write_optimized_model
    from edgeres.models.checkpoint import load_checkpoint
    from edgeres.quant.checker import check_qdq_model
    from edgeres.quant.cpu import check_integer_kernels, rewrite_for_cpu
    from edgeres.quant.mixed import cpu_float_layers, output_conv_layers
    from edgeres.quant.qdq import write_qdq

    config = load_checkpoint(cfg.model).config
    float_layers = set(plan.float_layers) if plan is not None else set()
    if plan is not None:
        qdq = write_qdq(onnx.load(str(calib.fp32_onnx)), calib.scales, float_layers)
        problems = check_qdq_model(qdq, float_layers)
        if problems:
            raise EdgeresError(f"the mixed Q/DQ model breaks TensorRT rules: {problems[0]}")
        onnx.save(qdq, str(folder / (engine_file.stem + ".qdq.onnx")))
    else:
        qdq = onnx.load(str(calib.qdq_onnx))
    cpu = rewrite_for_cpu(qdq, calib.scales)
    cpu_file = folder / "cpu.qdq.onnx"
    onnx.save(cpu, str(cpu_file))
    write_optimized_model(cpu_file, engine_file, cfg.opt_level)
    cpu_file.unlink()
    cpu_float = cpu_float_layers(onnx.load(str(calib.fp32_onnx)), float_layers) if plan is not None else set()
    output_convs = output_conv_layers(qdq)
    optimized = onnx.load(str(engine_file))
    check_integer_kernels(optimized, cpu_float | output_convs)
    if plan is not None:
        plan.cpu_float_layers = sorted(cpu_float)
    h, w = config.preprocess.input_size
    scales = calib.scales
    return make_manifest(
        cfg, config, config.preprocess.to_dict(), engine_file, backend="onnxruntime",
        backend_info={"saved_opt_level": cfg.opt_level, "runtime_opt_level": "all",
                      "isa_bound": cfg.opt_level == "all"} | integer_kernel_facts("onnxruntime", optimized),
        input_info={"name": "input", "shape": [-1, 3, h, w], "dtype": "float32", "max_batch": cfg.max_batch},
        export={"exporter": "torchscript", "opset": 17, "output_names": output_names(config.task),
                "fp32_onnx_sha256": scales.model.get("onnx_sha256")},
    ) | {"calibration": calibration_facts(calib), "cpu_float_output_layers": sorted(output_convs)} | (
        {"mixed": plan.to_dict()} if plan is not None else {})


def _build_openvino_int8(cfg: BuildConfig, calib, engine_file: Path) -> dict:
    """Q/DQ artifact -> its OpenVINO form (int8 weights, no other value changed), compiled once here to check
    that every Conv/Gemm of OpenVINO's execution graph runs as an integer kernel."""
    import onnx

    from edgeres.backends.openvino.loader import write_int8_engine
    from edgeres.models.checkpoint import load_checkpoint

    config = load_checkpoint(cfg.model).config
    h, w = config.preprocess.input_size
    facts = write_int8_engine(onnx.load(str(calib.qdq_onnx)), engine_file, (1, 3, h, w))
    scales = calib.scales
    return make_manifest(
        cfg, config, config.preprocess.to_dict(), engine_file, backend="openvino",
        backend_info=facts | {"isa_bound": False} | integer_kernel_facts("openvino", onnx.load(str(engine_file))),
        input_info={"name": "input", "shape": [-1, 3, h, w], "dtype": "float32", "max_batch": cfg.max_batch},
        export={"exporter": "torchscript", "opset": 17, "output_names": output_names(config.task),
                "fp32_onnx_sha256": scales.model.get("onnx_sha256")},
    ) | {"calibration": calibration_facts(calib)}


def integer_kernel_facts(backend: str, model) -> dict:
    """What an INT8 manifest records of its integer kernels: how many, the largest sum of two neighbouring u8 x s8
    products any of them can form (``quant.cpu.integer_kernel_bounds``), whether that fits in int16 (then the
    engine is exact on every x86 ISA, VNNI or not), and the guarantee that follows on the CPU it was built on."""
    from edgeres.backends.cpu_int8 import guarantee
    from edgeres.quant.cpu import integer_kernel_bounds
    from edgeres.sysinfo import cpu_facts

    bounds = integer_kernel_bounds(model)
    free = bool(bounds) and all(b.exact for b in bounds)
    return {"integer_kernels": len(bounds), "largest_pair_sum": max((b.pair_max for b in bounds), default=0),
            "saturation_free": free, "guarantee": guarantee(backend, cpu_facts(), free)}


def calibration_facts(calib) -> dict:
    """What an INT8 manifest records of its calibration (reports label rows with it; rebuilds check it)."""
    scales = calib.scales
    return {"folder": str(calib.folder.resolve()), "method": scales.method, "percentile": scales.percentile,
            "source": scales.source, "images": scales.data.get("images"), "data_sha256": scales.data.get("sha256"),
            "scales_sha256": file_sha256(calib.folder / "scales.json")}


def make_manifest(cfg: BuildConfig, config, preprocess: dict, engine_file: Path, backend: str, backend_info: dict,
                  input_info: dict, export: dict) -> dict:
    """The manifest of a freshly built engine (schema ``SCHEMA_VERSION``)."""
    from edgeres.sysinfo import cpu_facts

    cpu = cpu_facts()
    return {
        "schema_version": SCHEMA_VERSION,
        "edgeres_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "task": config.task,
        "arch": config.arch,
        "class_names": list(config.class_names),
        "input": input_info,
        "outputs": export["output_names"],
        "preprocess": preprocess,
        "precision": cfg.precision,
        "source": {"checkpoint": str(Path(cfg.model).resolve()), "sha256": file_sha256(Path(cfg.model))},
        "engine": {"file": engine_file.name, "sha256": file_sha256(engine_file), "size": engine_file.stat().st_size},
        "export": {k: v for k, v in export.items() if k != "path"},
        "backend": {"name": backend, "version": backend_version(backend), **backend_info},
        "device": {"cpu_isa": cpu["isa"], "cpu_model": cpu["model"], "arch": cpu["arch"], "gpu": None,
                   "compute_capability": None},
        "build_options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()
                          if k not in ("force", "build_command", "backend_reason")},
        "build_command": cfg.build_command,
    } | ({"detection": detection_defaults(cfg)} if config.task == "detect" else {})


def detection_defaults(cfg: BuildConfig) -> dict:
    """How a detector's output is decoded, recorded so every consumer decodes it the same way."""
    if not 0.0 <= cfg.score_threshold <= 1.0 or not 0.0 < cfg.nms_iou <= 1.0:
        raise EdgeresError(f"--score-threshold must be in [0, 1] and --nms-iou in (0, 1]; got {cfg.score_threshold} "
                           f"and {cfg.nms_iou}")
    return {"decoder": "centernet", "stride": 4, "score_threshold": cfg.score_threshold, "nms_iou": cfg.nms_iou,
            "max_detections": 100}
