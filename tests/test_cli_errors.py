"""User mistakes through the real CLI in a subprocess: exit code 1, one "error:" line naming the problem,
no traceback, and nothing written or run that should not be."""

from __future__ import annotations

import json
import os
import pickle
import shlex
import shutil
from pathlib import Path

import pytest
import torch
import torchvision
from helpers import SHORT_TRAIN, assert_user_error, files_in, run_cli

TESTS_DIR = Path(__file__).parent


@pytest.fixture(scope="module")
def r18_pth(tmp_path_factory) -> Path:
    """A plain torchvision resnet18 state dict with 3 outputs, as a user would bring one."""
    path = tmp_path_factory.mktemp("pth") / "resnet18-3cls.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), path)
    return path


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ---- data folders -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "eval"])
def test_missing_data_folder(tmp_path, trained_run, command):
    missing = tmp_path / "no-such-data"
    if command == "train":
        args = ["--out", tmp_path / "run", *SHORT_TRAIN]
    else:
        args = ["--model", trained_run / "best.safetensors"]
    proc = run_cli(command, "--data", missing, *args, cwd=tmp_path)
    assert_user_error(proc, "data folder not found", str(missing))
    assert not (tmp_path / "run").exists()


def test_empty_class_folder(tmp_path, digits3):
    data = _copy(digits3, tmp_path / "data")
    (data / "7").mkdir()
    proc = run_cli("train", "--data", data, "--out", tmp_path / "run", *SHORT_TRAIN, cwd=tmp_path)
    assert_user_error(proc, f"class folder {data / '7'} is empty")
    assert not (tmp_path / "run").exists()


def test_non_image_file_in_a_class_folder(tmp_path, digits3):
    data = _copy(digits3, tmp_path / "data")
    (data / "1" / "notes.txt").write_text("labelled by hand on Tuesday\n")
    proc = run_cli("train", "--data", data, "--out", tmp_path / "run", *SHORT_TRAIN, cwd=tmp_path)
    assert_user_error(proc, f"{data / '1' / 'notes.txt'} is not an image file", "accepted: .png")


@pytest.mark.parametrize("command", ["train", "eval"])
def test_png_that_does_not_decode(tmp_path, digits3, trained_run, command):
    data = _copy(digits3, tmp_path / "data")
    bad = data / "2" / "zz_broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 50)
    if command == "train":
        proc = run_cli("train", "--data", data, "--out", tmp_path / "run", *SHORT_TRAIN, cwd=tmp_path)
    else:
        proc = run_cli("eval", "--model", trained_run / "best.safetensors", "--data", data, cwd=tmp_path)
    assert_user_error(proc, f"cannot decode {bad} as an image")


# ---- architectures and class counts ------------------------------------------------------------------------


