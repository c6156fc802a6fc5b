"""Version dispatch: features per TensorRT version, build-request checks, engine compatibility, trtexec lines."""

from __future__ import annotations

import pytest
from fixtures_trt import ORIN_10_3, Names, name_lists

from edgeres.backends.trt import versions
from edgeres.backends.trt.versions import TrtVersion, check_request, compat_problems, features
from edgeres.errors import EdgeresError


def test_parse_versions():
    assert TrtVersion.parse("10.3.0.30") == TrtVersion(10, 3, 0, "10.3.0.30")
    assert str(TrtVersion.parse("8.6.1")) == "8.6.1"
    assert TrtVersion.parse("10.16.1.11") > TrtVersion.parse("10.3.0")
    with pytest.raises(EdgeresError, match="not a TensorRT version"):
        TrtVersion.parse("latest")


@pytest.mark.parametrize("version", ["8.5.2", "9.3.0", "7.1.3", "12.0.0"])
def test_unsupported_versions_are_named(version):
    with pytest.raises(EdgeresError, match=r"not supported; supported: 8\.6, 10\.x, 11\.x"):
        features(version)


def test_feature_matrix():
    f86, f103, f11 = features("8.6.1"), features("10.3.0"), features("11.4.0")
    assert (f86.explicit_batch_flag, f103.explicit_batch_flag, f11.explicit_batch_flag) == (True, False, False)
    assert (f86.precision_flags, f103.precision_flags, f11.precision_flags) == (True, True, False)
    assert (f86.implicit_int8, f103.implicit_int8, f11.implicit_int8) == (True, True, False)
    assert (f86.dla, f103.dla, f11.dla) == (True, True, False)
    assert (f86.parser_node_names, f103.parser_node_names, f11.parser_node_names) == (False, True, True)
    assert f11.strongly_typed and not f103.strongly_typed


@pytest.mark.parametrize("version", sorted(name_lists()))
def test_network_and_precision_flags_use_only_that_versions_names(version):
    trt = Names(name_lists()[version])
    feat = features(version)
    flags = versions.network_flags(feat, trt)
    assert isinstance(flags, int)
    if feat.explicit_batch_flag:
        assert flags == 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    for precision in versions.TRT_PRECISIONS:
        got = [repr(f) for f in versions.precision_flags(feat, precision, trt)]
        if feat.strongly_typed:
            assert got == []  # 11: the ONNX types decide
        else:
            assert (
                got
                == {
                    "fp32": [],
                    "fp16": ["BuilderFlag.FP16"],
                    "int8": ["BuilderFlag.INT8"],
                    "mixed": ["BuilderFlag.INT8"],
                }[precision]
            )


def test_fast_precisions_by_compute_capability():
    assert versions.fast_precisions("8.7") == {"fp16": True, "int8": True}  # Orin
    assert versions.fast_precisions("7.0") == {"fp16": True, "int8": False}  # V100
    assert versions.fast_precisions("6.1") == {"fp16": False, "int8": True}  # Pascal consumer
    assert versions.fast_precisions(None) == {"fp16": None, "int8": None}


def test_implicit_int8_on_11_points_to_qdq():
    with pytest.raises(EdgeresError, match="--int8-from qdq"):
        check_request(features("11.0.0"), "int8", int8_source="cache")
    assert check_request(features("10.3.0"), "int8", int8_source="cache", compute_capability="8.7") == []


@pytest.mark.parametrize(
    ("version", "kwargs", "message"),
    [
        ("11.4.0", {"dla_core": 0, "dla_cores": 2}, "has no DLA"),
        ("10.3.0", {"dla_core": 0, "dla_cores": 0}, "has no DLA"),
        ("10.3.0", {"dla_core": 2, "dla_cores": 2}, "does not exist"),
        ("10.3.0", {"dla_core": 0, "dla_cores": 2, "version_compatible": True}, "cannot be version"),
        ("10.3.0", {"builder_opt_level": 7}, "0-5"),
        ("10.3.0", {"hardware_compat": "turing_plus"}, "ampere_plus"),
        ("10.3.0", {"hardware_compat": "ampere_plus", "compute_capability": "7.5"}, "Ampere or newer"),
    ],
)
def test_bad_requests_are_refused_with_reason(version, kwargs, message):
    with pytest.raises(EdgeresError, match=message):
        check_request(features(version), "int8", **kwargs)


