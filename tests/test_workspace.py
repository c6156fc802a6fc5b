"""Workspaces: ``edgeres init``, short commands inside one, explicit options winning, ``train`` recording its model."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys

import pytest
from engine_helpers import engine_files
from helpers import assert_user_error, files_in, run_cli, write_digit_folder

from edgeres.errors import EdgeresError
from edgeres.models.checkpoint import file_sha256
from edgeres.workspace import (
    WORKSPACE_FILE,
    default_engine_dir,
    dump_toml,
    find_workspace,
    init_workspace,
    model_or_workspace_default,
    record_trained_model,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

pytest_plugins = ["fixtures_models"]

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _toml(folder) -> dict:
    return tomllib.loads((folder / WORKSPACE_FILE).read_text())


@pytest.fixture
def outside(tmp_path):
    """A folder that is in no workspace (checked, so these tests cannot pass by accident)."""
    assert find_workspace(tmp_path) is None
    return tmp_path


def test_cli_init_writes_edgeres_toml(outside, trained_checkpoint):
    ws = outside / "proj"
    ws.mkdir()
    shutil.copy(trained_checkpoint, ws / "model.safetensors")
    proc = run_cli("init", "--model", "model.safetensors", cwd=ws)
    assert proc.returncode == 0, proc.stderr
    assert "workspace ready" in proc.stdout
    assert sorted(files_in(ws)) == ["calibration", "edgeres.toml", "engines", "model.safetensors"]
    settings = _toml(ws)
    assert settings["model"] == {"checkpoint": "model.safetensors"}  # relative: the folder can move
    assert settings["build"] == {"backend": "auto"}
    found = find_workspace(ws / "engines")  # found from a subfolder too
    assert found is not None and found.root == ws.resolve() and found.model == ws.resolve() / "model.safetensors"

    again = run_cli("init", cwd=ws)
    assert_user_error(again, "edgeres.toml already exists", "--force")
    assert _toml(ws) == settings


def test_build_in_workspace_needs_only_the_precision(outside, trained_checkpoint):
    ws = outside / "proj"
    ws.mkdir()
    shutil.copy(trained_checkpoint, ws / "model.safetensors")
    init_workspace(ws, model=ws / "model.safetensors")

    sub = ws / "calibration"  # any folder inside the workspace works
    proc = run_cli("build", "--precision", "fp32", cwd=sub)
    assert proc.returncode == 0, proc.stderr
    folder = ws / "engines" / "r18-fp32"
    assert files_in(folder) == ["r18-fp32.manifest.json", "r18-fp32.onnx"]
    assert files_in(ws / "engines") == ["r18-fp32"]
    manifest = json.loads(engine_files(folder)[1].read_text())
    assert manifest["source"] == {"checkpoint": str((ws / "model.safetensors").resolve()),
                                  "sha256": file_sha256(trained_checkpoint)}
    assert manifest["backend"]["name"] == "onnxruntime" and manifest["precision"] == "fp32"
    assert "--out " + str(folder.resolve()) in manifest["build_command"]


def test_explicit_options_win_over_the_workspace(outside, trained_checkpoint, random_checkpoint):
    ws = outside / "proj"
    shutil.copy(trained_checkpoint, outside / "digits.safetensors")
    init_workspace(ws, model=outside / "digits.safetensors", name="digits")
    settings = _toml(ws)
    settings["build"]["backend"] = "tensorrt"
    (ws / WORKSPACE_FILE).write_text(dump_toml(settings))

    if not HAS_TENSORRT:  # the workspace's backend is used when --backend is not given
        proc = run_cli("build", "--precision", "fp32", cwd=ws)
        assert_user_error(proc, "'tensorrt' is not installed")
        assert files_in(ws / "engines") == []

    other = random_checkpoint("resnet18")  # 64x64 input, not the workspace's 32x32 digits model
    proc = run_cli("build", "--precision", "fp32", "--backend", "onnxruntime", "--model", other,
                   "--out", outside / "elsewhere" / "mine", "--max-batch", "4", cwd=ws)
    assert proc.returncode == 0, proc.stderr
    assert files_in(ws / "engines") == []
    manifest = json.loads(engine_files(outside / "elsewhere" / "mine")[1].read_text())
    assert manifest["source"]["sha256"] == file_sha256(other)
    assert manifest["backend"]["name"] == "onnxruntime" and manifest["input"]["max_batch"] == 4
    assert manifest["input"]["shape"] == [-1, 3, 64, 64]


def test_engine_name_comes_from_the_workspace(outside, trained_checkpoint, monkeypatch):
    ws = outside / "proj"
    init_workspace(ws, model=trained_checkpoint, name="digits")
    assert _toml(ws)["model"]["checkpoint"] == str(trained_checkpoint.resolve())  # outside it: absolute
    monkeypatch.chdir(ws / "engines")
    assert model_or_workspace_default(None) == trained_checkpoint.resolve()
    assert default_engine_dir(trained_checkpoint, "fp16") == ws.resolve() / "engines" / "digits-fp16"
    monkeypatch.chdir(outside)
    assert default_engine_dir(trained_checkpoint, "fp32").as_posix() == "engines/r18-fp32"


def test_train_inside_a_workspace_records_the_checkpoint(outside, trained_checkpoint):
    ws = outside / "proj"
    init_workspace(ws, model=trained_checkpoint)
    data = write_digit_folder(outside / "digits3", digits=(0, 1, 2), per_class=12)
    proc = run_cli("train", "--data", data, "--out", "runs/new", "--epochs", "1", "--max-steps", "2",
                   "--img-size", "32", "--batch-size", "8", "--quiet", cwd=ws)
    assert proc.returncode == 0, proc.stderr
    assert _toml(ws)["model"]["checkpoint"] == "runs/new/best.safetensors"
    assert find_workspace(ws).model == ws.resolve() / "runs" / "new" / "best.safetensors"
    assert (ws / "runs" / "new" / "best.safetensors").is_file()
    assert _toml(ws)["build"] == {"backend": "auto"}  # the rest of the file is kept


def test_record_trained_model_does_nothing_outside_a_workspace(outside, trained_checkpoint, monkeypatch):
    monkeypatch.chdir(outside)
    assert record_trained_model(trained_checkpoint) is None
    assert files_in(outside) == []


def test_missing_model_outside_a_workspace_mentions_init(outside):
    for command in (["build", "--precision", "fp32"], ["export", "--out", "m.onnx"]):
        proc = run_cli(*command, cwd=outside)
        assert_user_error(proc, "no --model given and no workspace here", "edgeres init")
    assert files_in(outside) == []


def test_workspace_without_a_model_says_how_to_get_one(outside):
    init_workspace(outside / "proj")
    proc = run_cli("build", "--precision", "fp32", cwd=outside / "proj")
    assert_user_error(proc, "names no model yet", "edgeres train", "edgeres init --model CKPT --force")
    assert files_in(outside / "proj" / "engines") == []


def test_broken_edgeres_toml_is_one_clear_line(outside):
    (outside / WORKSPACE_FILE).write_text("[model\ncheckpoint = 'x'\n")
    proc = run_cli("build", "--precision", "fp32", cwd=outside)
    assert_user_error(proc, "edgeres.toml is not valid TOML")
    with pytest.raises(EdgeresError, match="is not valid TOML"):
        find_workspace(outside)


def test_toml_values_survive_a_round_trip():
    settings = {"model": {"checkpoint": 'C:\\runs\\"best".safetensors', "name": "r18"},
                "build": {"backend": "auto", "max_batch": 8, "uint8": True, "scale": 0.5}}
    assert tomllib.loads(dump_toml(settings)) == settings
