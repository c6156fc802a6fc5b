"""Every difference between the TensorRT versions edgeres supports, in one module.

| | 8.6 (JetPack 6.0) | 10.x (10.3: JetPack 6.1/6.2) | 11.x (desktop/server) |
| --- | --- | --- | --- |
| network creation | ``EXPLICIT_BATCH`` flag | no flag | strongly typed (the flag is accepted) |
| FP16 | ``BuilderFlag.FP16`` | ``BuilderFlag.FP16`` | an FP16-typed ONNX (no precision flags) |
| INT8 from the Q/DQ ONNX | ``BuilderFlag.INT8`` | ``BuilderFlag.INT8`` | as typed in the ONNX |
| INT8 from a calibration cache | calibrator | calibrator | removed: a clear error |
| DLA (Orin) with GPU fallback | yes | up to 10.7 (JetPack 6: 10.3) | 11.4.1+ (JetPack 7.2.2+), FP16 only |
| DLA INT8 | from a calibration cache | from a calibration cache | refused (no calibration caches) |
| parser errors name the node | index only (names from the ONNX) | ``node_name()`` | ``node_name()`` |
| version-compatible engines run on | 8.x (>= build), 10.x | 10.x (>= build), 11.x | 11.x (>= build) |
| hardware-compatible engines | discrete GPUs | discrete GPUs | discrete GPUs (never JetPack) |

DLA rules, from TensorRT's "Working with DLA" pages: DLA has no dynamic shapes (the profile's min, opt and max
must be equal and the runtime shape equal to them), and on 8.6/10.x DLA runs INT8 only from a calibration cache
(implicit quantization): Q/DQ layers fall back to the GPU. TensorRT 10.7 was the last release with DLA before
11.4.1 brought it back on JetPack 7.2.2 or later (Jetson AGX Orin; not Thor, not DRIVE OS).

Nothing here imports tensorrt: callers pass the version string, or the module when a TensorRT
object is needed. ``used_names`` lists every TensorRT attribute the backend touches for a version;
``tests/test_trt_conformance.py`` checks each list against the names that version's compiled bindings
export, so a call a version lacks fails in CI instead of on a user's Jetson.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from edgeres.errors import EdgeresError

SUPPORTED = "8.6, 10.x, 11.x"
HARDWARE_COMPAT = ("none", "ampere_plus")
INT8_SOURCES = ("qdq", "cache")
TRT_PRECISIONS = ("fp32", "fp16", "int8", "mixed")  # mixed: the Q/DQ artifact with sensitive layers kept float


@dataclass(frozen=True, order=True)
class TrtVersion:
    """A TensorRT version as major, minor, patch (the build number is kept only in ``text``)."""

    major: int
    minor: int
    patch: int
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> TrtVersion:
        """'10.3.0.30' -> TrtVersion(10, 3, 0).

        Raises:
            EdgeresError: the text is not a version.
        """
        m = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", str(text))
        if not m:
            raise EdgeresError(f"'{text}' is not a TensorRT version (like 8.6.1 or 10.3.0)")
        return cls(int(m[1]), int(m[2]), int(m[3] or 0), str(text).strip())

    def __str__(self) -> str:
        return self.text or f"{self.major}.{self.minor}.{self.patch}"


@dataclass(frozen=True)
class Features:
    """What one TensorRT version can do, as the backend uses it."""

    version: TrtVersion
    explicit_batch_flag: bool  # 8.6 networks need EXPLICIT_BATCH; 10 dropped implicit batch
    precision_flags: bool  # weakly typed builds with BuilderFlag.FP16/INT8 (<= 10)
    strongly_typed: bool  # 11: every network is strongly typed; precision comes from the ONNX types
    implicit_int8: bool  # a calibrator serving a calibration cache (<= 10)
    dla: bool  # DLA cores with GPU fallback: 8.6, 10.0-10.7 (JetPack 6: 8.6, 10.3), 11.4.1+ (JetPack 7.2.2+)
    parser_node_names: bool  # ParserError.node_name() (>= 10)


def features(version: str | TrtVersion) -> Features:
    """The features of a TensorRT version.

    Raises:
        EdgeresError: a version edgeres does not support (anything but 8.6, 10.x and 11.x).
    """
    v = version if isinstance(version, TrtVersion) else TrtVersion.parse(version)
    if not ((v.major, v.minor) == (8, 6) or v.major in (10, 11)):
        raise EdgeresError(f"TensorRT {v} is not supported; supported: {SUPPORTED} (JetPack 6 ships 8.6 or 10.3)")
    le10 = v.major <= 10
    return Features(
        version=v,
        explicit_batch_flag=v.major == 8,
        precision_flags=le10,
        strongly_typed=not le10,
        implicit_int8=le10,
        dla=_has_dla(v),
        parser_node_names=v.major >= 10,
    )


def _has_dla(v: TrtVersion) -> bool:
    """DLA per TensorRT's own notes: 8.6 and 10.0-10.7 (10.7 was the last release with DLA), then 11.4.1 and
    later (Jetson AGX Orin on JetPack 7.2.2 or later); not 10.8-10.x nor 11.0-11.4.0."""
    if v.major == 8:
        return True
    if v.major == 10:
        return v.minor <= 7
    return (v.major, v.minor, v.patch) >= (11, 4, 1)


def no_dla_reason(v: TrtVersion) -> str:
    """Why this TensorRT version cannot build DLA engines (for a version where ``features(v).dla`` is False)."""
    if v.major == 10:
        return (
            f"TensorRT {v} has no DLA: 10.7 was the last 10.x release with DLA (JetPack 6 ships 8.6 or 10.3, "
            "which have it)"
        )
    return (
        f"TensorRT {v} has no DLA: TensorRT 11 brought DLA back in 11.4.1, on JetPack 7.2.2 or later (Jetson AGX "
        "Orin); JetPack 6's TensorRT 8.6 or 10.3 have it"
    )


def batch_profile(min_batch: int | None, opt_batch: int | None, max_batch: int, dla: bool = False) -> tuple:
    """The optimization profile of the batch axis as (min, opt, max).

    GPU engines: min defaults to 1 and opt to min, so the engine is tuned for the batch a camera loop and batch-1
    latency use; ``--opt-batch`` tunes for larger batches. DLA engines: one fixed batch, ``--max-batch``, because
    DLA has no dynamic shapes (TensorRT requires min = opt = max, and the runtime shape equal to them).

    Raises:
        EdgeresError: the batches are out of order, or differ for a DLA engine.
    """
    if dla:
        given = {"--min-batch": min_batch, "--opt-batch": opt_batch}
        differ = [f"{flag} {value}" for flag, value in given.items() if value is not None and value != max_batch]
        if differ:
            raise EdgeresError(
                f"DLA has no dynamic shapes: a DLA engine runs one fixed batch, --max-batch "
                f"{max_batch}, but {' and '.join(differ)} asked for a range; drop them, or build one "
                "fixed batch with --max-batch N (--max-batch 1 for a camera)"
            )
        return max_batch, max_batch, max_batch
    low = 1 if min_batch is None else min_batch
    opt = low if opt_batch is None else opt_batch
    if not 1 <= low <= opt <= max_batch:
        raise EdgeresError(
            f"the batch profile needs 1 <= --min-batch <= --opt-batch <= --max-batch; got {low} / {opt} / {max_batch}"
        )
    return low, opt, max_batch


def network_flags(feat: Features, trt) -> int:
    """The ``Builder.create_network`` flags for this version."""
    if feat.explicit_batch_flag:
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if feat.strongly_typed:
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def precision_flags(feat: Features, precision: str, trt) -> list:
    """The BuilderFlags a precision needs (none on 11, where the ONNX types decide)."""
    if not feat.precision_flags:
        return []
    return {
        "fp32": [],
        "fp16": [trt.BuilderFlag.FP16],
        "int8": [trt.BuilderFlag.INT8],
        "mixed": [trt.BuilderFlag.INT8],
    }[precision]  # the kept-float layers stay FP32, as measured


def _cc(compute_capability: str | None) -> tuple[int, int] | None:
    m = re.match(r"^(\d+)\.(\d+)$", str(compute_capability or "").strip())
    return (int(m[1]), int(m[2])) if m else None


def fast_precisions(compute_capability: str | None) -> dict:
    """Whether a GPU has fast FP16 and INT8, from its compute capability (as TensorRT's platform queries).

    INT8 is fast with DP4A or INT8 tensor cores: 6.1, 7.2 (Xavier), 7.5 and later; 6.0, 6.2 and 7.0 (V100)
    lack it. FP16 is fast on 5.3, 6.0, 6.2 and 7.0 and later. Unknown capability: both ``None``.
    """
    cc = _cc(compute_capability)
    if cc is None:
        return {"fp16": None, "int8": None}
    return {"fp16": cc in ((5, 3), (6, 0), (6, 2)) or cc >= (7, 0), "int8": cc in ((6, 1), (7, 2)) or cc >= (7, 5)}


def check_request(
    feat: Features,
    precision: str,
    int8_source: str = "qdq",
    dla_core: int | None = None,
    dla_cores: int | None = None,
    version_compatible: bool = False,
    hardware_compat: str = "none",
    builder_opt_level: int | None = None,
    compute_capability: str | None = None,
    jetson: bool = False,
) -> list[str]:
    """Refuse what this version or device cannot build; return warnings for what it builds slowly.

    Args:
        feat: the installed TensorRT's features.
        precision: fp32, fp16, int8 or mixed.
        int8_source: ``qdq`` (the Q/DQ artifact) or ``cache`` (implicit INT8 from the calibration cache).
        dla_core: the DLA core asked for, or None for the GPU.
        dla_cores: how many DLA cores this device has (None: unknown).
        version_compatible: build an engine newer TensorRT versions of the same major can run.
        hardware_compat: ``none`` or ``ampere_plus``.
        builder_opt_level: 0-5, or None for TensorRT's default (3).
        compute_capability: of the build GPU, like "8.7".
        jetson: the build machine is a Jetson (JetPack, integrated GPU).

    Raises:
        EdgeresError: a combination this version or device cannot build.
    """
    v = feat.version
    if precision not in TRT_PRECISIONS:
        raise EdgeresError(f"unknown precision '{precision}'; accepted: {', '.join(TRT_PRECISIONS)}")
    if int8_source not in INT8_SOURCES:
        raise EdgeresError(f"unknown INT8 source '{int8_source}'; accepted: {', '.join(INT8_SOURCES)}")
    if int8_source == "cache" and precision == "mixed":
        raise EdgeresError(
            "--precision mixed keeps layers float in the Q/DQ ONNX; a calibration cache cannot say "
            "that: use --int8-from qdq"
        )
    if int8_source == "cache" and precision == "int8" and not feat.implicit_int8:
        raise EdgeresError(
            f"TensorRT {v} has no implicit INT8 (calibrators and calibration caches were removed in "
            "11); build from the Q/DQ ONNX instead: --int8-from qdq"
        )
    if hardware_compat not in HARDWARE_COMPAT:
        raise EdgeresError(
            f"unknown hardware compatibility '{hardware_compat}'; accepted: {', '.join(HARDWARE_COMPAT)}"
        )
    if builder_opt_level is not None and not 0 <= builder_opt_level <= 5:
        raise EdgeresError(f"--builder-opt-level must be 0-5 (TensorRT's default is 3), got {builder_opt_level}")
    if hardware_compat != "none" and jetson:
        raise EdgeresError(
            "--hardware-compat ampere_plus is not supported on a Jetson: TensorRT's hardware "
            "compatibility is for discrete Ampere-or-newer GPUs, not JetPack or DRIVE OS; drop "
            "--hardware-compat and build on the device that runs the engine"
        )
    if dla_core is not None:
        if not feat.dla:
            raise EdgeresError(f"{no_dla_reason(v)}; drop --dla-core")
        if dla_cores == 0:
            raise EdgeresError(
                f"--dla-core {dla_core} asked, but this device has no DLA (DLA cores are on Jetson "
                "AGX Orin and Orin NX); drop --dla-core"
            )
        if dla_cores is not None and not 0 <= dla_core < dla_cores:
            raise EdgeresError(
                f"--dla-core {dla_core} does not exist; this device has DLA cores "
                f"{', '.join(map(str, range(dla_cores)))}"
            )
        if precision == "fp32":
            raise EdgeresError("DLA runs FP16 or INT8 only; build --precision fp16 or int8 with --dla-core")
        if version_compatible or hardware_compat != "none":
            raise EdgeresError(
                "DLA engines cannot be version- or hardware-compatible; drop --version-compatible "
                "and --hardware-compat with --dla-core"
            )
        if precision in ("int8", "mixed") and not feat.implicit_int8:
            raise EdgeresError(
                f"INT8 on DLA needs a calibration cache, and TensorRT {v} has none (removed in 11); "
                "build the DLA engine with --precision fp16"
            )
        if precision == "mixed":
            raise EdgeresError(
                "--precision mixed is a Q/DQ model, and DLA runs INT8 only from a calibration cache "
                "(its Q/DQ layers would run on the GPU); for DLA use --precision int8 --int8-from cache"
            )
        if precision == "int8" and int8_source == "qdq":
            raise EdgeresError(
                "DLA runs INT8 only from a calibration cache (implicit quantization): with the Q/DQ "
                "model its layers would fall back to the GPU; add --int8-from cache (same activation "
                "ranges, from the scales JSON), or build --precision fp16"
            )
    if hardware_compat == "ampere_plus" and _cc(compute_capability) is not None and _cc(compute_capability) < (8, 0):
        raise EdgeresError(
            f"--hardware-compat ampere_plus needs an Ampere or newer GPU to build on (compute "
            f"capability >= 8.0); this one is {compute_capability}"
        )
    warnings = []
    fast = fast_precisions(compute_capability)
    if precision in ("int8", "mixed") and fast["int8"] is False and dla_core is None:
        warnings.append(
            f"this GPU (compute capability {compute_capability}) has no fast INT8; INT8 will be slower "
            "than FP16 here: consider --precision fp16"
        )
    if precision == "fp16" and fast["fp16"] is False:
        warnings.append(
            f"this GPU (compute capability {compute_capability}) has no fast FP16; FP16 will not be "
            "faster than FP32 here"
        )
    return warnings


# Version-compatible engines across a major version, as TensorRT's support matrix lists them (8 -> 9 exists too, but
# edgeres does not run on 9). No other cross-major combination is supported (an 8.x engine never runs on 11).
VERSION_COMPAT_NEXT_MAJOR = {8: 10, 10: 11}


def version_compatible_runs(built: TrtVersion, here: TrtVersion) -> bool:
    """Whether a version-compatible engine built with ``built`` runs on ``here`` (TensorRT's documented rule:
    from 8.6 on, on the same major version at or after the build, and 8 -> 10, 10 -> 11)."""
    if (built.major, built.minor) < (8, 6) or here < built:
        return False
    return here.major == built.major or VERSION_COMPAT_NEXT_MAJOR.get(built.major) == here.major


def compat_problems(manifest: dict, current: dict) -> list[str]:
    """Why a TensorRT engine cannot be deserialized here (empty when it can).

    Args:
        manifest: the engine's manifest (``backend`` and ``device`` sections).
        current: this machine's facts: ``backend_version``, ``gpu``, ``compute_capability``, ``l4t`` and
            ``dla_cores`` (a missing key is "unknown").
    """
    backend, device = manifest["backend"], manifest.get("device", {})
    problems = []
    built, here = backend.get("version"), current.get("backend_version")
    if here is None:
        return [f"built with TensorRT {built}, this machine has no TensorRT installed"]
    b, h = TrtVersion.parse(built), TrtVersion.parse(here)
    if backend.get("version_compatible"):
        if not version_compatible_runs(b, h):
            later = VERSION_COMPAT_NEXT_MAJOR.get(b.major)
            runs_on = f"TensorRT {b.major}.x from {b.major}.{b.minor} on" + (f", and {later}.x" if later else "")
            problems.append(
                f"built version-compatible with TensorRT {built}: it runs on {runs_on}; this machine has {here}"
            )
    elif str(built) != str(here):
        problems.append(
            f"built with TensorRT {built}, this machine has {here} (engines are tied to the exact "
            "TensorRT version unless built with --version-compatible)"
        )
    cc_built, cc_here = device.get("compute_capability"), current.get("compute_capability")
    level = backend.get("hardware_compat", "none")
    if level == "ampere_plus" and (device.get("l4t") or current.get("l4t")):
        # Hardware compatibility is not supported on JetPack: such an engine is held to the GPU it was built on.
        if (device.get("gpu"), cc_built) != (current.get("gpu"), cc_here):
            problems.append(
                f"built for GPU {device.get('gpu')} (sm {cc_built}), this machine has "
                f"{current.get('gpu') or 'no GPU'} (sm {cc_here}); hardware-compatible engines do not "
                "cover Jetsons (TensorRT supports hardware compatibility on discrete GPUs only)"
            )
    elif level == "ampere_plus":
        if _cc(cc_here) is None or _cc(cc_here) < (8, 0):
            problems.append(
                f"built hardware-compatible for Ampere and newer GPUs; this machine has "
                f"{current.get('gpu') or 'no GPU'} (sm {cc_here})"
            )
    elif (device.get("gpu"), cc_built) != (current.get("gpu"), cc_here):
        problems.append(
            f"built for GPU {device.get('gpu')} (sm {cc_built}), this machine has "
            f"{current.get('gpu') or 'no GPU'} (sm {cc_here})"
        )
    if device.get("l4t") and current.get("l4t") != device.get("l4t") and not backend.get("version_compatible"):
        problems.append(
            f"built on L4T {device['l4t']} (JetPack), this machine has "
            f"{'L4T ' + current['l4t'] if current.get('l4t') else 'no L4T (not a Jetson)'}"
        )
    core = backend.get("dla_core")
    if core is not None:
        if not features(h).dla:
            problems.append(f"runs on DLA core {core}, and TensorRT {here} has no DLA")
        elif current.get("dla_cores") is not None and core >= current["dla_cores"]:
            problems.append(f"runs on DLA core {core}, this device has {current['dla_cores']} DLA core(s)")
    return problems


# Every TensorRT attribute the backend uses ("Class.attr", or a module-level "name"), by feature.
COMMON_NAMES = frozenset(
    {
        "__version__",
        "nptype",
        "Logger",
        "Logger.WARNING",
        "ILogger",
        "ILogger.log",
        "ILogger.Severity",
        "ILogger.ERROR",
        "ILogger.INTERNAL_ERROR",
        "ILogger.WARNING",
        "Builder",
        "Builder.create_network",
        "Builder.create_builder_config",
        "Builder.create_optimization_profile",
        "Builder.build_serialized_network",
        "NetworkDefinitionCreationFlag",
        "INetworkDefinition.num_inputs",
        "INetworkDefinition.get_input",
        "ITensor.name",
        "ITensor.shape",
        "OnnxParser",
        "OnnxParser.parse_from_file",
        "OnnxParser.num_errors",
        "OnnxParser.get_error",
        "ParserError.desc",
        "ParserError.node",
        "ParserError.code",
        "IBuilderConfig.set_memory_pool_limit",
        "MemoryPoolType.WORKSPACE",
        "IBuilderConfig.add_optimization_profile",
        "IOptimizationProfile.set_shape",
        "IBuilderConfig.set_flag",
        "IBuilderConfig.builder_optimization_level",
        "IBuilderConfig.create_timing_cache",
        "IBuilderConfig.set_timing_cache",
        "IBuilderConfig.get_timing_cache",
        "ITimingCache.serialize",
        "IBuilderConfig.profiling_verbosity",
        "ProfilingVerbosity.DETAILED",
        "BuilderFlag.VERSION_COMPATIBLE",
        "IBuilderConfig.hardware_compatibility_level",
        "HardwareCompatibilityLevel.AMPERE_PLUS",
        "HardwareCompatibilityLevel.NONE",
        "Runtime",
        "Runtime.deserialize_cuda_engine",
        "Runtime.engine_host_code_allowed",
        "ICudaEngine.create_engine_inspector",
        "EngineInspector.get_engine_information",
        "LayerInformationFormat.JSON",
        "ICudaEngine.num_io_tensors",
        "ICudaEngine.get_tensor_name",
        "ICudaEngine.get_tensor_mode",
        "ICudaEngine.get_tensor_dtype",
        "ICudaEngine.get_tensor_shape",
        "ICudaEngine.get_tensor_profile_shape",
        "ICudaEngine.create_execution_context",
        "TensorIOMode.INPUT",
        "IExecutionContext.set_input_shape",
        "IExecutionContext.get_tensor_shape",
        "IExecutionContext.set_tensor_address",
        "IExecutionContext.execute_async_v3",
        "INetworkDefinition.num_layers",
        "INetworkDefinition.get_layer",
        "ILayer.name",
    }
)
FEATURE_NAMES = {
    "explicit_batch_flag": frozenset({"NetworkDefinitionCreationFlag.EXPLICIT_BATCH"}),
    "strongly_typed": frozenset({"NetworkDefinitionCreationFlag.STRONGLY_TYPED"}),
    "precision_flags": frozenset({"BuilderFlag.FP16", "BuilderFlag.INT8"}),
    "implicit_int8": frozenset(
        {
            "IInt8EntropyCalibrator2",
            "IInt8EntropyCalibrator2.get_batch_size",
            "IInt8EntropyCalibrator2.get_batch",
            "IInt8EntropyCalibrator2.read_calibration_cache",
            "IInt8EntropyCalibrator2.write_calibration_cache",
            "IInt8EntropyCalibrator2.get_algorithm",
            "CalibrationAlgoType.ENTROPY_CALIBRATION_2",
            "IBuilderConfig.int8_calibrator",
            "IBuilderConfig.set_calibration_profile",
        }
    ),
    "dla": frozenset(
        {
            "DeviceType.DLA",
            "IBuilderConfig.default_device_type",
            "IBuilderConfig.DLA_core",
            "BuilderFlag.GPU_FALLBACK",
            "Runtime.DLA_core",
            "Runtime.num_DLA_cores",
            "IBuilderConfig.can_run_on_DLA",
        }
    ),
    "parser_node_names": frozenset({"ParserError.node_name", "ParserError.node_operator"}),
}


def used_names(feat: Features) -> set[str]:
    """Every TensorRT attribute the backend may touch on this version."""
    names = set(COMMON_NAMES)
    for flag, extra in FEATURE_NAMES.items():
        if getattr(feat, flag):
            names |= extra
    return names


def trtexec_engine_name(engine: str) -> str:
    """``r18.plan`` -> ``r18.trtexec.plan``: trtexec saves beside edgeres' engine, never over it (the manifest
    checks that file's hash)."""
    path = PurePosixPath(engine)
    return str(path.with_name(path.stem + ".trtexec" + (path.suffix or ".plan")))


def trtexec_command(
    feat: Features,
    onnx: str,
    engine: str,
    input_name: str,
    dims: list,
    precision: str,
    min_batch: int,
    opt_batch: int,
    max_batch: int,
    workspace_mib: int | None = None,
    timing_cache: str | None = None,
    builder_opt_level: int | None = None,
    dla_core: int | None = None,
    version_compatible: bool = False,
    hardware_compat: str = "none",
    calib_cache: str | None = None,
    engine_dir: str | Path | None = None,
) -> str:
    """The ``trtexec`` command line that builds the same engine with NVIDIA's own tool, run in the engine folder.

    Args:
        onnx, engine, calib_cache: file names in the engine folder; the engine is edgeres' ``.plan``, and trtexec
            saves to ``trtexec_engine_name(engine)`` beside it.
        min_batch, opt_batch, max_batch: the profile the build used (``batch_profile``; one batch for DLA).
        timing_cache: the timing-cache path; written relative to ``engine_dir`` when that is given.
        engine_dir: the engine folder the command is run in.
    """
    import os
    import shlex

    def shape(batch: int) -> str:
        return f"{input_name}:" + "x".join(str(d) for d in (batch, *dims))

    if dla_core is not None and not min_batch == opt_batch == max_batch:
        raise EdgeresError(f"a DLA engine has one fixed batch; got the profile {min_batch}/{opt_batch}/{max_batch}")
    args = [
        "trtexec",
        f"--onnx={onnx}",
        f"--saveEngine={trtexec_engine_name(engine)}",
        f"--minShapes={shape(min_batch)}",
        f"--optShapes={shape(opt_batch)}",
        f"--maxShapes={shape(max_batch)}",
    ]
    if feat.precision_flags:
        args += {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8"], "mixed": ["--int8"]}[precision]
    if calib_cache:
        args.append(f"--calib={calib_cache}")
    if workspace_mib:
        args.append(f"--memPoolSize=workspace:{workspace_mib}")  # MiB in 8.6, 10 and 11
    if timing_cache:
        if engine_dir is not None and os.path.isabs(timing_cache):
            timing_cache = os.path.relpath(timing_cache, engine_dir)
        args.append(f"--timingCacheFile={timing_cache}")
    if builder_opt_level is not None:
        args.append(f"--builderOptimizationLevel={builder_opt_level}")
    if dla_core is not None:
        args += [f"--useDLACore={dla_core}", "--allowGPUFallback"]
    if version_compatible:
        args.append("--versionCompatible")
    if hardware_compat == "ampere_plus":
        args.append("--hardwareCompatibilityLevel=ampere+")
    args.append("--profilingVerbosity=detailed")  # as edgeres builds: the engine inspector reports layer precisions
    return shlex.join(args)