def test_dla_refuses_fp32_and_int8_without_fast_int8_warns():
    with pytest.raises(EdgeresError, match="FP16 or INT8"):
        check_request(features("8.6.1"), "fp32", dla_core=0, dla_cores=2)
    warnings = check_request(features("10.3.0"), "int8", compute_capability="7.0")
    assert len(warnings) == 1 and "FP16" in warnings[0] and "no fast INT8" in warnings[0]


def _manifest(**backend):
    return {
        "backend": {"name": "tensorrt", "version": "10.3.0", **backend},
        "device": {"gpu": "Orin", "compute_capability": "8.7", "l4t": "36.4.0"},
    }


def test_compat_same_machine_is_fine():
    assert compat_problems(_manifest(), ORIN_10_3) == []


def test_compat_names_every_difference():
    here = {"backend_version": "10.7.0", "gpu": "NVIDIA GeForce RTX 3090", "compute_capability": "8.6", "l4t": None}
    problems = compat_problems(_manifest(dla_core=1), here)
    text = " | ".join(problems)
    assert "built with TensorRT 10.3.0, this machine has 10.7.0" in text
    assert "sm 8.7" in text and "RTX 3090" in text
    assert "L4T 36.4.0" in text and "not a Jetson" in text
    assert len(problems) == 3  # DLA core count unknown here: not claimed


def test_compat_without_tensorrt():
    assert compat_problems(_manifest(), {"backend_version": None}) == [
        "built with TensorRT 10.3.0, this machine has no TensorRT installed"
    ]


def test_version_compatible_engines_run_on_later_same_major():
    m = _manifest(version_compatible=True)
    assert compat_problems(m, ORIN_10_3 | {"backend_version": "10.7.0", "l4t": "36.5.0"}) == []
    assert "from 10.3 on, and 11.x" in compat_problems(m, ORIN_10_3 | {"backend_version": "10.2.0"})[0]


@pytest.mark.parametrize(
    ("built", "here", "runs"),
    [
        ("10.3.0", "11.0.0", True),  # TensorRT's support matrix: 10 -> 11
        ("10.3.0", "11.4.0", True),
        ("8.6.1", "10.3.0", True),  # 8 -> 10
        ("8.6.1", "8.6.2", True),
        ("8.6.1", "11.0.0", False),  # "a TensorRT 8 engine cannot run with a TensorRT 11 runtime"
        ("11.0.0", "10.16.1", False),  # never older
        ("10.7.0", "10.3.0", False),
        ("8.5.2", "8.6.1", False),  # version compatibility starts at 8.6
    ],
)
def test_version_compatibility_table(built, here, runs):
    m = _manifest(version_compatible=True) | {"device": {"gpu": "NVIDIA A10", "compute_capability": "8.6"}}
    m["backend"]["version"] = built
    problems = compat_problems(m, {"backend_version": here, "gpu": "NVIDIA A10", "compute_capability": "8.6"})
    assert (problems == []) is runs, problems
    assert versions.version_compatible_runs(TrtVersion.parse(built), TrtVersion.parse(here)) is runs


def test_without_version_compatibility_the_exact_version_is_needed():
    m = _manifest()
    assert "tied to the exact TensorRT version" in compat_problems(m, ORIN_10_3 | {"backend_version": "10.3.1"})[0]


def test_hardware_compatible_engine_built_on_a_jetson_is_held_to_its_gpu():
    m = _manifest(hardware_compat="ampere_plus")  # an old manifest: built on a Jetson (L4T) before this was refused
    problems = compat_problems(m, {"backend_version": "10.3.0", "gpu": "NVIDIA A10", "compute_capability": "8.6"})
    assert any("hardware-compatible engines do not cover Jetsons" in p for p in problems), problems
    assert compat_problems(m, ORIN_10_3) == []  # on the Orin it was built on, it runs


