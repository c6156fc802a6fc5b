"""What each CPU INT8 engine guarantees on a given CPU, and which engine ``build --backend auto`` picks there.

The guarantee is about arithmetic, stated against the Q/DQ artifact (TensorRT's semantics: int8 values,
exact int32 sums, a float epilogue):

- ``exact``: every integer kernel gets the artifact's int8 values and sums them exactly; only the float
  epilogue may round differently where a value lands on a rounding tie (one LSB). Measured on the test
  fixture (1,000 real digits): the same top-1 as the Q/DQ reference on every image.
- ``exact-kernels``: exact integer kernels, plus one calibrated rounding of each residual Add input that
  the artifact keeps float (the ONNX Runtime engine: its QLinearAdd needs int8 inputs). Measured: >= 99.5 %
  top-1 agreement with the fake-quantized model.
- ``bounded``: some kernel can saturate on this CPU (``vpmaddubsw`` on x86 without VNNI, fed uint8 values
  above 128). Measured on the test fixture with engines of the earlier form: 13 of 1,000 top-1 differ from the
  Q/DQ reference (OpenVINO, oneDNN capped at AVX2). Engines built by this edgeres are never in this class.

Engines whose integer kernels are bounded to pair sums of at most 32767 (``quant.cpu.integer_kernel_bounds``,
recorded as ``saturation_free`` in the manifest) are exact on every x86 ISA; older engines are exact only where
the CPU sums int8 products in 32 bits (VNNI, AMX, ARM dot products).
"""

from __future__ import annotations

import importlib.util

EXACT, EXACT_KERNELS, BOUNDED = "exact", "exact-kernels", "bounded"
CPU_INT8_BACKENDS = ("openvino", "onnxruntime")

# What the tests hold each level to, on the 1,000 val digits of the test fixture: the least share of top-1
# predictions equal to the Q/DQ reference's, and the largest 99.9th-percentile / largest |logit difference| from
# it, in units of the reference logits' standard deviation.
MEASURED_BOUNDS = {
    EXACT: {"top1_agreement": 1.0, "q999": 0.1, "max": 0.25},
    EXACT_KERNELS: {"top1_agreement": 0.99, "q999": 0.25, "max": 0.5},
    BOUNDED: {"top1_agreement": 0.95, "q999": 1.5, "max": 3.0},
}


def is_x86(facts: dict) -> bool:
    return str(facts.get("arch", "")).lower() in ("x86_64", "amd64", "i686", "i386")


def sums_int8_in_32_bits(facts: dict) -> bool:
    """True where the CPU's int8 dot products cannot saturate: VNNI or AMX on x86, and every ARM CPU (its dot
    product and widening-multiply kernels accumulate in 32 bits)."""
    if not is_x86(facts):
        return True
    features = facts.get("features") or {}
    return bool(features.get("avx512_vnni") or features.get("avx_vnni") or features.get("amx"))


def guarantee(backend: str, facts: dict, saturation_free: bool) -> dict:
    """The guarantee of an INT8 engine of ``backend`` on the CPU described by ``facts`` (``sysinfo.cpu_facts``).

    Args:
        backend: "onnxruntime" or "openvino".
        facts: the CPU.
        saturation_free: the engine's integer kernels are proven free of 16-bit saturation (manifest field).

    Returns:
        ``{"backend", "cpu_isa", "level", "why"}``.
    """
    isa = facts.get("isa")
    wide = sums_int8_in_32_bits(facts)
    if backend == "onnxruntime":
        why = (
            "integer kernels exact: every u8 x s8 pair sum fits in int16 (no precision mode needed)"
            if saturation_free
            else "integer kernels exact: int8 products summed in 32 bits on this CPU"
            if wide
            else "integer kernels exact through ONNX Runtime's u8 x u8 precision mode (slower), set at load"
        )
        return {
            "backend": backend,
            "cpu_isa": isa,
            "level": EXACT_KERNELS,
            "why": why + "; one calibrated rounding of each residual Add input the artifact keeps float",
        }
    if saturation_free or wide:
        why = (
            "every u8 x s8 pair sum fits in int16, so oneDNN's int8 kernels are exact on every x86 ISA"
            if saturation_free
            else "int8 products summed in 32 bits on this CPU (VNNI/AMX)"
        )
        return {"backend": backend, "cpu_isa": isa, "level": EXACT, "why": why + "; TensorRT's float epilogue"}
    return {
        "backend": backend,
        "cpu_isa": isa,
        "level": BOUNDED,
        "why": "an engine of the earlier form: oneDNN's vpmaddubsw can saturate on x86 without VNNI; rebuild it",
    }


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def pick_cpu_backend(precision: str, task: str, facts: dict, openvino: bool | None = None) -> tuple[str, str]:
    """The CPU engine ``--backend auto`` builds, and why: the fastest one installed that is exact here.

    Both INT8 engines are exact on every x86 ISA (``guarantee``); OpenVINO's int8 kernels measured faster on
    every x86 CPU tried (AMX: 2.8x ONNX Runtime's; AVX2 and AVX-512 VNNI: docs/benchmarks.md), so it wins
    where it is installed. Elsewhere ONNX Runtime: FP32 and mixed engines (OpenVINO builds INT8 only), ARM
    CPUs, and detectors (whose OpenVINO INT8 build is not checked yet).

    Args:
        precision: the requested precision.
        task: the model's task ("classify", "detect").
        facts: the CPU (``sysinfo.cpu_facts``).
        openvino: whether OpenVINO is installed (default: look).
    """
    installed = openvino_installed() if openvino is None else openvino
    isa = facts.get("isa")
    if precision != "int8":
        return "onnxruntime", f"{precision}: ONNX Runtime (the OpenVINO engine builds INT8 only)"
    if not is_x86(facts):
        return "onnxruntime", f"INT8 on {isa}: ONNX Runtime (the OpenVINO engine is built and checked on x86 only)"
    if task != "classify":
        return "onnxruntime", f"INT8 {task} model: ONNX Runtime (the OpenVINO INT8 engine is checked for classifiers)"
    if not installed:
        return "onnxruntime", (
            f"INT8 on {isa}: ONNX Runtime, exact here; OpenVINO is not installed "
            "(pip install 'edgeres[openvino]' for the faster x86 INT8 engine)"
        )
    return "openvino", (
        f"INT8 on {isa}: OpenVINO, installed, exact on this ISA and the fastest CPU INT8 engine "
        "measured on x86 (docs/benchmarks.md)"
    )


def cpu_int8_summary(facts: dict, openvino: bool | None = None) -> dict:
    """What ``edgeres info`` says about INT8 on this CPU: how it sums int8 products, the engine ``auto`` builds
    for an INT8 classifier and why, and each CPU engine's guarantee here (for engines this edgeres builds)."""
    installed = openvino_installed() if openvino is None else openvino
    picked, why = pick_cpu_backend("int8", "classify", facts, installed)
    x86 = is_x86(facts)
    sums = (
        (
            "32-bit (VNNI/AMX)"
            if sums_int8_in_32_bits(facts)
            else "pairs in saturating 16 bits (vpmaddubsw), then 32-bit"
        )
        if x86
        else "32-bit (ARM)"
    )
    engines = ("onnxruntime", "openvino") if x86 else ("onnxruntime",)
    return {
        "int8_products": sums,
        "auto_backend": picked,
        "auto_reason": why,
        "openvino_installed": installed,
        "guarantees": {name: guarantee(name, facts, saturation_free=True) for name in engines},
    }
