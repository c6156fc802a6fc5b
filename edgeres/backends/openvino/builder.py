"""Builds the OpenVINO INT8 engine from the Q/DQ artifact."""

from __future__ import annotations

from edgeres.backends.base import BuildJob, BuiltEngine


def build_engine_file(job: BuildJob) -> BuiltEngine:
    """Q/DQ artifact -> its OpenVINO form (int8 weights, no other value changed; a signed input split only where the
    target CPUs and the weights need it), compiled once here to check that every Conv/Gemm of OpenVINO's execution
    graph runs as an integer kernel."""
    import onnx

    from edgeres.backends.cpu_int8 import PORTABLE, int8_cpu_target, integer_kernel_facts
    from edgeres.backends.openvino import NAME
    from edgeres.backends.openvino.loader import write_int8_engine
    from edgeres.device.cpu import cpu_facts
    from edgeres.quant.cpu import split_convs

    cfg, config = job.cfg, job.config
    target, why = int8_cpu_target(cfg.int8_cpu, NAME, cpu_facts())
    h, w = config.preprocess.input_size
    facts = write_int8_engine(job.qdq, job.engine_file, (1, 3, h, w), split_stem=target == PORTABLE)
    engine = onnx.load(str(job.engine_file))
    return BuiltEngine(
        backend_info=facts
        | {"isa_bound": False}
        | integer_kernel_facts(NAME, engine, target, why, split_convs(engine)),
        input_info={"name": "input", "shape": [-1, 3, h, w], "dtype": "float32", "max_batch": cfg.max_batch},
        preprocess=config.preprocess.to_dict(),
    )