def test_hardware_compatible_desktop_engine_is_not_claimed_for_a_jetson():
    m = _manifest(hardware_compat="ampere_plus")
    m["device"] = {"gpu": "NVIDIA A10", "compute_capability": "8.6", "l4t": None}
    problems = compat_problems(m, ORIN_10_3)
    assert any("do not cover Jetsons" in p for p in problems), problems


def test_hardware_compatible_engines_need_ampere_plus():
    m = _manifest(hardware_compat="ampere_plus")
    m["device"]["l4t"] = None
    assert compat_problems(m, {"backend_version": "10.3.0", "gpu": "NVIDIA A10", "compute_capability": "8.6"}) == []
    assert "Ampere" in compat_problems(m, {"backend_version": "10.3.0", "gpu": "T4", "compute_capability": "7.5"})[0]


def test_dla_engines_need_the_core_and_a_dla_version():
    m = _manifest(dla_core=1)
    assert compat_problems(m, ORIN_10_3) == []
    assert "1 DLA core" in compat_problems(m, ORIN_10_3 | {"dla_cores": 1})[0]  # Orin NX 8GB has one


def test_trtexec_command_per_version(tmp_path):
    common = {
        "onnx": "m.source.onnx",
        "engine": "m.plan",
        "input_name": "input",
        "dims": [3, 32, 32],
        "min_batch": 1,
        "opt_batch": 8,
        "max_batch": 32,
    }
    engine_dir = tmp_path / "engines" / "m"
    cmd = versions.trtexec_command(
        features("10.3.0"),
        precision="int8",
        workspace_mib=1024,
        timing_cache=str(tmp_path / "engines" / "t.cache"),
        builder_opt_level=4,
        calib_cache="m.calib.cache",
        engine_dir=engine_dir,
        **common,
    )
    # trtexec saves beside edgeres' engine, never over m.plan (whose hash the manifest checks)
    assert cmd.startswith(
        "trtexec --onnx=m.source.onnx --saveEngine=m.trtexec.plan --minShapes=input:1x3x32x32 "
        "--optShapes=input:8x3x32x32 --maxShapes=input:32x3x32x32 --int8"
    )
    for part in (
        "--calib=m.calib.cache",
        "--memPoolSize=workspace:1024",
        "--timingCacheFile=../t.cache",
        "--builderOptimizationLevel=4",
        "--profilingVerbosity=detailed",
    ):
        assert part in cmd
    assert str(tmp_path) not in cmd  # relative to the engine folder, as the docstring says
    cmd11 = versions.trtexec_command(
        features("11.4.0"), precision="fp16", version_compatible=True, hardware_compat="ampere_plus", **common
    )
    assert "--fp16" not in cmd11 and "--int8" not in cmd11  # 11: the FP16-typed ONNX carries the precision
    assert "--versionCompatible" in cmd11 and "--hardwareCompatibilityLevel=ampere+" in cmd11
    assert "--int8" in versions.trtexec_command(features("8.6.1"), precision="mixed", **common)
    with pytest.raises(EdgeresError, match="mixed keeps layers float"):
        check_request(features("10.3.0"), "mixed", int8_source="cache")


def test_trtexec_command_for_dla_has_one_fixed_shape():
    common = {"onnx": "m.source.onnx", "engine": "m.plan", "input_name": "input", "dims": [3, 32, 32]}
    low, opt, high = versions.batch_profile(None, None, 4, dla=True)
    cmd = versions.trtexec_command(
        features("10.3.0"),
        precision="int8",
        min_batch=low,
        opt_batch=opt,
        max_batch=high,
        dla_core=0,
        calib_cache="m.calib.cache",
        **common,
    )
    for part in (
        "--minShapes=input:4x3x32x32",
        "--optShapes=input:4x3x32x32",
        "--maxShapes=input:4x3x32x32",
        "--useDLACore=0 --allowGPUFallback",
        "--calib=m.calib.cache",
    ):
        assert part in cmd
    with pytest.raises(EdgeresError, match="one fixed batch"):
        versions.trtexec_command(
            features("10.3.0"), precision="fp16", min_batch=1, opt_batch=1, max_batch=4, dla_core=0, **common
        )


