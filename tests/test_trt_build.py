"""``build --backend tensorrt`` where TensorRT is missing, and the TensorRT build options of the CLI."""

from __future__ import annotations

import importlib.util

import pytest
from helpers import assert_user_error, run_cli

from edgeres.backends.trt.loader import TrtBuildOptions
from edgeres.cli.build import HardwareCompat, tensorrt_options
from edgeres.errors import EdgeresError

pytest_plugins = ["fixtures_models"]
NO_TRT = importlib.util.find_spec("tensorrt") is None


def test_tensorrt_options_become_config_and_command_line():
    opts, args = tensorrt_options(
        "tensorrt",
        workspace=2048,
        min_batch=1,
        opt_batch=8,
        timing_cache=None,
        dla_core=0,
        version_compatible=False,
        hardware_compat=HardwareCompat.ampere_plus,
    )
    assert opts == TrtBuildOptions(
        workspace_mib=2048, min_batch=1, opt_batch=8, dla_core=0, hardware_compat="ampere_plus"
    )
    assert args == [
        "--workspace",
        "2048",
        "--min-batch",
        "1",
        "--opt-batch",
        "8",
        "--dla-core",
        "0",
        "--hardware-compat",
        "ampere_plus",
    ]
    assert tensorrt_options("onnxruntime", workspace=None, version_compatible=False) == (None, [])


def test_tensorrt_options_with_another_backend_are_an_error():
    with pytest.raises(EdgeresError, match="--dla-core, --version-compatible only apply to TensorRT"):
        tensorrt_options("onnxruntime", dla_core=0, version_compatible=True)


def test_cli_tensorrt_option_on_cpu_backend(tmp_path, random_checkpoint):
    proc = run_cli(
        "build",
        "--model",
        random_checkpoint("resnet18"),
        "--backend",
        "onnxruntime",
        "--dla-core",
        "0",
        "--out",
        tmp_path / "e",
        cwd=tmp_path,
    )
    assert_user_error(proc, "--dla-core only apply to TensorRT", "--backend tensorrt")
    assert not (tmp_path / "e").exists()


@pytest.mark.skipif(not NO_TRT, reason="TensorRT is installed here")
def test_cli_tensorrt_build_without_tensorrt_names_the_extra(tmp_path, random_checkpoint):
    proc = run_cli(
        "build",
        "--model",
        random_checkpoint("resnet18"),
        "--backend",
        "tensorrt",
        "--precision",
        "fp16",
        "--out",
        tmp_path / "e",
        cwd=tmp_path,
    )
    assert_user_error(proc, "'tensorrt' is not installed", "edgeres[tensorrt]")
    assert not (tmp_path / "e").exists()
