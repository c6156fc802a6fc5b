"""Which CPUs a CPU INT8 engine is built for (``build --int8-cpu``): ``auto`` splits a signed input whose weights
could saturate (a Q/DQ artifact whose stem weights reach 127) only where the engine's kernels sum int8 products in
saturating 16-bit pairs (x86 without VNNI, or oneDNN capped below it), records the choice in the manifest, and an
engine built for 32-bit sums that could saturate is refused, in one line, on a CPU that sums in 16 bits. edgeres's
own artifacts (stem weights on -64..64) need no split for either target and are refused nowhere. The decision is
checked over CPU facts parsed from real cpuinfo flag lines; the engines are real builds of the suite's trained digits
model, run on this CPU (the refusal on another CPU fakes only which CPU ``device.cpu.cpu_facts`` reports, and the
oneDNN cap is a real one)."""

from __future__ import annotations

import json
import platform

import numpy as np
import pytest

from edgeres.backends.cpu_int8 import (
    EXACT,
    EXACT_KERNELS,
    PORTABLE,
    REFUSED,
    VNNI,
    guarantee,
    int8_cpu_target,
    kernel_facts,
    sums_int8_in_32_bits,
    target_problems,
)
from edgeres.device.cpu import parse_cpuinfo
from edgeres.errors import EdgeresError

pytest_plugins = ["fixtures_quant"]

X86 = platform.machine().lower() in ("x86_64", "amd64")
FLAGS = {
    "x86_64-avx2": "fpu sse4_2 avx avx2 fma",  # AMD EPYC (Zen 2/3)
    "x86_64-avx512": "fpu sse4_2 avx avx2 fma avx512f avx512bw",  # Skylake-SP: AVX-512 without VNNI
    "x86_64-avx512-vnni": "fpu sse4_2 avx avx2 fma avx512f avx512bw avx512_vnni avx_vnni",  # this project's EPYC
    "x86_64-avx512-vnni-amx": "fpu sse4_2 avx avx2 fma avx512f avx512bw avx512_vnni amx_int8",  # Sapphire Rapids
    "x86_64-avx2-vnni": "fpu sse4_2 avx avx2 fma avx_vnni",  # Alder Lake
}


def cpu(isa: str) -> dict:
    if isa.startswith("aarch64"):
        parsed = parse_cpuinfo("Features\t: fp asimd asimddp\nCPU implementer\t: 0x41\nCPU part\t: 0xd42\n", "aarch64")
        return parsed | {"arch": "aarch64"}
    parsed = parse_cpuinfo(f"model name\t: test\nflags\t\t: {FLAGS[isa]}\n", "x86_64")
    assert parsed["isa"] == isa
    return parsed | {"arch": "x86_64"}


@pytest.mark.parametrize(
    ("isa", "expected"),
    [
        ("x86_64-avx2", PORTABLE),
        ("x86_64-avx512", PORTABLE),
        ("x86_64-avx2-vnni", VNNI),
        ("x86_64-avx512-vnni", VNNI),
        ("x86_64-avx512-vnni-amx", VNNI),
        ("aarch64-neon-dotprod", VNNI),
    ],
)
def test_auto_splits_the_stem_only_where_int8_products_sum_in_16_bits(isa, expected):
    for backend in ("onnxruntime", "openvino"):
        target, why = int8_cpu_target("auto", backend, cpu(isa), env={})
        assert target == expected, (backend, why)
        assert why.startswith("auto: " + isa)
        assert ("split in two" in why) == (expected == PORTABLE)
    # An explicit choice is kept on any CPU (building for another machine is legitimate).
    assert int8_cpu_target(PORTABLE, "openvino", cpu(isa), env={})[0] == PORTABLE
    assert int8_cpu_target(VNNI, "onnxruntime", cpu(isa), env={})[0] == VNNI


