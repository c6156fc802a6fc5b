"""``edgeres build``: checkpoint -> engine folder with manifest."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from edgeres.backends import backend_names
from edgeres.backends.cpu_int8 import INT8_CPU_TARGETS
from edgeres.cli.model_source import model_options


class Precision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"
    mixed = "mixed"


# auto, then every engine backend in the table (edgeres.backends): a new backend is a new choice here too.
Backend = Enum("Backend", {name: name for name in ("auto", *backend_names())}, type=str)
Int8Cpu = Enum("Int8Cpu", {name: name for name in INT8_CPU_TARGETS}, type=str)


class OptLevel(str, Enum):
    basic = "basic"
    extended = "extended"
    all = "all"


class HardwareCompat(str, Enum):
    none = "none"
    ampere_plus = "ampere_plus"


class Int8From(str, Enum):
    qdq = "qdq"
    cache = "cache"


@model_options
def build(
    model: Path = typer.Option(None, "--model", help="Checkpoint, .pth state dict or .onnx [default: the "
                               "workspace's model]."),
    precision: Precision = typer.Option(Precision.fp32, "--precision"),
    backend: Backend = typer.Option(
        None, "--backend", show_default=False,
        help="auto: TensorRT with a GPU, else the fastest CPU engine installed and exact here (OpenVINO for INT8 "
             "classifiers on x86, else ONNX Runtime); openvino: INT8 on x86 CPUs (default: the workspace's "
             "build.backend, else auto).",
    ),
    out: Path = typer.Option(None, "--out", help="Engine folder [default: engines/<model>-<precision>]."),
    opset: int = typer.Option(17, "--opset"),
    exporter: str = typer.Option("torchscript", "--exporter", help="torchscript (opset <= 17 ok) or dynamo (18+)."),
    max_batch: int = typer.Option(32, "--max-batch", min=1, help="Largest batch the engine accepts."),
    opt_level: OptLevel = typer.Option(
        OptLevel.extended, "--opt-level",
        help="ONNX Runtime optimizations saved in the file; 'all' ties it to this CPU's ISA (recorded, checked).",
    ),
    uint8_input: bool = typer.Option(False, "--uint8-input", help="Normalize inside the network (uint8 input)."),
    calib: Path = typer.Option(None, "--calib", help="INT8: calibration folder from 'edgeres calibrate'."),
    qat: Path = typer.Option(None, "--qat", help="INT8 from a QAT checkpoint (its calibration is used)."),
    calib_data: Path = typer.Option(None, "--calib-data", help="INT8: calibrate from these images (or reuse)."),
    calib_method: str = typer.Option("entropy", "--calib-method", help="INT8: entropy, minmax, percentile, mse."),
    max_drop: float = typer.Option(0.5, "--max-drop", min=0.0, help="mixed: accepted drop vs FP32 in points of "
                                   "the task's metric (top-1 %, mAP@0.5 x 100)."),
    val_data: Path = typer.Option(None, "--val-data", help="mixed: labelled data for the sensitivity, as eval "
                                  "--data takes it [default: DIR/val beside the calibration's DIR/train]."),
    int8_cpu: Int8Cpu = typer.Option(
        Int8Cpu("auto"), "--int8-cpu",
        help="CPU INT8: auto (this CPU: the stem split only where int8 products are summed in 16 bits), portable "
             "(split: exact on every x86 CPU) or vnni (not split: for CPUs with VNNI/AMX or ARM; refused elsewhere).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing engine folder."),
    workspace: int = typer.Option(None, "--workspace", min=1, help="TensorRT: builder memory pool, MiB."),
    min_batch: int = typer.Option(None, "--min-batch", min=1, help="TensorRT: profile minimum batch [1; DLA: fixed]."),
    opt_batch: int = typer.Option(
        None, "--opt-batch", min=1, help="TensorRT: batch to tune for, recorded in the manifest [--min-batch, so 1]."),
    timing_cache: str = typer.Option(
        None, "--timing-cache", help="TensorRT: timing cache file, or 'off' [engines/timing.trt<ver>.sm<cc>.cache]."),
    builder_opt_level: int = typer.Option(None, "--builder-opt-level", help="TensorRT: 0-5 [3]."),
    dla_core: int = typer.Option(
        None, "--dla-core", min=0,
        help="TensorRT 8.6/10.3 on Orin: DLA core, GPU fallback; one fixed batch (--max-batch), INT8 via --int8-from "
             "cache."),
    version_compatible: bool = typer.Option(
        False, "--version-compatible", help="TensorRT: runs on later TensorRT of the same major version."),
    hardware_compat: HardwareCompat = typer.Option(
        None, "--hardware-compat",
        help="TensorRT: ampere_plus runs on any Ampere-or-newer discrete GPU (not on Jetson) [none]."),
    int8_from: Int8From = typer.Option(
        None, "--int8-from", help="TensorRT INT8: qdq (Q/DQ artifact) or cache (implicit, TensorRT <= 10) [qdq]."),
    request=None,
) -> None:
    """Build an engine and its manifest."""
    from dataclasses import replace

    from edgeres.build import BuildConfig, build_engine, choose_backend
    from edgeres.cli.console import make_console
    from edgeres.cli.model_source import resolve_for_command
    from edgeres.cli.notices import printed_warnings
    from edgeres.engine import command_line
    from edgeres.workspace import default_engine_dir, find_workspace

    if qat is not None:
        from edgeres.errors import EdgeresError
        from edgeres.quant.qat import qat_calibration_folder

        if request.given or calib is not None or precision.value not in ("int8", "mixed"):
            raise EdgeresError("--qat CKPT is the model and its calibration: use it with --precision int8 and "
                               "without --model/--calib")
        calib = qat_calibration_folder(qat)
        request = replace(request, model=qat)
    resolved = resolve_for_command(request)
    ckpt = resolved.path
    out = out or default_engine_dir(ckpt, precision.value)
    ws = find_workspace()  # edgeres.toml's [build] backend applies unless --backend is given
    chosen, why = choose_backend(backend.value if backend is not None else ws.default("build", "backend", "auto")
                                 if ws else "auto", precision.value, ckpt)
    source_args = request.cli_args() if resolved.foreign else ["--model", str(ckpt.resolve())]
    args = ["build", *source_args, "--precision", precision.value, "--backend", chosen,
            "--out", str(out.resolve()), "--opset", str(opset), "--exporter", exporter, "--max-batch", str(max_batch),
            "--opt-level", opt_level.value, *(["--uint8-input"] if uint8_input else []), "--force"]
    trt_opts, trt_args = tensorrt_options(chosen, workspace=workspace, min_batch=min_batch, opt_batch=opt_batch,
                                          timing_cache=timing_cache, builder_opt_level=builder_opt_level,
                                          dla_core=dla_core, version_compatible=version_compatible,
                                          hardware_compat=hardware_compat, int8_from=int8_from)
    args += trt_args
    if precision.value == "mixed":
        args += ["--max-drop", str(max_drop)] + (["--val-data", str(val_data.resolve())] if val_data else [])
    if precision.value in ("int8", "mixed"):
        args += ["--calib-method", calib_method] + (["--int8-cpu", int8_cpu.value] if int8_cpu.value != "auto" else [])
        args += ["--calib", str(calib.resolve())] if calib else []
        args += ["--calib-data", str(calib_data.resolve())] if calib_data else []
    cfg = BuildConfig(model=ckpt, out=out, precision=precision.value, backend=chosen, opset=opset, exporter=exporter,
                      max_batch=max_batch, opt_level=opt_level.value, normalize_in_network=uint8_input, force=force,
                      build_command=command_line(args), calib=calib, calib_data=calib_data, calib_method=calib_method,
                      max_drop=max_drop, val_data=val_data, tensorrt=trt_opts, backend_reason=why,
                      int8_cpu=int8_cpu.value)
    with printed_warnings(notes_only=True):
        engine_file, manifest = build_engine(cfg)
    detail = (f"calibration {manifest['calibration']['method']} ({manifest['calibration']['images']} images)"
              if "calibration" in manifest else "from the checked ONNX model"
              if manifest["export"].get("exporter") == "external"
              else f"export max abs diff {manifest['export']['max_abs_diff']:.1e}")
    make_console().print(
        f"built {engine_file} ({manifest['backend']['name']} {manifest['backend']['version']}, "
        f"{manifest['precision']}, {manifest['engine']['size'] / 2**20:.1f} MiB) in {manifest['build_seconds']:.1f} s; "
        + detail
    )
    make_console().print(f"  backend: {manifest['backend_choice']['reason']}")
    if "guarantee" in manifest["backend"]:  # CPU INT8 engines: what their arithmetic reproduces on this CPU
        promise = manifest["backend"]["guarantee"]
        make_console().print(f"  INT8 guarantee on {promise['cpu_isa']}: {promise['level']} ({promise['why']})")
        make_console().print(f"  built for --int8-cpu {manifest['backend']['int8_cpu']}: "
                             + manifest["backend"]["int8_cpu_reason"].removeprefix("auto: "))
    from edgeres.backends import backend_module

    for line in backend_module(manifest["backend"]["name"]).describe(manifest):
        make_console().print("  " + line)


def tensorrt_options(backend: str, **given) -> tuple:
    """(TrtBuildOptions or None, their command-line args); TensorRT options with another backend are an error."""
    from edgeres.backends.trt.loader import TrtBuildOptions
    from edgeres.errors import EdgeresError

    given = {k: (v.value if isinstance(v, Enum) else v) for k, v in given.items() if v is not None and v is not False}
    if not given:
        return None, []
    from edgeres.backends import backend_module

    if not backend_module(backend).TENSORRT_PLAN:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise EdgeresError(f"{flags} only apply to TensorRT engines; this build uses {backend} "
                           "(pass --backend tensorrt)")
    args = []
    for key, value in given.items():
        flag = "--" + key.replace("_", "-")
        args += [flag] if value is True else [flag, str(value)]
    names = {"workspace": "workspace_mib"}
    return TrtBuildOptions(**{names.get(k, k): v for k, v in given.items()}), args
