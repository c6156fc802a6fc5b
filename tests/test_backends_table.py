"""The backends table (``edgeres.backends.ENGINE_BACKENDS``): every entry exposes what the table promises, build,
engine and the CLI pick from it, an unknown name is one clear line listing the table, and a backend added as one
package plus one table line is built, checked and run through the product's own code."""

from __future__ import annotations

import importlib
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgeres.backends import ENGINE_BACKENDS, backend_module, backend_names
from edgeres.errors import EdgeresError

pytest_plugins = ["fixtures_models"]

ROOT = Path(__file__).resolve().parents[1]
HOOKS = (
    "version",
    "ready",
    "check_request",
    "check_calibrated",
    "build",
    "current_facts",
    "engine_problems",
    "open_runner",
    "describe",
    "source_onnx",
    "model_io",
    "write_triton_model",
)


@pytest.mark.parametrize("name", list(ENGINE_BACKENDS))
def test_every_table_entry_exposes_what_the_table_promises(name):
    import importlib.metadata as md

    import tomllib

    from edgeres.build import PRECISIONS

    module = backend_module(name)
    assert name == module.NAME
    assert module.ENGINE_SUFFIX in (".onnx", ".plan")
    assert module.PRECISIONS and set(module.PRECISIONS) <= set(PRECISIONS)
    assert isinstance(module.ON_GPU, bool) and isinstance(module.CPU_INT8, bool)
    assert isinstance(module.TENSORRT_PLAN, bool)
    model_file, config_line = module.TRITON_MODEL
    assert model_file.startswith("model.") and ("platform:" in config_line or "backend:" in config_line)
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert module.EXTRA in extras  # the pip extra a "not installed" error names exists
    for hook in HOOKS:
        assert callable(getattr(module, hook)), f"{name}.{hook}"
    builder = importlib.import_module(ENGINE_BACKENDS[name] + ".builder")
    assert callable(builder.build_engine_file)
    version = module.version()
    if module.ready() and not module.ON_GPU:  # installed here (the CPU backends are dev dependencies)
        assert version is not None and version.split("-")[0] == md.version(module.DISTRIBUTIONS[0]).split("-")[0]
    if module.ON_GPU:
        assert isinstance(module.AUTO_REASON, str) and module.AUTO_REASON.startswith("auto: ")


def test_build_engine_and_the_cli_take_their_choices_from_the_table():
    from edgeres.build import BACKENDS
    from edgeres.cli.build import Backend
    from edgeres.engine import ENGINE_SUFFIXES, backend_version

    assert ("auto", *backend_names()) == BACKENDS
    assert [b.value for b in Backend] == list(BACKENDS)
    assert {name: backend_module(name).ENGINE_SUFFIX for name in ENGINE_BACKENDS} == ENGINE_SUFFIXES
    assert backend_version("onnxruntime") == backend_module("onnxruntime").version()
    # No backend-name branches left where the table answers: build.py and engine.py name no backend.
    for path in ("edgeres/build.py", "edgeres/engine.py"):
        text = (ROOT / path).read_text()
        assert not re.search(r'[!=]= "(onnxruntime|openvino|tensorrt)"', text), path


def test_an_unknown_backend_is_one_line_listing_the_table():
    from helpers import run_cli

    from edgeres.build import choose_backend

    names = ", ".join(backend_names())
    with pytest.raises(EdgeresError, match=f"^unknown backend 'tflite'; accepted: auto, {names}$"):
        choose_backend("tflite")
    with pytest.raises(EdgeresError, match=f"^m.json: unknown backend 'tflite'; accepted: {names}$"):
        backend_module("tflite", where="m.json: ")
    proc = run_cli("build", "--backend", "tflite")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "tflite" in proc.stderr and all(n in proc.stderr for n in backend_names())


# A backend added the way the table's doc says: one package and one table line. Its builder and runner are ONNX
# Runtime's (nothing here can fake an engine), under another name, FP32 only.
EXTRA_BACKEND = '''
"""ONNX Runtime's FP32 engine under another name: a backend added by one package and one table line."""

from edgeres.backends import onnxrt as _ort

NAME = "ort-copy"
ENGINE_SUFFIX = ".onnx"
PRECISIONS = ("fp32",)
PACKAGE, DISTRIBUTIONS, EXTRA = _ort.PACKAGE, _ort.DISTRIBUTIONS, _ort.EXTRA
ON_GPU = False
CPU_INT8 = False
TENSORRT_PLAN, TRITON_MODEL = False, _ort.TRITON_MODEL
version, ready, current_facts, engine_problems = _ort.version, _ort.ready, _ort.current_facts, _ort.engine_problems
open_runner, describe, build = _ort.open_runner, _ort.describe, _ort.build
source_onnx, model_io, write_triton_model = _ort.source_onnx, _ort.model_io, _ort.write_triton_model


def check_request(cfg):
    from edgeres.errors import EdgeresError

    if cfg.precision not in PRECISIONS:
        raise EdgeresError(f"--backend ort-copy builds FP32 engines only, not {cfg.precision}")


def check_calibrated(cfg, calib, mixed, checked):
    return checked
'''


def test_a_backend_added_by_one_package_and_one_table_line_builds_and_runs(
    trained_checkpoint, trained_engine, digits_data, tmp_path, monkeypatch
):
    from engine_helpers import val_digit_files

    from edgeres.build import BuildConfig, build_engine
    from edgeres.engine import open_engine, resolve
    from edgeres.manifest import read_manifest
    from edgeres.processing import preprocess, read_image

    package = tmp_path / "pkgs" / "edgeres_ort_copy"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(EXTRA_BACKEND))
    monkeypatch.syspath_prepend(str(package.parent))
    monkeypatch.setitem(ENGINE_BACKENDS, "ort-copy", "edgeres_ort_copy")

    with pytest.raises(EdgeresError, match="ort-copy builds FP32 engines only, not int8"):
        build_engine(
            BuildConfig(model=trained_checkpoint, out=tmp_path / "int8", precision="int8", backend="ort-copy"),
            progress=False,
        )
    engine_file, manifest = build_engine(
        BuildConfig(model=trained_checkpoint, out=tmp_path / "copy", backend="ort-copy"), progress=False
    )
    assert engine_file.suffix == ".onnx" and manifest["backend"]["name"] == "ort-copy"
    assert manifest["backend"]["version"] == backend_module("onnxruntime").version()
    assert read_manifest(resolve(tmp_path / "copy")[1])["backend_choice"]["picked"] == "ort-copy"
    images = [read_image(p) for p, _ in val_digit_files(digits_data, per_class=1)]
    with open_engine(tmp_path / "copy", threads=1) as added, open_engine(trained_engine, threads=1) as reference:
        batch = preprocess(images, added.preprocess)
        got, want = added.runner.infer(batch)["logits"], reference.runner.infer(batch)["logits"]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)  # the same checkpoint through the same runtime
    from edgeres.deploy.triton import TritonConfig, deploy_triton  # deploy takes the backend's facts from it too

    deploy_triton(TritonConfig(engine=tmp_path / "copy", out=tmp_path / "repo", name="digits"))
    config = (tmp_path / "repo" / "digits" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config and "kind: KIND_CPU" in config
    assert (tmp_path / "repo" / "digits" / "1" / "model.onnx").read_bytes() == engine_file.read_bytes()
    monkeypatch.delitem(ENGINE_BACKENDS, "ort-copy")
    with pytest.raises(EdgeresError, match=r"not a valid edgeres engine manifest: wrong or unreadable backend\.name"):
        open_engine(tmp_path / "copy")  # the table no longer lists it: its engines are refused, not guessed at
