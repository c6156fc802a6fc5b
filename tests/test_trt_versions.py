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
            assert got == {"fp32": [], "fp16": ["BuilderFlag.FP16"], "int8": ["BuilderFlag.INT8"],
                           "mixed": ["BuilderFlag.INT8"]}[precision]


def test_fast_precisions_by_compute_capability():
    assert versions.fast_precisions("8.7") == {"fp16": True, "int8": True}  # Orin
    assert versions.fast_precisions("7.0") == {"fp16": True, "int8": False}  # V100
    assert versions.fast_precisions("6.1") == {"fp16": False, "int8": True}  # Pascal consumer
    assert versions.fast_precisions(None) == {"fp16": None, "int8": None}


def test_implicit_int8_on_11_points_to_qdq():
    with pytest.raises(EdgeresError, match="--int8-from qdq"):
        check_request(features("11.0.0"), "int8", int8_source="cache")
    assert check_request(features("10.3.0"), "int8", int8_source="cache", compute_capability="8.7") == []


@pytest.mark.parametrize(("version", "kwargs", "message"), [
    ("11.4.0", {"dla_core": 0, "dla_cores": 2}, "does not support DLA"),
    ("10.3.0", {"dla_core": 0, "dla_cores": 0}, "has no DLA"),
    ("10.3.0", {"dla_core": 2, "dla_cores": 2}, "does not exist"),
    ("10.3.0", {"dla_core": 0, "dla_cores": 2, "version_compatible": True}, "cannot be version"),
    ("10.3.0", {"builder_opt_level": 7}, "0-5"),
    ("10.3.0", {"hardware_compat": "turing_plus"}, "ampere_plus"),
    ("10.3.0", {"hardware_compat": "ampere_plus", "compute_capability": "7.5"}, "Ampere or newer"),
])
def test_bad_requests_are_refused_with_reason(version, kwargs, message):
    with pytest.raises(EdgeresError, match=message):
        check_request(features(version), "int8", **kwargs)


def test_dla_refuses_fp32_and_int8_without_fast_int8_warns():
    with pytest.raises(EdgeresError, match="FP16 or INT8"):
        check_request(features("8.6.1"), "fp32", dla_core=0, dla_cores=2)
    warnings = check_request(features("10.3.0"), "int8", compute_capability="7.0")
    assert len(warnings) == 1 and "FP16" in warnings[0] and "no fast INT8" in warnings[0]


def _manifest(**backend):
    return {"backend": {"name": "tensorrt", "version": "10.3.0", **backend},
            "device": {"gpu": "Orin", "compute_capability": "8.7", "l4t": "36.4.0"}}


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
        "built with TensorRT 10.3.0, this machine has no TensorRT installed"]


def test_version_compatible_engines_run_on_later_same_major():
    m = _manifest(version_compatible=True)
    assert compat_problems(m, ORIN_10_3 | {"backend_version": "10.7.0", "l4t": "36.5.0"}) == []
    assert "from 10.3 on" in compat_problems(m, ORIN_10_3 | {"backend_version": "10.2.0"})[0]
    assert compat_problems(m, ORIN_10_3 | {"backend_version": "11.0.0"})


def test_hardware_compatible_engines_need_ampere_plus():
    m = _manifest(hardware_compat="ampere_plus")
    m["device"]["l4t"] = None
    assert compat_problems(m, {"backend_version": "10.3.0", "gpu": "NVIDIA A10", "compute_capability": "8.6"}) == []
    assert "Ampere" in compat_problems(m, {"backend_version": "10.3.0", "gpu": "T4", "compute_capability": "7.5"})[0]


def test_dla_engines_need_the_core_and_a_dla_version():
    m = _manifest(dla_core=1)
    assert compat_problems(m, ORIN_10_3) == []
    assert "1 DLA core" in compat_problems(m, ORIN_10_3 | {"dla_cores": 1})[0]  # Orin NX 8GB has one


def test_trtexec_command_per_version():
    common = {"onnx": "m.source.onnx", "engine": "m.plan", "input_name": "input", "dims": [3, 32, 32],
              "min_batch": 1, "opt_batch": 8, "max_batch": 32}
    cmd = versions.trtexec_command(features("10.3.0"), precision="int8", workspace_mib=1024, timing_cache="t.cache",
                                   builder_opt_level=4, dla_core=0, calib_cache="m.calib.cache", **common)
    assert cmd.startswith("trtexec --onnx=m.source.onnx --saveEngine=m.plan --minShapes=input:1x3x32x32 "
                          "--optShapes=input:8x3x32x32 --maxShapes=input:32x3x32x32 --int8")
    for part in ("--calib=m.calib.cache", "--memPoolSize=workspace:1024", "--timingCacheFile=t.cache",
                 "--builderOptimizationLevel=4", "--useDLACore=0 --allowGPUFallback"):
        assert part in cmd
    cmd11 = versions.trtexec_command(features("11.4.0"), precision="fp16", version_compatible=True,
                                     hardware_compat="ampere_plus", **common)
    assert "--fp16" not in cmd11 and "--int8" not in cmd11  # 11: the FP16-typed ONNX carries the precision
    assert "--versionCompatible" in cmd11 and "--hardwareCompatibilityLevel=ampere+" in cmd11
    assert "--int8" in versions.trtexec_command(features("8.6.1"), precision="mixed", **common)
    with pytest.raises(EdgeresError, match="mixed keeps layers float"):
        check_request(features("10.3.0"), "mixed", int8_source="cache")
