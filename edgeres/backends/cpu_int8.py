"""What each CPU INT8 engine guarantees on a given CPU, and which engine ``build --backend auto`` picks there.

The guarantee is about arithmetic, stated against the Q/DQ artifact (TensorRT's semantics: int8 values,
exact int32 sums, a float epilogue):

- ``exact``: every integer kernel gets the artifact's int8 values and sums them exactly; only the float
  epilogue may round differently where a value lands on a rounding tie (one LSB). Measured on the test
  fixture (1,000 real digits): the same top-1 as the Q/DQ reference on every image that is not a near-tie
  (top-2 logits within 2 % of their spread; one such image, of 1,000, went the other way).
- ``exact-kernels``: exact integer kernels, plus one calibrated rounding of each residual Add input that
  the artifact keeps float (the ONNX Runtime engine: its QLinearAdd needs int8 inputs). Measured: >= 99.5 %
  top-1 agreement with the fake-quantized model.
- ``bounded``: some kernel can saturate on this CPU (``vpmaddubsw`` on x86 without VNNI, fed uint8 values
  above 128). Measured on the test fixture with engines of the earlier form: 13 of 1,000 top-1 differ from the
  Q/DQ reference (OpenVINO, oneDNN capped at AVX2). Engines built by this edgeres are never in this class.
- ``refused``: an engine built for CPUs that sum int8 products in 32 bits (``--int8-cpu vnni``, what ``auto``
  builds on VNNI/AMX/ARM: the stem reads its signed input whole) on a CPU that sums them in 16-bit pairs; loading
  it is refused (``target_problems``) rather than run where its stem could saturate.

Engines whose integer kernels are bounded to pair sums of at most 32767 (``quant.cpu.integer_kernel_bounds``,
recorded as ``saturation_free`` in the manifest) are exact on every x86 ISA; older engines, and engines built with
the stem left whole (``int8_cpu`` "vnni"), are exact only where the CPU sums int8 products in 32 bits (VNNI, AMX,
ARM dot products). ``int8_cpu_target`` decides which form a build makes (the stem split only where this CPU's
kernels need it: ``kernel_facts`` counts oneDNN's ISA cap), and ``target_problems`` refuses a "vnni" engine elsewhere.
"""

from __future__ import annotations

import importlib.util
import os

from edgeres.errors import EdgeresError

EXACT, EXACT_KERNELS, BOUNDED, REFUSED = "exact", "exact-kernels", "bounded", "refused"

