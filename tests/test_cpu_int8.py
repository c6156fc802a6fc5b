"""The CPU INT8 guarantee per ISA, the session settings that follow from it, and the engine ``--backend auto``
builds on each kind of CPU (pure functions over CPU facts parsed from real cpuinfo flag lines)."""

from __future__ import annotations

import pytest

from edgeres.backends.cpu_int8 import (
    BOUNDED,
    EXACT,
    EXACT_KERNELS,
    cpu_int8_summary,
    guarantee,
    pick_cpu_backend,
    sums_int8_in_32_bits,
)
from edgeres.device.cpu import parse_cpuinfo

# The flag lines of the CPUs the project's machines have had (trimmed to the SIMD flags that matter).
FLAGS = {
    "x86_64-avx2": "fpu sse4_2 avx avx2 fma",  # AMD EPYC (Zen 2/3)
    "x86_64-avx512": "fpu sse4_2 avx avx2 fma avx512f avx512bw",  # Skylake-SP: AVX-512 without VNNI
    "x86_64-avx512-vnni": "fpu sse4_2 avx avx2 fma avx512f avx512bw avx512_vnni avx_vnni",  # this project's EPYC
    "x86_64-avx512-vnni-amx": "fpu sse4_2 avx avx2 fma avx512f avx512bw avx512_vnni amx_int8",  # Sapphire Rapids
}


def cpu(isa: str) -> dict:
    if isa.startswith("aarch64"):
        parsed = parse_cpuinfo("Features\t: fp asimd asimddp\nCPU implementer\t: 0x41\nCPU part\t: 0xd42\n", "aarch64")
        return parsed | {"arch": "aarch64"}
    parsed = parse_cpuinfo(f"model name\t: test\nflags\t\t: {FLAGS[isa]}\n", "x86_64")
    assert parsed["isa"] == isa
    return parsed | {"arch": "x86_64"}


@pytest.mark.parametrize("isa", [*FLAGS, "aarch64-neon-dotprod"])
def test_engines_built_now_are_exact_on_every_isa(isa):
    """Saturation-free engines (what the build writes today): OpenVINO reproduces the artifact's arithmetic and
    ONNX Runtime's integer kernels are exact, VNNI or not; no precision mode is set at load."""
    from edgeres.backends.onnxrt.loader import int8_session_config

    facts = cpu(isa)
    assert guarantee("onnxruntime", facts, saturation_free=True)["level"] == EXACT_KERNELS
    if not isa.startswith("aarch64"):
        promise = guarantee("openvino", facts, saturation_free=True)
        assert promise["level"] == EXACT and promise["cpu_isa"] == isa
    assert int8_session_config(saturation_free=True, facts=facts) == {}


@pytest.mark.parametrize(
    "isa,wide",
    [
        ("x86_64-avx2", False),
        ("x86_64-avx512", False),
        ("x86_64-avx512-vnni", True),
        ("x86_64-avx512-vnni-amx", True),
        ("aarch64-neon-dotprod", True),
    ],
)
def test_engines_of_the_earlier_form_depend_on_how_the_cpu_sums_int8(isa, wide):
    """An engine without the saturation-free proof: exact where int8 products are summed in 32 bits; on x86
    without VNNI OpenVINO's is bounded and ONNX Runtime's gets its exact u8 x u8 precision mode at load."""
    from edgeres.backends.onnxrt.loader import int8_session_config

    facts = cpu(isa)
    assert sums_int8_in_32_bits(facts) is wide
    if not isa.startswith("aarch64"):
        assert guarantee("openvino", facts, saturation_free=False)["level"] == (EXACT if wide else BOUNDED)
    assert guarantee("onnxruntime", facts, saturation_free=False)["level"] == EXACT_KERNELS
    expected = {} if wide else {"session.x64quantprecision": "1"}
    assert int8_session_config(saturation_free=False, facts=facts) == expected


@pytest.mark.parametrize("isa", list(FLAGS))
def test_auto_builds_openvino_for_int8_classifiers_on_x86_when_installed(isa):
    facts = cpu(isa)
    backend, why = pick_cpu_backend("int8", "classify", facts, openvino=True)
    assert backend == "openvino" and isa in why and "exact" in why
    backend, why = pick_cpu_backend("int8", "classify", facts, openvino=False)
    assert backend == "onnxruntime" and "pip install 'edgeres[openvino]'" in why


@pytest.mark.parametrize(
    "precision,task,isa,reason",
    [
        ("fp32", "classify", "x86_64-avx512-vnni-amx", "builds INT8 only"),
        ("mixed", "classify", "x86_64-avx2", "builds INT8 only"),
        ("int8", "detect", "x86_64-avx2", "not checked for detect models"),
        ("int8", "classify", "aarch64-neon-dotprod", "x86 only"),
    ],
)
def test_auto_builds_onnxruntime_everywhere_else(precision, task, isa, reason):
    from edgeres.tasks import get_task

    checked = get_task(task).cpu_int8_checked
    backend, why = pick_cpu_backend(precision, task, cpu(isa), openvino=True, checked=checked)
    assert backend == "onnxruntime" and reason in why


@pytest.mark.parametrize("task", ["classify", "segment"])
def test_auto_builds_openvino_for_checked_tasks_on_x86(task):
    from edgeres.tasks import get_task

    for isa in ("x86_64-avx2", "x86_64-avx512-vnni", "x86_64-avx512-vnni-amx"):
        backend, why = pick_cpu_backend("int8", task, cpu(isa), openvino=True, checked=get_task(task).cpu_int8_checked)
        assert backend == "openvino" and isa in why


def test_info_summary_names_the_engine_and_each_guarantee():
    summary = cpu_int8_summary(cpu("x86_64-avx2"), openvino=True)
    assert summary["int8_products"].startswith("pairs in saturating 16 bits")
    assert summary["auto_backend"] == "openvino"
    assert {k: v["level"] for k, v in summary["guarantees"].items()} == {
        "onnxruntime": EXACT_KERNELS,
        "openvino": EXACT,
    }
    arm = cpu_int8_summary(cpu("aarch64-neon-dotprod"), openvino=False)
    assert arm["auto_backend"] == "onnxruntime" and list(arm["guarantees"]) == ["onnxruntime"]


def test_choose_backend_explains_and_keeps_an_explicit_choice():
    import importlib.util

    from edgeres.build import choose_backend
    from edgeres.device.cpu import cpu_facts

    assert choose_backend("onnxruntime", "int8") == ("onnxruntime", "--backend onnxruntime")
    if importlib.util.find_spec("tensorrt") is None:  # else auto may pick TensorRT where a GPU is present
        backend, why = pick_cpu_backend("int8", "classify", cpu_facts())
        assert choose_backend("auto", "int8") == (backend, "auto: " + why)
        assert choose_backend("auto", "fp32")[0] == "onnxruntime"