def test_batch_profile_tunes_for_batch_1_by_default():
    assert versions.batch_profile(None, None, 32) == (1, 1, 32)
    assert versions.batch_profile(2, None, 32) == (2, 2, 32)  # opt follows the minimum
    assert versions.batch_profile(None, 16, 32) == (1, 16, 32)
    with pytest.raises(EdgeresError, match="1 <= --min-batch <= --opt-batch <= --max-batch; got 1 / 64 / 32"):
        versions.batch_profile(None, 64, 32)


def test_dla_batch_profile_is_one_fixed_batch():
    assert versions.batch_profile(None, None, 8, dla=True) == (8, 8, 8)
    assert versions.batch_profile(8, 8, 8, dla=True) == (8, 8, 8)
    with pytest.raises(EdgeresError, match=r"DLA has no dynamic shapes.*--max-batch 8, but --min-batch 1 asked"):
        versions.batch_profile(1, None, 8, dla=True)


@pytest.mark.parametrize(
    ("precision", "source", "message"),
    [
        ("int8", "qdq", "DLA runs INT8 only from a calibration cache.*add --int8-from cache"),
        ("mixed", "qdq", "mixed is a Q/DQ model.*--precision int8 --int8-from cache"),
    ],
)
def test_dla_refuses_qdq_int8_with_the_working_alternative(precision, source, message):
    with pytest.raises(EdgeresError, match=message):
        check_request(
            features("10.3.0"),
            precision,
            int8_source=source,
            dla_core=0,
            dla_cores=2,
            compute_capability="8.7",
            jetson=True,
        )


def test_dla_accepts_the_calibration_cache_and_fp16():
    for precision, source in (("int8", "cache"), ("fp16", "qdq")):
        assert (
            check_request(
                features("8.6.1"),
                precision,
                int8_source=source,
                dla_core=1,
                dla_cores=2,
                compute_capability="8.7",
                jetson=True,
            )
            == []
        )


@pytest.mark.parametrize(
    ("version", "dla"),
    [
        ("8.6.1", True),
        ("10.3.0", True),
        ("10.7.0", True),
        ("10.8.0", False),
        ("10.16.1", False),
        ("11.0.0", False),
        ("11.4.0", False),
        ("11.4.1", True),
    ],
)
def test_dla_version_gating_follows_tensorrts_notes(version, dla):
    assert features(version).dla is dla


def test_dla_refusals_name_the_versions_that_have_it():
    with pytest.raises(EdgeresError, match=r"10.7 was the last 10.x release with DLA"):
        check_request(features("10.16.1"), "fp16", dla_core=0, dla_cores=2)
    with pytest.raises(EdgeresError, match=r"11.4.1, on JetPack 7.2.2 or later"):
        check_request(features("11.4.0"), "fp16", dla_core=0, dla_cores=2)
    assert check_request(features("11.4.1"), "fp16", dla_core=0, dla_cores=2, jetson=True) == []
    with pytest.raises(EdgeresError, match=r"INT8 on DLA needs a calibration cache.*--precision fp16"):
        check_request(features("11.4.1"), "int8", dla_core=0, dla_cores=2, jetson=True)


def test_hardware_compat_is_refused_on_a_jetson():
    with pytest.raises(EdgeresError, match=r"not supported on a Jetson.*not JetPack or DRIVE OS"):
        check_request(features("10.3.0"), "fp16", hardware_compat="ampere_plus", compute_capability="8.7", jetson=True)
    assert check_request(features("10.3.0"), "fp16", hardware_compat="ampere_plus", compute_capability="8.6") == []
