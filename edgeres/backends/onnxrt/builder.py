"""Builds ONNX Runtime engines: ONNX Runtime's own optimized graph saved to disk (FP32), or the Q/DQ artifact
rewritten for the CPU's integer kernels and then optimized (INT8, mixed)."""

from __future__ import annotations

from edgeres.backends.base import BuildJob, BuiltEngine, network_preprocess


def build_engine_file(job: BuildJob) -> BuiltEngine:
    """Write ``job.engine_file``; INT8/mixed when the job carries a calibration, FP32 otherwise."""
    return _build_int8(job) if job.calib is not None else _build_fp32(job)


def _opt_level_facts(cfg) -> dict:
    # "extended" fusions are portable across CPUs; "all" adds layout transforms chosen for this CPU's ISA.
    return {"saved_opt_level": cfg.opt_level, "runtime_opt_level": "all", "isa_bound": cfg.opt_level == "all"}


def _build_fp32(job: BuildJob) -> BuiltEngine:
    from edgeres.backends.onnxrt.loader import write_optimized_model

    cfg, config = job.cfg, job.config
    write_optimized_model(job.exported, job.engine_file, cfg.opt_level)
    job.exported.unlink()
    h, w = config.preprocess.input_size
    shape = [-1, h, w, 3] if cfg.normalize_in_network else [-1, 3, h, w]
    return BuiltEngine(
        backend_info=_opt_level_facts(cfg),
        input_info={
            "name": job.export["input_name"],
            "shape": shape,
            "dtype": "uint8" if cfg.normalize_in_network else "float32",
            "max_batch": cfg.max_batch,
        },
        preprocess=network_preprocess(config, cfg.normalize_in_network),
    )


def _build_int8(job: BuildJob) -> BuiltEngine:
    """Q/DQ artifact -> CPU rewrite -> ONNX Runtime-optimized file whose every Conv/Gemm is an integer kernel
    (except, for ``mixed``, the layers the plan keeps float; their Q/DQ artifact is saved beside the engine).
    A signed input is split only where the target CPUs and the weights need it (``cpu_int8.int8_cpu_target``)."""
    import onnx

    from edgeres.backends.cpu_int8 import int8_cpu_target, integer_kernel_facts
    from edgeres.backends.onnxrt import NAME
    from edgeres.backends.onnxrt.loader import write_optimized_model
    from edgeres.device.cpu import cpu_facts
    from edgeres.quant.cpu import check_integer_kernels, rewrite_for_cpu, split_convs
    from edgeres.quant.mixed import cpu_float_layers, output_conv_layers

    cfg, config, mixed = job.cfg, job.config, job.mixed
    target, why = int8_cpu_target(cfg.int8_cpu, NAME, cpu_facts())
    float_layers = set(mixed.float_layers) if mixed is not None else set()
    if mixed is not None:
        onnx.save(job.qdq, str(job.folder / (job.engine_file.stem + ".qdq.onnx")))
    cpu = rewrite_for_cpu(job.qdq, job.calib.scales, split_signed_inputs=target == "portable")
    split = split_convs(cpu)
    cpu_file = job.folder / "cpu.qdq.onnx"
    onnx.save(cpu, str(cpu_file))
    write_optimized_model(cpu_file, job.engine_file, cfg.opt_level)
    cpu_file.unlink()
    cpu_float = cpu_float_layers(onnx.load(str(job.calib.fp32_onnx)), float_layers) if mixed is not None else set()
    output_convs = output_conv_layers(job.qdq)
    optimized = onnx.load(str(job.engine_file))
    check_integer_kernels(optimized, cpu_float | output_convs)
    if mixed is not None:
        mixed.cpu_float_layers = sorted(cpu_float)
    h, w = config.preprocess.input_size
    return BuiltEngine(
        backend_info=_opt_level_facts(cfg) | integer_kernel_facts(NAME, optimized, target, why, split),
        input_info={"name": "input", "shape": [-1, 3, h, w], "dtype": "float32", "max_batch": cfg.max_batch},
        preprocess=config.preprocess.to_dict(),
        extra={"cpu_float_output_layers": sorted(output_convs)},
    )