def test_onednn_caps_count_for_the_openvino_engine_only():
    """oneDNN reads ONEDNN_MAX_CPU_ISA (or the older DNNL_MAX_CPU_ISA): capped below VNNI its int8 convolutions sum
    in 16 bits on any CPU. ONNX Runtime has no such cap: MLAS picks its kernels from CPUID."""
    vnni, amx = cpu("x86_64-avx512-vnni"), cpu("x86_64-avx512-vnni-amx")
    for cap, on_vnni, on_amx in (
        ("AVX2", PORTABLE, PORTABLE),
        ("avx512_core", PORTABLE, PORTABLE),
        ("AVX512_CORE_VNNI", VNNI, VNNI),
        ("AVX2_VNNI", VNNI, PORTABLE),  # VEX VNNI: this Sapphire Rapids line has no avx_vnni flag
        ("AVX512_CORE_AMX", VNNI, VNNI),
        ("ALL", VNNI, VNNI),
    ):
        for variable in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
            env = {variable: cap}
            assert int8_cpu_target("auto", "openvino", vnni, env)[0] == on_vnni, (cap, variable)
            assert int8_cpu_target("auto", "openvino", amx, env)[0] == on_amx, (cap, variable)
            assert int8_cpu_target("auto", "onnxruntime", cpu("x86_64-avx512-vnni"), env)[0] == VNNI
    capped = kernel_facts("openvino", vnni, {"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert capped["isa"] == "x86_64-avx512-vnni (oneDNN capped at AVX2)" and not sums_int8_in_32_bits(capped)
    assert kernel_facts("openvino", cpu("aarch64-neon-dotprod"), {"ONEDNN_MAX_CPU_ISA": "AVX2"})["isa"] == (
        "aarch64-neon-dotprod"
    )


def test_what_each_target_promises_per_cpu():
    for isa in FLAGS:
        facts = cpu(isa)
        wide = sums_int8_in_32_bits(facts)
        assert guarantee("openvino", facts, True, PORTABLE)["level"] == EXACT
        assert guarantee("openvino", facts, False, VNNI)["level"] == (EXACT if wide else REFUSED)
        assert guarantee("onnxruntime", facts, False, VNNI)["level"] == (EXACT_KERNELS if wide else REFUSED)
        problems = target_problems("onnxruntime", VNNI, facts, env={})
        assert bool(problems) == (not wide)
        assert target_problems("openvino", VNNI, facts, env={}, saturation_free=True) == []  # nothing can saturate
        assert guarantee("openvino", facts, True, VNNI)["level"] == EXACT
        assert target_problems("onnxruntime", PORTABLE, facts, env={}) == []
        assert target_problems("openvino", None, facts, env={}) == []  # engines from before the field: unchanged
    line = target_problems("openvino", VNNI, cpu("x86_64-avx2"), env={})[0]
    assert "built for CPUs that sum int8 products in 32 bits" in line and "x86_64-avx2 sums them in saturating" in line
    assert "--int8-cpu portable" in line


def test_an_unknown_target_is_one_clear_line(quant_model, tmp_path):
    from helpers import run_cli

    from edgeres.build import BuildConfig, build_engine

    with pytest.raises(EdgeresError, match=r"^unknown --int8-cpu 'avx2'; accepted: auto, portable, vnni$"):
        int8_cpu_target("avx2", "onnxruntime", cpu("x86_64-avx2"))
    with pytest.raises(EdgeresError, match=r"^unknown --int8-cpu 'avx2'; accepted: auto, portable, vnni$"):
        build_engine(
            BuildConfig(
                model=quant_model, out=tmp_path / "e", precision="int8", backend="onnxruntime", int8_cpu="avx2"
            ),
            progress=False,
        )
    proc = run_cli("build", "--int8-cpu", "avx2")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "'portable'" in proc.stderr


# ---- real engines: both forms of both CPU INT8 engines, from an artifact whose stem weights reach 127 ----


@pytest.fixture(scope="module")
def engines(tmp_path_factory, quant_model, wide_stem_calib) -> dict:
    """{(backend, "auto" | "other"): engine folder}: each CPU INT8 engine as ``auto`` builds it here, and in the
    other form (``--int8-cpu`` set to the target auto did not pick), from the suite's calibration with its stem
    weights on -127..127 (as edgeres wrote them before ``quant.signs``, and as other tools write them)."""
    quant_calib = wide_stem_calib
    from edgeres.build import BuildConfig, build_engine

    root = tmp_path_factory.mktemp("int8_targets")
    built = {}
    for backend in ("onnxruntime", "openvino"):
        _, manifest = build_engine(
            BuildConfig(
                model=quant_model,
                out=root / f"{backend}-auto",
                precision="int8",
                backend=backend,
                calib=quant_calib.folder,
            ),
            progress=False,
        )
        other = PORTABLE if manifest["backend"]["int8_cpu"] == VNNI else VNNI
        build_engine(
            BuildConfig(
                model=quant_model,
                out=root / f"{backend}-other",
                precision="int8",
                backend=backend,
                calib=quant_calib.folder,
                int8_cpu=other,
            ),
            progress=False,
        )
        built[backend, "auto"], built[backend, "other"] = root / f"{backend}-auto", root / f"{backend}-other"
    return built


def _manifest(folder) -> dict:
    return json.loads(next(folder.glob("*.manifest.json")).read_text())


def _by_target(engines, backend: str) -> dict:
    """{"portable": folder, "vnni": folder} for one backend."""
    return {_manifest(f)["backend"]["int8_cpu"]: f for (b, _), f in engines.items() if b == backend}


def test_auto_records_this_cpus_choice_and_the_form_follows_it(engines):
    import onnx

    from edgeres.device.cpu import cpu_facts
    from edgeres.engine import resolve
    from edgeres.quant.cpu import INT16_MAX, integer_kernel_bounds

    for backend in ("onnxruntime", "openvino"):
        expected, why = int8_cpu_target("auto", backend, cpu_facts())
        auto = _manifest(engines[backend, "auto"])["backend"]
        assert auto["int8_cpu"] == expected and auto["int8_cpu_reason"] == why
        forms = _by_target(engines, backend)
        assert set(forms) == {PORTABLE, VNNI}
        for target, folder in forms.items():
            manifest = _manifest(folder)
            facts = manifest["backend"]
            assert facts["stem_split"] == (target == PORTABLE) and manifest["build_options"]["int8_cpu"] in (
                "auto",
                target,
            )
            model = onnx.load(str(resolve(folder)[0]))
            split = any(i.name.endswith("_int8_split") for i in model.graph.initializer)
            assert split == (target == PORTABLE), (backend, target)
            bounds = integer_kernel_bounds(model)
            assert len(bounds) == facts["integer_kernels"] == 21
            # Split: every pair sum fits int16, exact on every x86 CPU. Whole: the stem's can leave it.
            assert facts["saturation_free"] == (target == PORTABLE)
            assert (facts["largest_pair_sum"] <= INT16_MAX) == (target == PORTABLE)


def test_the_unsplit_engines_compute_the_same_integers_where_products_sum_in_32_bits(engines, quant_val):
    """Where this CPU's kernels sum int8 products in 32 bits, the unsplit engine is exact: the ONNX Runtime engine
    gives logits bit-identical to the split one on 1,000 real digits, the OpenVINO engine the same top-1. Where they
    sum in 16 bits, opening it is refused before anything runs."""
    from edgeres.device.cpu import cpu_facts
    from edgeres.engine import EngineMismatchError, open_engine

    for backend in ("onnxruntime", "openvino"):
        forms = _by_target(engines, backend)
        if not sums_int8_in_32_bits(kernel_facts(backend, cpu_facts())):
            with pytest.raises(EngineMismatchError, match="built for CPUs that sum int8 products in 32 bits"):
                open_engine(forms[VNNI])
            continue
        logits = {}
        for target, folder in forms.items():
            with open_engine(folder, threads=1) as engine:
                logits[target] = np.concatenate([engine.runner.infer(b)["logits"] for b in quant_val.batches(32)])
        if backend == "onnxruntime":
            np.testing.assert_array_equal(logits[VNNI], logits[PORTABLE])
        else:  # oneDNN's epilogue may round differently for another kernel shape; the integers are the same
            np.testing.assert_array_equal(logits[VNNI].argmax(1), logits[PORTABLE].argmax(1))
            spread = float(logits[PORTABLE].std())
            assert np.abs(logits[VNNI] - logits[PORTABLE]).max() <= 0.05 * spread


def test_an_unsplit_engine_is_refused_on_a_cpu_that_sums_in_16_bits(engines, quant_val, monkeypatch):
    """Only the CPU is faked (``device.cpu.cpu_facts`` says AVX2); the engines, the check and the split run are real."""
    import edgeres.device.cpu
    from edgeres.engine import EngineMismatchError, int8_guarantee, open_engine

    avx2 = cpu("x86_64-avx2") | {"model": "AMD EPYC (AVX2 only)", "logical_cores": 2, "usable_cores": 2}
    monkeypatch.setattr(edgeres.device.cpu, "cpu_facts", lambda: avx2)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    for backend in ("onnxruntime", "openvino"):
        forms = _by_target(engines, backend)
        with pytest.raises(EngineMismatchError) as refused:
            open_engine(forms[VNNI])
        message = str(refused.value)
        assert "\n" not in message and "built for CPUs that sum int8 products in 32 bits" in message
        assert "x86_64-avx2 sums them in saturating 16-bit pairs" in message and "--int8-cpu portable" in message
        assert message.endswith("rebuild it with 'edgeres build'")
        assert int8_guarantee(_manifest(forms[VNNI]))["level"] == REFUSED
        assert int8_guarantee(_manifest(forms[PORTABLE]))["level"] in (EXACT, EXACT_KERNELS)
        with open_engine(forms[PORTABLE], threads=1) as engine:  # the portable form opens and runs
            assert engine.runner.infer(next(quant_val.batches(4)))["logits"].shape == (4, 10)


@pytest.mark.skipif(not X86, reason="ONEDNN_MAX_CPU_ISA=AVX2 is an x86 cap")
def test_onednn_capped_at_avx2_refuses_the_unsplit_openvino_engine_in_one_line(engines, quant_digits):
    """No faking: with oneDNN capped at AVX2 (its int8 kernels then sum pairs in 16 bits on any x86 CPU), `edgeres
    predict` refuses the unsplit OpenVINO engine with one line, and runs the split one."""
    from helpers import assert_user_error, run_cli

    forms = _by_target(engines, "openvino")
    image = next((quant_digits / "val" / "7").glob("*.png"))
    refused = run_cli("predict", image, "--engine", forms[VNNI], ONEDNN_MAX_CPU_ISA="AVX2")
    assert_user_error(
        refused,
        "built for CPUs that sum int8 products in 32 bits",
        "oneDNN capped at AVX2",
        "--int8-cpu portable",
        "rebuild it with",
    )
    ran = run_cli("predict", image, "--engine", forms[PORTABLE], "--json", ONEDNN_MAX_CPU_ISA="AVX2")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout.strip().splitlines()[-1])["predictions"]


def test_info_says_which_form_auto_builds_here(monkeypatch):
    from edgeres.backends.cpu_int8 import cpu_int8_summary

    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    vnni = cpu_int8_summary(cpu("x86_64-avx512-vnni"), openvino=True)
    assert vnni["auto_backend"] == "openvino" and vnni["auto_int8_cpu"] == VNNI
    assert "built for --int8-cpu vnni" in vnni["auto_reason"] and "--int8-cpu portable" in vnni["auto_reason"]
    assert {k: v["level"] for k, v in vnni["guarantees"].items()} == {"onnxruntime": EXACT_KERNELS, "openvino": EXACT}
    avx2 = cpu_int8_summary(cpu("x86_64-avx2"), openvino=True)
    assert avx2["auto_int8_cpu"] == PORTABLE and "split in two" in avx2["auto_reason"]
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # the OpenVINO engine auto builds then is the split one
    capped = cpu_int8_summary(cpu("x86_64-avx512-vnni"), openvino=True)
    assert capped["auto_int8_cpu"] == PORTABLE and "oneDNN capped at AVX2" in capped["auto_reason"]
    assert capped["guarantees"]["openvino"]["level"] == EXACT


def test_edgeres_artifacts_need_no_split_and_are_refused_nowhere(quant_model, quant_calib, quant_val, tmp_path,
                                                                 monkeypatch):
    """From edgeres's own calibration (stem weights on -64..64) both targets build the same unsplit, saturation-free
    engine: the ONNX Runtime ones give bit-identical logits, and on a CPU that sums int8 pairs in 16 bits (faked:
    ``device.cpu.cpu_facts`` says AVX2) the "vnni" one opens and keeps the exact guarantee."""
    import edgeres.device.cpu
    from edgeres.build import BuildConfig, build_engine
    from edgeres.engine import int8_guarantee, open_engine

    logits = {}
    for backend in ("onnxruntime", "openvino"):
        for target in (PORTABLE, VNNI):
            folder = tmp_path / f"{backend}-{target}"
            _, manifest = build_engine(BuildConfig(model=quant_model, out=folder, precision="int8", backend=backend,
                                                   calib=quant_calib.folder, int8_cpu=target), progress=False)
            facts = manifest["backend"]
            assert facts["saturation_free"] and not facts["stem_split"] and facts["split_convs"] == []
            assert facts["largest_pair_sum"] <= 32767
    avx2 = cpu("x86_64-avx2") | {"model": "AMD EPYC (AVX2 only)", "logical_cores": 2, "usable_cores": 2}
    monkeypatch.setattr(edgeres.device.cpu, "cpu_facts", lambda: avx2)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    for backend in ("onnxruntime", "openvino"):
        for target in (PORTABLE, VNNI):
            folder = tmp_path / f"{backend}-{target}"
            assert int8_guarantee(_manifest(folder))["level"] in (EXACT, EXACT_KERNELS)
            with open_engine(folder, threads=1) as engine:
                logits[backend, target] = np.concatenate([engine.runner.infer(b)["logits"]
                                                          for b in quant_val.batches(32)][:3])
    np.testing.assert_array_equal(logits["onnxruntime", VNNI], logits["onnxruntime", PORTABLE])
    np.testing.assert_array_equal(logits["openvino", VNNI], logits["openvino", PORTABLE])
