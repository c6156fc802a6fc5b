"""Builds TensorRT engines: the request checked against this TensorRT and GPU, the source ONNX kept beside the
plan (FP32/FP16 export, the Q/DQ artifact, or FP32 + a calibration cache for implicit INT8), the plan, and the
trtexec command that reproduces it."""

from __future__ import annotations

import shutil
from pathlib import Path

from edgeres.backends.base import BuildJob, BuiltEngine, network_preprocess
from edgeres.errors import EdgeresError


def check_build_request(cfg) -> dict:
    """The installed TensorRT's features and this GPU, with the request checked against both (warnings kept)."""
    import warnings

    import tensorrt

    from edgeres.backends.trt import versions
    from edgeres.backends.trt.loader import TrtBuildOptions, trt_current_facts

    opts = cfg.tensorrt or TrtBuildOptions()
    feat = versions.features(tensorrt.__version__)
    facts = trt_current_facts()
    if facts.get("compute_capability") is None:
        raise EdgeresError(
            "no NVIDIA GPU found (CUDA runtime and nvidia-smi see none): TensorRT engines are built on "
            "the GPU they run on; 'edgeres doctor' says what is missing"
        )
    found = versions.check_request(
        feat,
        cfg.precision,
        opts.int8_from,
        opts.dla_core,
        facts.get("dla_cores"),
        opts.version_compatible,
        opts.hardware_compat,
        opts.builder_opt_level,
        facts.get("compute_capability"),
        jetson=bool(facts.get("jetson")),
    )
    batches = versions.batch_profile(opts.min_batch, opts.opt_batch, cfg.max_batch, dla=opts.dla_core is not None)
    for message in found:
        warnings.warn(message, stacklevel=4)
    return {"features": feat, "facts": facts, "options": opts, "warnings": found, "batches": batches}


def check_qdq_for_tensorrt(qdq_onnx: Path) -> None:
    """Run the TensorRT-rule checker; a TensorRT build of a file that breaks the rules is refused."""
    import onnx

    from edgeres.quant.checker import check_qdq_model

    problems = check_qdq_model(onnx.load(str(qdq_onnx)))
    if problems:
        raise EdgeresError(
            f"{qdq_onnx} breaks {len(problems)} TensorRT Q/DQ rule(s): " + "; ".join(str(p) for p in problems[:3])
        )


def build_engine_file(job: BuildJob) -> BuiltEngine:
    """Export (or take the calibration's ONNX) -> TensorRT plan; the source ONNX stays beside the engine so the
    recorded trtexec command reproduces the build."""
    import onnx

    from edgeres.backends.trt import versions
    from edgeres.backends.trt.loader import build_plan, default_timing_cache, fp16_onnx, onnx_input
    from edgeres.quant.trt_cache import write_cache

    cfg, calib, folder, engine_file, plan = job.cfg, job.calib, job.folder, job.engine_file, job.checked
    feat, facts, opts = plan["features"], plan["facts"], plan["options"]
    name = Path(cfg.out).name
    source, calib_cache = folder / f"{name}.source.onnx", None
    if calib is None:
        job.exported.replace(source)
    elif job.mixed is not None:  # the Q/DQ artifact with the plan's sensitive layers left float
        onnx.save(job.qdq, str(source))
    else:
        shutil.copyfile(calib.fp32_onnx if opts.int8_from == "cache" else calib.qdq_onnx, source)
    if calib is not None and opts.int8_from == "cache":
        calib_cache = folder / f"{name}.calib.cache"
        write_cache(calib.scales, str(feat.version), calib_cache)
    if feat.strongly_typed and cfg.precision == "fp16":  # TensorRT 11: the precision lives in the ONNX types
        typed = folder / f"{name}.fp16.onnx"
        fp16_onnx(source, typed)
        typed.replace(source)
    input_name, dims = onnx_input(source)
    timing = (
        None
        if opts.timing_cache == "off"
        else Path(opts.timing_cache)
        if opts.timing_cache
        else default_timing_cache(Path(cfg.out).resolve().parent, str(feat.version), facts["compute_capability"])
    )
    low, opt, high = plan["batches"]
    plan_bytes, result = build_plan(source, cfg.precision, opts, plan["batches"], timing, calib_cache)
    engine_file.write_bytes(plan_bytes)
    trtexec = versions.trtexec_command(
        feat,
        source.name,
        engine_file.name,
        input_name,
        dims[1:],
        cfg.precision,
        low,
        opt,
        high,
        opts.workspace_mib,
        str(timing.resolve()) if timing else None,
        opts.builder_opt_level,
        opts.dla_core,
        opts.version_compatible,
        opts.hardware_compat,
        calib_cache.name if calib_cache else None,
        engine_dir=Path(cfg.out).resolve(),
    )
    extra = {}
    if calib is not None:
        from edgeres.models.checkpoint import file_sha256

        extra["calibration"] = {
            "folder": str(calib.folder.resolve()),
            "method": calib.scales.method,
            "images": calib.scales.data.get("images"),
            "scales_sha256": file_sha256(calib.folder / "scales.json"),
        }
    return BuiltEngine(
        backend_info={
            "version_compatible": opts.version_compatible,
            "hardware_compat": opts.hardware_compat,
            "dla_core": opts.dla_core,
            "int8_from": opts.int8_from if calib is not None else None,
            "strongly_typed": feat.strongly_typed,
            "build_seconds": round(result.seconds, 2),
            "layers": result.layers,
            "warnings": plan["warnings"] + result.warnings,
            "timing_cache": result.timing_cache,
            "source_onnx": source.name,
            "trtexec": trtexec,
            "batch_profile": {"min": low, "opt": opt, "max": high},
            "dla": result.dla,
        },
        input_info={
            "name": input_name,
            "shape": [-1, *dims[1:]],
            "dtype": "uint8" if cfg.normalize_in_network else "float32",
            "max_batch": high,
            "min_batch": low,
            "opt_batch": opt,
        },  # opt: the batch TensorRT tuned the engine for
        preprocess=network_preprocess(job.config, cfg.normalize_in_network),
        device={
            "gpu": facts.get("gpu"),
            "compute_capability": facts.get("compute_capability"),
            "l4t": facts.get("l4t"),
            "dla_core": opts.dla_core,
        },
        extra=extra,
    )
