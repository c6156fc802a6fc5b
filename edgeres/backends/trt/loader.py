"""Builds TensorRT engines from ONNX and deserializes them (only bytes that match their manifest's hash).

Everything TensorRT-specific that differs per version comes from ``versions``; the pure helpers here
(ONNX facts, parser-error and layer-report formatting, FP16-typed ONNX for TensorRT 11) run on any CPU.
tensorrt and onnxconverter-common are imported lazily.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgeres.backends.trt import versions
from edgeres.errors import EdgeresError, require

COMPUTE_LAYER_TYPES = ("convolution", "gemm", "matrixmultiply", "fullyconnected", "deconvolution")
_PRECISION_WORDS = {
    "int8": "int8",
    "fp16": "fp16",
    "half": "fp16",
    "fp32": "fp32",
    "float": "fp32",
    "bf16": "bf16",
    "fp8": "fp8",
    "int32": "int32",
    "int64": "int64",
    "bool": "bool",
    "uint8": "uint8",
}


@dataclass
class TrtBuildOptions:
    """TensorRT build options (JSON-able: they are stored in the manifest).

    Args:
        workspace_mib: memory-pool limit for builder tactics (None: TensorRT's default, the device memory).
        min_batch: optimization profile minimum for the batch axis (None: 1; DLA: the one fixed batch).
        opt_batch: the batch TensorRT tunes for (None: the minimum batch, so batch 1 by default: the camera loop's
            batch and the one latency is measured at; DLA: the one fixed batch). Recorded in the manifest.
        timing_cache: timing-cache file (None: ``engines/timing.trt<ver>.sm<cc>.cache`` next to the engines;
            "off": no cache).
        builder_opt_level: 0-5 (None: TensorRT's default, 3).
        dla_core: run on this DLA core with GPU fallback (Jetson Orin, TensorRT <= 10).
        version_compatible: engines that later TensorRT versions of the same major can run.
        hardware_compat: "none" or "ampere_plus" (runs on any Ampere-or-newer GPU).
        int8_from: "qdq" (the Q/DQ artifact, every version) or "cache" (implicit INT8, TensorRT <= 10).
    """

    workspace_mib: int | None = None
    min_batch: int | None = None
    opt_batch: int | None = None
    timing_cache: str | None = None
    builder_opt_level: int | None = None
    dla_core: int | None = None
    version_compatible: bool = False
    hardware_compat: str = "none"
    int8_from: str = "qdq"


@dataclass
class BuildResult:
    """What a build produced besides the engine bytes."""

    seconds: float
    layers: dict = field(default_factory=dict)  # summarize_layers()
    dla: dict | None = None  # dla_placement(): network layers DLA can run, for a DLA build
    warnings: list[str] = field(default_factory=list)
    timing_cache: str | None = None
    trtexec: str = ""


def onnx_input(onnx_path: Path) -> tuple[str, list]:
    """(name, dims) of the ONNX file's only input; dims as ints, or names for symbolic axes."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise EdgeresError(f"{onnx_path} has {len(inputs)} inputs; edgeres builds single-input classifiers")
    dims = [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in inputs[0].type.tensor_type.shape.dim
    ]
    return inputs[0].name, dims


def onnx_names(onnx_path: Path) -> tuple[list[str], set[str]]:
    """(node names in graph order, every tensor name) of an ONNX file."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    tensors = {i.name for i in graph.input} | {o.name for o in graph.output}
    for node in graph.node:
        tensors.update(n for n in (*node.input, *node.output) if n)
    return [n.name or f"{n.op_type}#{i}" for i, n in enumerate(graph.node)], tensors


def fp16_onnx(src: Path, dst: Path) -> None:
    """Write an FP16-typed copy of ``src`` for TensorRT 11's strongly typed builds (onnxconverter-common).

    Inputs and outputs stay float32 (``keep_io_types``), so the engine is fed and read like the FP32 one.
    """
    import onnx

    try:
        from onnxconverter_common import float16
    except ImportError:
        raise EdgeresError(
            "FP16 on TensorRT 11 needs an FP16-typed ONNX, converted by onnxconverter-common; "
            "install it with: pip install 'edgeres[tensorrt]'"
        ) from None
    model = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))


def format_parser_errors(errors: list[dict], node_names: list[str]) -> str:
    """One line per ONNX parser error, naming the node (from the error, else by its index in the graph).

    Args:
        errors: ``{"desc", "node", "node_name", "node_operator"}`` per error; ``node_name``/``node_operator``
            are None on TensorRT 8.6, which only gives the node index.
        node_names: the ONNX graph's node names in order.
    """
    lines = []
    for err in errors:
        name = err.get("node_name")
        index = err.get("node", -1)
        if not name and index is not None and 0 <= index < len(node_names):
            name = node_names[index]
        where = f"node {name}" + (f" ({err['node_operator']})" if err.get("node_operator") else "") if name else "graph"
        lines.append(f"{where}: {err['desc']}")
    return "; ".join(lines)


def _precision_of(entry) -> str | None:
    if not isinstance(entry, dict):
        return None
    text = " ".join(str(entry.get(k, "")) for k in ("DataType", "Format/Datatype", "Format/DataType", "Format"))
    for word in re.findall(r"[A-Za-z]+\d*", text):
        if word.lower() in _PRECISION_WORDS:
            return _PRECISION_WORDS[word.lower()]
    return None


def summarize_layers(info_json: str, precision: str) -> dict:
    """Which compute layers (conv/gemm) ran in another precision than asked, from the engine inspector's JSON.

    Works on the 8.6/10 ("Format/Datatype") and 11 ("DataType") layouts. Layer names only (no details)
    means the engine was not built with detailed profiling: the answer is then unknown.

    Returns:
        ``{"layers": n, "compute_layers": n, "expected": p, "off_precision": [{"name", "type", "precision"}],
        "dla_layers": n, "known": bool}``.
    """
    expected = {"fp32": "fp32", "fp16": "fp16", "int8": "int8", "mixed": "int8"}[precision]
    try:
        layers = json.loads(info_json).get("Layers", [])
    except (ValueError, AttributeError):
        layers = []
    detailed = [item for item in layers if isinstance(item, dict)]
    off, compute, dla = [], 0, 0
    for item in detailed:
        kind = str(item.get("LayerType", ""))
        if "dla" in (kind + str(item.get("TacticName", ""))).lower():
            dla += 1
        if not any(t in kind.lower() for t in COMPUTE_LAYER_TYPES):
            continue
        compute += 1
        got = next((p for p in map(_precision_of, item.get("Inputs", [])) if p), None) or next(
            (p for p in map(_precision_of, item.get("Outputs", [])) if p), None
        )
        if got is not None and got != expected:
            off.append({"name": str(item.get("Name", "?")), "type": kind, "precision": got})
    return {
        "layers": len(layers),
        "compute_layers": compute,
        "expected": expected,
        "off_precision": off,
        "dla_layers": dla,
        "known": bool(detailed),
    }


def describe_build(manifest: dict) -> list[str]:
    """Lines a user reads after a TensorRT build: build time, layers off the asked precision, warnings, trtexec."""
    backend = manifest["backend"]
    layers = backend.get("layers") or {}
    lines = [f"TensorRT build {backend.get('build_seconds')} s"]
    if not layers.get("known"):
        lines.append("layer precisions: not reported by this engine")
    elif layers["off_precision"]:
        shown = ", ".join(f"{x['name']} ({x['precision']})" for x in layers["off_precision"][:5])
        lines.append(
            f"{len(layers['off_precision'])} of {layers['compute_layers']} conv/gemm layers run in another "
            f"precision than {layers['expected']}: {shown}"
        )
    else:
        lines.append(f"all {layers['compute_layers']} conv/gemm layers run in {layers['expected']}")
    if backend.get("dla_core") is not None:
        lines += dla_lines(backend)
    lines += [f"warning: {w}" for w in backend.get("warnings", [])]
    lines.append(f"reproduce with NVIDIA's tool (in the engine folder): {backend.get('trtexec')}")
    return lines


def dla_lines(backend: dict) -> list[str]:
    """What a DLA build reports: the fixed batch, how many network layers DLA runs and how many fall back to the
    GPU (the builder's own ``can_run_on_DLA``), and the engine inspector's DLA layers."""
    dla = backend.get("dla") or {}
    layers = backend.get("layers") or {}
    batches = backend.get("batch_profile") or {}
    lines = [
        f"DLA core {backend['dla_core']}: one fixed batch of {batches.get('max', '?')} (DLA has no dynamic "
        "shapes; every call must feed exactly that many images)"
    ]
    if dla.get("network_layers"):
        gpu = dla["gpu_layers"]
        lines.append(
            f"{dla['network_layers'] - len(gpu)} of {dla['network_layers']} network layers can run on DLA, "
            f"{len(gpu)} on the GPU (builder's can_run_on_DLA)"
        )
    if layers.get("known"):  # a DLA subgraph is one engine layer; this counts the layers that name DLA
        lines.append(
            f"engine inspector: {layers.get('dla_layers', 0)} of {layers['layers']} engine layers name DLA "
            "in their type or tactic"
        )
    return lines


def dla_placement(network, config) -> dict:
    """Which network layers the builder says DLA can run (``IBuilderConfig.can_run_on_DLA``), before the build.

    Returns:
        ``{"network_layers": n, "gpu_layers": [names of layers that fall back to the GPU]}``.
    """
    gpu = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if not config.can_run_on_DLA(layer):
            gpu.append(str(layer.name))
    return {"network_layers": int(network.num_layers), "gpu_layers": gpu}


def dla_warnings(dla: dict | None) -> list[str]:
    """Warnings for a DLA build whose layers (some or all) fall back to the GPU, from the builder's answer."""
    if not dla or not dla["gpu_layers"]:
        return []
    if len(dla["gpu_layers"]) == dla["network_layers"]:
        return ["no layer of this network can run on DLA: the whole engine runs on the GPU; build without --dla-core"]
    shown = ", ".join(dla["gpu_layers"][:5])
    return [
        f"{len(dla['gpu_layers'])} of {dla['network_layers']} layers fall back from DLA to the GPU (e.g. {shown}); "
        "they run on the GPU, not on DLA"
    ]


def default_timing_cache(engines_dir: Path, version: str, compute_capability: str | None) -> Path:
    """``engines/timing.trt10.3.0.sm8.7.cache``: one cache per TensorRT version and GPU, reused across builds."""
    return Path(engines_dir) / f"timing.trt{version}.sm{compute_capability or 'unknown'}.cache"


def gpu_identity() -> dict:
    """``{"gpu", "compute_capability"}`` of device 0 from the CUDA runtime, else nvidia-smi; None values if none."""
    from edgeres.backends.trt.buffers import cuda_status

    status = cuda_status()
    if status["device"]:
        return {"gpu": status["device"]["name"], "compute_capability": status["device"]["compute_capability"]}
    from edgeres.device.gpu import gpu_facts

    gpus = gpu_facts().get("gpus") or []
    return {"gpu": gpus[0]["name"] if gpus else None, "compute_capability": gpus[0]["compute_cap"] if gpus else None}


def trt_current_facts() -> dict:
    """This machine's facts a TensorRT engine depends on: GPU name and compute capability (CUDA runtime, as
    recorded at build time), L4T release, DLA core count (0 off a Jetson) and whether it is a Jetson."""
    from edgeres.device.jetson import jetson_facts

    jetson = jetson_facts()
    return gpu_identity() | {
        "l4t": jetson["l4t"] if jetson else None,
        "dla_cores": dla_core_count() if jetson else 0,
        "jetson": jetson is not None,
    }


def dla_core_count(trt=None) -> int | None:
    """DLA cores of this device (0 off a Jetson; None if TensorRT cannot be asked)."""
    from edgeres.device.jetson import jetson_facts

    if jetson_facts() is None:
        return 0
    try:
        trt = trt or require("tensorrt", "tensorrt")
        # A Runtime is cheap next to a Builder (which loads the builder resources), and this runs on every
        # open_engine on a Jetson.
        runtime = trt.Runtime(shared_logger(trt))
        return int(runtime.num_DLA_cores)
    except Exception:
        return None


_LOGGER = None  # the one logger every Builder, Runtime and refitter gets


def shared_logger(trt):
    """The process's one TensorRT logger: prints warnings and keeps errors, so a failed build or deserialization
    can say why.

    TensorRT keeps the logger it was first given for everything the process creates (older headers: "the logger
    is internally considered a singleton, multiple instances of IRuntime and/or IBuilder must all use the same
    logger"), so a second logger made per call would never see the errors of, say, the deserialization inside a
    build. One module-level logger also outlives every object made with it, as TensorRT requires.
    """
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = make_logger(trt)
    return _LOGGER


def make_logger(trt):
    """A TensorRT logger that prints warnings and keeps errors (use ``shared_logger``; this makes a new one)."""

    class KeepErrors(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.ERROR, trt.ILogger.INTERNAL_ERROR):
                self.errors.append(str(msg))
            elif severity == trt.ILogger.WARNING:
                print(f"[TensorRT] {msg}", file=sys.stderr)

    return KeepErrors()


def errors_since(logger, mark: int) -> str:
    """The last errors ``logger`` kept after ``mark`` (an earlier ``len(logger.errors)``), joined; '' if none."""
    return "; ".join(logger.errors[mark:][-3:])


def _parse(trt, feat, network, logger, onnx_path: Path, mark: int = 0):
    parser = trt.OnnxParser(network, logger)
    if parser.parse_from_file(str(onnx_path)):
        return parser
    errors = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        errors.append(
            {
                "desc": error.desc(),
                "node": error.node(),
                "node_name": error.node_name() if feat.parser_node_names else None,
                "node_operator": error.node_operator() if feat.parser_node_names else None,
            }
        )
    node_names, _ = onnx_names(onnx_path)
    reason = format_parser_errors(errors, node_names) or errors_since(logger, mark) or "no reason given"
    raise EdgeresError(f"TensorRT {feat.version} cannot parse {onnx_path.name}: {reason}")


def build_plan(
    onnx_path: Path,
    precision: str,
    opts: TrtBuildOptions,
    batches: tuple[int, int, int],
    timing_cache: Path | None,
    calib_cache: Path | None = None,
) -> tuple[bytes, BuildResult]:
    """Build a serialized engine (plan) from an ONNX file.

    Args:
        onnx_path: the ONNX to parse: FP32 export, FP16-typed export (11), Q/DQ artifact, or the FP32 export
            the calibration cache's tensor names refer to (implicit INT8).
        precision: fp32, fp16, int8 or mixed.
        opts: build options (already checked with ``versions.check_request``).
        batches: (min, opt, max) of the batch axis, from ``versions.batch_profile`` (one batch for DLA).
        timing_cache: read (if present) and written back after the build; None for no cache.
        calib_cache: the calibration cache of an implicit INT8 build.

    Raises:
        EdgeresError: the parser's errors with node names, or the builder's errors.
    """
    trt = require("tensorrt", "tensorrt")
    feat = versions.features(trt.__version__)
    logger = shared_logger(trt)
    mark = len(logger.errors)
    builder = trt.Builder(logger)
    network = builder.create_network(versions.network_flags(feat, trt))
    parser = _parse(trt, feat, network, logger, Path(onnx_path), mark)  # kept alive: the network uses its weights
    config = builder.create_builder_config()
    if opts.workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace_mib) << 20)
    tensor = network.get_input(0)
    dims = list(tensor.shape)[1:]
    low, opt, high = batches
    profile = builder.create_optimization_profile()
    profile.set_shape(tensor.name, [low, *dims], [opt, *dims], [high, *dims])
    config.add_optimization_profile(profile)
    for flag in versions.precision_flags(feat, precision, trt):
        config.set_flag(flag)
    calibrator = None
    if calib_cache is not None:
        calibrator = _use_cache(trt, feat, builder, config, tensor.name, dims, Path(onnx_path), Path(calib_cache))
    if opts.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(opts.dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        dla = dla_placement(network, config)
    else:
        dla = None
    if opts.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if opts.hardware_compat == "ampere_plus":
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    if opts.builder_opt_level is not None:
        config.builder_optimization_level = int(opts.builder_opt_level)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    warnings, tcache = _load_timing_cache(config, timing_cache)
    start = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    del calibrator, parser
    if plan is None:
        raise EdgeresError(
            f"TensorRT {feat.version} could not build {Path(onnx_path).name}: "
            + (errors_since(logger, mark) or "no reason given")
        )
    plan = bytes(plan)
    if timing_cache is not None:
        from edgeres.fileio import atomic_path

        timing_cache.parent.mkdir(parents=True, exist_ok=True)
        tcache = config.get_timing_cache() or tcache
        with atomic_path(timing_cache) as tmp:
            Path(tmp).write_bytes(bytes(tcache.serialize()))
    runtime, engine = deserialize(plan, {"version_compatible": opts.version_compatible, "dla_core": opts.dla_core}, trt)
    inspector = engine.create_engine_inspector()
    info = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    del inspector, engine, runtime
    layers = summarize_layers(info, precision)
    if opts.dla_core is not None:
        warnings += dla_warnings(dla)
    return plan, BuildResult(
        seconds=seconds,
        layers=layers,
        warnings=warnings,
        dla=dla,
        timing_cache=str(timing_cache) if timing_cache else None,
    )


def _use_cache(trt, feat, builder, config, input_name: str, dims: list, onnx_path: Path, cache: Path):
    from edgeres.backends.trt.calibrator import check_cache, make_calibrator

    _, tensors = onnx_names(onnx_path)
    check_cache(cache, str(feat.version), tensors)
    calibrator = make_calibrator(trt, cache.read_bytes())
    config.int8_calibrator = calibrator
    profile = builder.create_optimization_profile()  # calibration needs static shapes, even when only read
    profile.set_shape(input_name, [1, *dims], [1, *dims], [1, *dims])
    config.set_calibration_profile(profile)
    return calibrator


def _load_timing_cache(config, path: Path | None) -> tuple[list[str], object]:
    """Attach the timing cache at ``path`` to ``config``, or a fresh one (with a warning saying why).

    ``create_timing_cache`` returns None for bytes that are not a timing cache (a truncated or corrupt file), and
    ``set_timing_cache`` refuses (False) a cache from another TensorRT version or GPU; either way the build goes on
    with a new, empty cache, which is written back afterwards.

    Returns:
        (warnings, the attached ITimingCache: keep it alive until the build ends, as TensorRT requires).
    """
    if path is None:
        return [], None
    data = Path(path).read_bytes() if Path(path).is_file() else b""
    if not data:
        fresh = config.create_timing_cache(b"")
        config.set_timing_cache(fresh, False)
        return [], fresh
    cache = config.create_timing_cache(data)
    if cache is not None and config.set_timing_cache(cache, False):
        return [], cache
    why = (
        "is not a TensorRT timing cache (corrupt or truncated)"
        if cache is None
        else "is from another TensorRT version or GPU"
    )
    fresh = config.create_timing_cache(b"")
    if fresh is None or not config.set_timing_cache(fresh, False):
        raise EdgeresError(
            f"TensorRT could not create an empty timing cache (after {path} {why}); build with --timing-cache off"
        )
    return [f"timing cache {path} {why}; started a new one (it is rewritten after this build)"], fresh


def load_plan(path: Path, sha256: str | None) -> bytes:
    """The engine file's bytes, only if they hash to the manifest's ``sha256`` (engines are executables).

    Raises:
        EdgeresError: no hash to check against, or the bytes differ.
    """
    if not sha256:
        raise EdgeresError(
            f"{path}: no sha256 to check the engine against; edgeres only loads engines it can check "
            "(rebuild it with 'edgeres build')"
        )
    data = Path(path).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise EdgeresError(
            f"{path}'s bytes do not match its manifest: it was modified or replaced after the build; "
            "refusing to load it"
        )
    return data


def deserialize(plan: bytes, backend_info: dict, trt=None):
    """(runtime, ICudaEngine) from checked plan bytes; keep the runtime as long as the engine.

    Args:
        plan: bytes from ``load_plan`` (or a fresh build).
        backend_info: the manifest's ``backend`` section (``version_compatible``, ``dla_core``).
        trt: the tensorrt module (imported if None).
    """
    trt = trt or require("tensorrt", "tensorrt")
    feat = versions.features(trt.__version__)
    logger = shared_logger(trt)
    mark = len(logger.errors)
    runtime = trt.Runtime(logger)
    if backend_info.get("version_compatible"):
        runtime.engine_host_code_allowed = True  # the lean runtime inside a version-compatible plan
    if backend_info.get("dla_core") is not None and feat.dla:
        runtime.DLA_core = int(backend_info["dla_core"])
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise EdgeresError(
            f"TensorRT {feat.version} could not deserialize the engine: "
            + (errors_since(logger, mark) or "no reason given")
        )
    return runtime, engine