# Which CPUs an INT8 engine is built for (``build --int8-cpu``, recorded as ``backend.int8_cpu``): ``portable`` splits
# the stem's signed input so that every u8 x s8 pair sum fits in int16 (exact on every x86 CPU); ``vnni`` leaves it
# whole (a few percent faster; exact only where int8 products are summed in 32 bits, and refused elsewhere).
PORTABLE, VNNI = "portable", "vnni"
INT8_CPU_TARGETS = ("auto", PORTABLE, VNNI)
# Environment variables that cap the ISA a backend's kernel library may use (read when the library starts), and the
# caps below which its int8 convolutions multiply with vpmaddubsw (saturating 16-bit pair sums).
ISA_CAP_VARIABLES = {"openvino": ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")}
ONEDNN_16_BIT_CAPS = ("SSE41", "AVX", "AVX2", "AVX512_CORE", "AVX512_MIC", "AVX512_MIC_4OPS")

# What the tests hold each level to, on the 1,000 val digits of the test fixture: the least share of top-1
# predictions equal to the Q/DQ reference's, and the largest 99.9th-percentile / largest |logit difference| from
# it, in units of the reference logits' standard deviation.
# "tie": images whose reference top-2 logits are closer than this share of the spread are left out of the top-1
# agreement (one LSB of an epilogue rounding at a tie moves a logit by up to ~0.13 of the spread: such a near-tie may
# go either way; measured: 1 of 1,000 digits, a top-2 gap of 0.012).
MEASURED_BOUNDS = {
    EXACT: {"top1_agreement": 1.0, "tie": 0.02, "q999": 0.1, "max": 0.25},
    EXACT_KERNELS: {"top1_agreement": 0.99, "tie": 0.0, "q999": 0.25, "max": 0.5},
    BOUNDED: {"top1_agreement": 0.95, "tie": 0.0, "q999": 1.5, "max": 3.0},
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


def kernel_facts(backend: str, facts: dict, env: dict | None = None) -> dict:
    """``facts`` as ``backend``'s kernel library sees the CPU: with ``ONEDNN_MAX_CPU_ISA`` (OpenVINO's oneDNN) capped
    below VNNI, its int8 convolutions sum pairs in 16 bits although the CPU has VNNI/AMX. ONNX Runtime has no such
    cap (MLAS picks its kernels from CPUID), so its facts are the CPU's.

    Args:
        backend: the engine's backend name.
        facts: the CPU (``device.cpu.cpu_facts``).
        env: the environment to read the caps from (default: this process's).
    """
    env = os.environ if env is None else env
    cap = next((env[v] for v in ISA_CAP_VARIABLES.get(backend, ()) if env.get(v)), "").strip().upper()
    if not cap or cap in ("ALL", "DEFAULT") or not is_x86(facts):
        return facts
    features = dict(facts.get("features") or {})
    if cap in ONEDNN_16_BIT_CAPS:
        features.update(avx512_vnni=False, avx_vnni=False, amx=False)
    elif cap.startswith("AVX2_VNNI"):  # VEX VNNI only: the CPU's AVX-VNNI, not its AVX-512 VNNI or AMX
        features.update(avx512_vnni=False, amx=False)
    elif "AMX" not in cap:
        features.update(amx=False)
    return facts | {"features": features, "isa": f"{facts.get('isa')} (oneDNN capped at {cap})"}


def int8_cpu_target(requested: str, backend: str, facts: dict, env: dict | None = None) -> tuple[str, str]:
    """Which CPUs an INT8 engine is built for, and why: ``auto`` means ``vnni`` (stem left whole) where this CPU's
    kernels sum int8 products in 32 bits, and ``portable`` (stem split) where they sum pairs in 16 bits.

    Args:
        requested: "auto", "portable" or "vnni" (``build --int8-cpu``).
        backend: the engine's backend ("onnxruntime", "openvino").
        facts: the CPU building the engine (``device.cpu.cpu_facts``).
        env: the environment (ISA caps, ``kernel_facts``).

    Raises:
        EdgeresError: an unknown ``requested``.
    """
    if requested not in INT8_CPU_TARGETS:
        raise EdgeresError(f"unknown --int8-cpu '{requested}'; accepted: {', '.join(INT8_CPU_TARGETS)}")
    if requested == PORTABLE:
        return PORTABLE, ("--int8-cpu portable: a conv reading a signed input (the stem) whose weights could saturate "
                          "16-bit pair sums reads it split in two, exact on every x86 CPU")
    if requested == VNNI:
        return VNNI, ("--int8-cpu vnni: every conv reads its input whole; exact where int8 products are summed in 32 "
                      "bits (x86 VNNI/AMX, ARM), and elsewhere only if no pair sum can saturate (refused otherwise)")
    seen = kernel_facts(backend, facts, env)
    if sums_int8_in_32_bits(seen):
        return VNNI, (f"auto: {seen.get('isa')} sums int8 products in 32 bits, so every conv reads its input whole "
                      "(exact here; on CPUs without VNNI/AMX only if no pair sum can saturate, refused otherwise: "
                      "--int8-cpu portable builds one for every x86 CPU)")
    return PORTABLE, (f"auto: {seen.get('isa')} sums int8 products in saturating 16-bit pairs, so a conv reading a "
                      "signed input reads it whole only where its weights cannot saturate a pair (edgeres's artifacts "
                      "keep them on -64..64), else split in two (exact here and on every x86 CPU)")


def target_problems(backend: str, int8_cpu: str | None, facts: dict, env: dict | None = None,
                    saturation_free: bool = False) -> list[str]:
    """Why an INT8 engine built for ``int8_cpu`` cannot run exactly on this CPU (empty when it can): a "vnni" engine
    whose kernels could saturate (manifest ``saturation_free`` false) on a CPU that sums int8 pairs in 16 bits."""
    seen = kernel_facts(backend, facts, env)
    if int8_cpu != VNNI or saturation_free or sums_int8_in_32_bits(seen):
        return []
    return [f"built for CPUs that sum int8 products in 32 bits (--int8-cpu vnni: its stem conv reads its input "
            f"whole), but {seen.get('isa')} sums them in saturating 16-bit pairs, where that conv could saturate; "
            "build it on this CPU (auto splits the stem here) or with --int8-cpu portable"]


def guarantee(backend: str, facts: dict, saturation_free: bool, int8_cpu: str | None = None) -> dict:
    """The guarantee of an INT8 engine of ``backend`` on the CPU described by ``facts`` (``device.cpu.cpu_facts``).

    Args:
        backend: "onnxruntime" or "openvino".
        facts: the CPU (as the backend's kernels see it: ``kernel_facts``).
        saturation_free: the engine's integer kernels are proven free of 16-bit saturation (manifest field).
        int8_cpu: the CPUs the engine was built for (manifest ``backend.int8_cpu``; None for older engines).

    Returns:
        ``{"backend", "cpu_isa", "level", "why"}``.
    """
    isa = facts.get("isa")
    wide = sums_int8_in_32_bits(facts)
    if int8_cpu == VNNI and not wide and not saturation_free:
        return {"backend": backend, "cpu_isa": isa, "level": REFUSED,
                "why": "built for CPUs that sum int8 products in 32 bits (--int8-cpu vnni): loading refuses it here"}
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


def pick_cpu_backend(precision: str, task: str, facts: dict, openvino: bool | None = None,
                     checked: tuple[str, ...] = ("onnxruntime", "openvino")) -> tuple[str, str]:
    """The CPU engine ``--backend auto`` builds, and why: the fastest one installed that is exact here.

    Both INT8 engines are exact on every x86 ISA (``guarantee``); OpenVINO's int8 kernels measured faster on
    every x86 CPU tried (AMX: 2.8x ONNX Runtime's; AVX2 and AVX-512 VNNI: docs/benchmarks.md), so it wins
    where it is installed. Elsewhere ONNX Runtime: FP32 and mixed engines (OpenVINO builds INT8 only), ARM
    CPUs, and models whose task has not had its OpenVINO INT8 engine checked (``checked``, the task's
    ``cpu_int8_checked``: detectors today).

    Args:
        precision: the requested precision.
        task: the model's task name, for the reason only.
        facts: the CPU (``device.cpu.cpu_facts``).
        openvino: whether OpenVINO is installed (default: look).
        checked: the CPU INT8 engines checked for the model's task (``Task.cpu_int8_checked``).
    """
    installed = openvino_installed() if openvino is None else openvino
    isa = facts.get("isa")
    if precision != "int8":
        return "onnxruntime", f"{precision}: ONNX Runtime (the OpenVINO engine builds INT8 only)"
    if not is_x86(facts):
        return "onnxruntime", f"INT8 on {isa}: ONNX Runtime (the OpenVINO engine is built and checked on x86 only)"
    if "openvino" not in checked:
        return "onnxruntime", (f"INT8 {task} model: ONNX Runtime (the OpenVINO INT8 engine is not checked for {task} "
                               "models)")
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
    for an INT8 classifier and why (with the form: the stem split or not), and each CPU engine's guarantee here (for
    the engines ``auto`` builds here)."""
    installed = openvino_installed() if openvino is None else openvino
    picked, why = pick_cpu_backend("int8", "classify", facts, installed)  # what info shows: an INT8 classifier
    target, target_why = int8_cpu_target("auto", picked, facts)
    why += f"; built for --int8-cpu {target}: " + target_why.removeprefix("auto: ")
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
        "auto_int8_cpu": target,
        "openvino_installed": installed,
        "guarantees": {name: _built_here(name, facts) for name in engines},
    }


def _built_here(backend: str, facts: dict) -> dict:
    """The guarantee of the INT8 engine ``auto`` builds for ``backend`` from an edgeres artifact on this CPU:
    saturation-free for either target (weights of signed-input ops on -64..64, ``quant.signs``)."""
    target, _ = int8_cpu_target("auto", backend, facts)
    return guarantee(backend, kernel_facts(backend, facts), saturation_free=True, int8_cpu=target)


def integer_kernel_facts(backend: str, model, int8_cpu: str, why: str, split: list[str]) -> dict:
    """What a CPU INT8 manifest records of its integer kernels: how many, the largest sum of two neighbouring u8 x s8
    products any of them can form (``quant.cpu.integer_kernel_bounds``), whether that fits in int16 (then the
    engine is exact on every x86 ISA, VNNI or not), which CPUs it was built for (``int8_cpu_target``: whether the
    stem is split, and why), and the guarantee that follows on the CPU it was built on.

    Args:
        backend: the engine's backend.
        model: the engine's ONNX graph (ONNX Runtime's optimized graph, or OpenVINO's Q/DQ form).
        int8_cpu: ``portable`` or ``vnni``.
        why: the reason for ``int8_cpu``.
        split: the Convs that read their signed input split in two (``quant.cpu.split_convs``).
    """
    from edgeres.device.cpu import cpu_facts
    from edgeres.quant.cpu import integer_kernel_bounds

    bounds = integer_kernel_bounds(model)
    free = bool(bounds) and all(b.exact for b in bounds)
    return {"integer_kernels": len(bounds), "largest_pair_sum": max((b.pair_max for b in bounds), default=0),
            "saturation_free": free, "int8_cpu": int8_cpu, "stem_split": bool(split), "split_convs": split,
            "int8_cpu_reason": why, "guarantee": guarantee(backend, kernel_facts(backend, cpu_facts()), free, int8_cpu)}