def test_unknown_architecture_in_train(tmp_path, digits3):
    proc = run_cli(
        "train", "--data", digits3, "--out", tmp_path / "run", "--arch", "resnet19", *SHORT_TRAIN, cwd=tmp_path
    )
    line = assert_user_error(proc, "unknown architecture 'resnet19'", "available:")
    assert all(name in line for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"))
    assert not (tmp_path / "run" / "best.safetensors").exists()


def test_unknown_architecture_in_eval(tmp_path, digits3, r18_pth):
    proc = run_cli("eval", "--model", r18_pth, "--arch", "resnet19", "--data", digits3, cwd=tmp_path)
    assert_user_error(proc, "unknown architecture 'resnet19'", "resnet18")


def test_pth_of_another_architecture(tmp_path, digits3, r18_pth):
    proc = run_cli("eval", "--model", r18_pth, "--arch", "resnet34", "--data", digits3, cwd=tmp_path)
    assert_user_error(proc, f"{r18_pth} does not fit resnet34 with 3 classes", "missing")


def test_edgeres_checkpoint_with_a_conflicting_arch(tmp_path, digits3, trained_run):
    best = trained_run / "best.safetensors"
    proc = run_cli("eval", "--model", best, "--arch", "resnet34", "--data", digits3, cwd=tmp_path)
    assert_user_error(proc, f"{best} is a resnet18 checkpoint, but --arch resnet34 was given")


def test_edgeres_checkpoint_with_another_class_count(tmp_path, digits4, trained_run):
    proc = run_cli("eval", "--model", trained_run / "best.safetensors", "--data", digits4, cwd=tmp_path)
    assert_user_error(proc, "has classes [0, 1, 2, 3] (4) but the model was trained on [0, 1, 2] (3)")


def test_pth_with_another_class_count(tmp_path, digits4, r18_pth):
    proc = run_cli("eval", "--model", r18_pth, "--arch", "resnet18", "--data", digits4, cwd=tmp_path)
    assert_user_error(proc, "has 3 outputs but 4 class names were given")


# ---- corrupt and unsafe checkpoints ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["truncated.safetensors", "garbage.safetensors", "garbage.pth"])
def test_corrupt_checkpoint(tmp_path, digits3, trained_run, kind):
    path = tmp_path / kind
    if kind.startswith("truncated"):
        data = (trained_run / "best.safetensors").read_bytes()
        path.write_bytes(data[: len(data) // 3])
    else:
        path.write_bytes(b"\x00\x01 definitely not weights \xff" * 300)
    proc = run_cli("eval", "--model", path, "--arch", "resnet18", "--data", digits3, cwd=tmp_path)
    assert_user_error(proc, "corrupt", str(path))


class PlantFile:
    """Unpickling this (only possible by importing this test module) writes a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __setstate__(self, state):
        Path(state["marker"]).write_text("code ran")


class RunShell:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


@pytest.mark.parametrize("payload", ["os.system", "os.system-raw-pickle", "custom-class"])
def test_pickle_with_code_is_refused_without_running_it(tmp_path, digits3, payload):
    marker = tmp_path / "pwned"
    path = tmp_path / "weights.pth"
    state = {"fc.weight": torch.zeros(3, 512), "fc.bias": torch.zeros(3)}
    if payload == "os.system":
        torch.save({**state, "extra": RunShell(marker)}, path)
        named = "system"
    elif payload == "os.system-raw-pickle":
        path.write_bytes(pickle.dumps({"fc.bias": [0.0, 0.0, 0.0], "extra": RunShell(marker)}, protocol=2))
        named = "system"
    else:
        torch.save({**state, "extra": PlantFile(str(marker))}, path)
        named = "test_cli_errors.PlantFile"

    # The payload is live: an unsafe load really runs it.
    if payload.endswith("raw-pickle"):
        pickle.loads(path.read_bytes())
    else:
        torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()

    # The test folder is importable in the subprocess, so PlantFile could be found if anything tried.
    proc = run_cli(
        "eval", "--model", path, "--arch", "resnet18", "--data", digits3, cwd=tmp_path, PYTHONPATH=str(TESTS_DIR)
    )
    assert_user_error(proc, f"refusing to load {path}", "would import and run", named)
    assert not marker.exists(), "the pickle's code ran"


# ---- run folders -------------------------------------------------------------------------------------------


def test_train_into_an_existing_run_needs_force(tmp_path, digits3, trained_run):
    run = _copy(trained_run, tmp_path / "run")
    before = {name: (run / name).read_bytes() for name in files_in(run)}
    proc = run_cli("train", "--data", digits3, "--out", run, *SHORT_TRAIN, cwd=tmp_path)
    assert_user_error(proc, f"{run} already holds a training run", "--force", "--resume")
    assert {name: (run / name).read_bytes() for name in files_in(run)} == before

    inode = (run / "best.safetensors").stat().st_ino
    proc = run_cli("train", "--data", digits3, "--out", run, *SHORT_TRAIN, "--force", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (run / "best.safetensors").stat().st_ino != inode  # replaced by a new file
    assert files_in(run) == sorted(before)  # the same four files, no temp files left
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [1, 2]  # a new run


def test_conflicting_start_weights(tmp_path, digits3, trained_run):
    proc = run_cli(
        "train",
        "--data",
        digits3,
        "--out",
        tmp_path / "run",
        *SHORT_TRAIN,
        "--weights",
        "imagenet",
        "--init-from",
        trained_run / "best.safetensors",
        cwd=tmp_path,
    )
    assert_user_error(proc, "--init-from and --weights both set the starting weights")


# ---- models from elsewhere (state dicts, whole pickles, ONNX interfaces, describing options) -------------------


def test_whole_pickled_model_is_refused_with_the_lines_that_save_a_state_dict(tmp_path):
    path = tmp_path / "r18-full.pth"
    torch.save(torchvision.models.resnet18(num_classes=3), path)  # torch.save(model), not its state dict
    proc = run_cli("build", "--model", path, "--arch", "resnet18", "--out", tmp_path / "e", cwd=tmp_path)
    assert_user_error(proc, "whole pickled model (torchvision.models.resnet.ResNet)",
                      f"model = torch.load('{path}', weights_only=False)",
                      "torch.save(model.state_dict(), ")
    assert not (tmp_path / "e").exists()


def test_state_dict_keys_that_do_not_fit_arch_name_the_architecture_they_fit(tmp_path, r18_pth):
    proc = run_cli("build", "--model", r18_pth, "--arch", "resnet50", "--img-size", "32", "--out", tmp_path / "e",
                   cwd=tmp_path, EDGERES_CACHE=str(tmp_path / "cache"))
    assert_user_error(proc, f"{r18_pth} does not fit resnet50 with 3 classes", "missing (e.g. layer1.0.conv3.weight",
                      "with other shapes", "its keys fit resnet18 (--arch resnet18)")
    proc = run_cli("export", "--model", r18_pth, "--out", tmp_path / "m.onnx", cwd=tmp_path)
    assert_user_error(proc, "without edgeres metadata", "--arch", "its keys fit resnet18")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "m.onnx").exists()


def test_class_count_that_differs_from_classes_names_both_numbers(tmp_path, r18_pth):
    names = tmp_path / "labels.txt"
    names.write_text("cat\ndog\nzebra\nowl\n")
    proc = run_cli("export", "--model", r18_pth, "--arch", "resnet18", "--classes", names, "--out",
                   tmp_path / "m.onnx", cwd=tmp_path, EDGERES_CACHE=str(tmp_path / "cache"))
    assert_user_error(proc, f"{r18_pth} has 3 outputs but --classes {names} names 4 classes")


@pytest.mark.parametrize("layout", ["uint8-nhwc", "float-nhwc"])
def test_onnx_input_that_is_not_float_nchw_says_what_it_found(tmp_path, layout):
    import onnx
    from onnx import TensorProto, helper

    dtype = TensorProto.UINT8 if layout.startswith("uint8") else TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node("Cast", ["image"], ["scores"], to=TensorProto.FLOAT)], "nhwc",
        [helper.make_tensor_value_info("image", dtype, [1, 224, 224, 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 224, 224, 3])])
    path = tmp_path / "nhwc.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    found = "uint8 [1, 224, 224, 3]" if layout.startswith("uint8") else "float [1, 224, 224, 3]"
    proc = run_cli("calibrate", "--model", path, "--data", tmp_path, "--out", tmp_path / "c", cwd=tmp_path)
    assert_user_error(proc, f"{path} has input 'image' of {found}", "accepted: float32 N x 3 x H x W")


@pytest.mark.parametrize(("args", "fragments"), [
    (["--mean", "123.7,116.3,103.5"], ["looks like 0-255 values", "0.485,0.456,0.406"]),
    (["--std", "0.2,0.2"], ["--std '0.2,0.2' is not three numbers"]),
    (["--img-size", "big"], ["--img-size 'big' is not a size", "224x320"]),
    (["--weights", "imagenet"], ["give --model FILE or --weights NAME, not both"]),
    (["--num-classes", "10"], ["has 3 outputs but --num-classes 10 was given"]),
])
def test_bad_describing_options(tmp_path, r18_pth, args, fragments):
    proc = run_cli("export", "--model", r18_pth, "--arch", "resnet18", *args, "--out", tmp_path / "m.onnx",
                   cwd=tmp_path, EDGERES_CACHE=str(tmp_path / "cache"))
    assert_user_error(proc, *fragments)
