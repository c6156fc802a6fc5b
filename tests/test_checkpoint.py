"""Checkpoints: exact round-trips, foreign torchvision state dicts, atomic writes and no silent overwrite."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from helpers import files_in

from edgeres.config import ModelConfig, PreprocessConfig
from edgeres.errors import CheckpointError, EdgeresError
from edgeres.models.checkpoint import load_checkpoint, load_weights, require_matching_classes, save_checkpoint

GARBAGE = b"this is not a checkpoint\n" * 200

CONFIG = ModelConfig(
    arch="resnet18",
    class_names=["cat", "dog", "zebra"],
    preprocess=PreprocessConfig(input_size=(40, 48), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3)),
)


@pytest.fixture(scope="module")
def model():
    """A resnet18 with 3 classes whose BatchNorm statistics are not the defaults (so buffers are checked too)."""
    torch.manual_seed(1)
    net = torchvision.models.resnet18(num_classes=3)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(17)
    return net.eval()


def _assert_same_state(a: dict, b: dict):
    assert sorted(a) == sorted(b)  # safetensors stores names sorted
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), key


def test_round_trip_keeps_config_summary_and_exact_tensors(tmp_path, model):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, CONFIG, {"epochs": 3, "best_val_top1": 97.5})
    loaded = load_checkpoint(path)
    assert loaded.config == CONFIG
    assert loaded.config.preprocess.input_size == (40, 48)
    assert loaded.summary == {"epochs": 3, "best_val_top1": 97.5}
    _assert_same_state(model.state_dict(), loaded.state_dict)

    rebuilt = loaded.build_model()
    assert not rebuilt.training
    x = torch.randn(2, 3, 40, 48)
    with torch.inference_mode():
        assert torch.equal(rebuilt(x), model(x))


def test_metadata_block_is_plain_json_readable_without_edgeres(tmp_path, model):
    from safetensors import safe_open

    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, CONFIG)
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["edgeres"])
    assert meta["format_version"] == 1
    assert meta["config"]["arch"] == "resnet18" and meta["config"]["class_names"] == ["cat", "dog", "zebra"]


def test_torchvision_state_dict_loads_with_arch(tmp_path, model):
    path = tmp_path / "tv.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"no edgeres metadata; say which architecture .*--arch resnet18"):
        load_checkpoint(path)
    loaded = load_checkpoint(path, arch="resnet18")
    assert loaded.config.arch == "resnet18" and loaded.config.class_names == ["0", "1", "2"]
    assert loaded.config.preprocess == PreprocessConfig()  # ImageNet defaults for foreign weights
    _assert_same_state(model.state_dict(), loaded.state_dict)
    named = load_checkpoint(path, arch="resnet18", class_names=["a", "b", "c"])
    assert named.config.class_names == ["a", "b", "c"]
    with pytest.raises(CheckpointError, match="has 3 outputs but 4 class names were given"):
        load_checkpoint(path, arch="resnet18", class_names=["a", "b", "c", "d"])


def test_bare_safetensors_without_metadata_loads_with_arch(tmp_path, model):
    from safetensors.torch import save_file

    path = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    _assert_same_state(model.state_dict(), load_checkpoint(path, arch="resnet18").state_dict)


@pytest.mark.parametrize("wrap", ["module_prefix", "nested_state_dict", "nested_model"])
def test_dataparallel_prefixes_and_common_nestings_are_unwrapped(tmp_path, model, wrap):
    state = model.state_dict()
    if wrap == "module_prefix":
        obj = {f"module.{k}": v for k, v in state.items()}
    elif wrap == "nested_state_dict":
        obj = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 4}
    else:
        obj = {"model": state, "optimizer": {}}
    path = tmp_path / "wrapped.pth"
    torch.save(obj, path)
    loaded = load_checkpoint(path, arch="resnet18")
    _assert_same_state(state, loaded.state_dict)
    loaded.build_model()  # strict load succeeds


def test_saving_a_wrapped_model_stores_plain_names(tmp_path, model):
    path = tmp_path / "dp.safetensors"
    save_checkpoint(path, torch.nn.DataParallel(model), CONFIG)
    loaded = load_checkpoint(path)
    assert not any(k.startswith("module.") for k in loaded.state_dict)
    _assert_same_state(model.state_dict(), loaded.state_dict)


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path, model, monkeypatch):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, CONFIG, {"run": 1})
    assert files_in(tmp_path) == ["m.safetensors"]
    before = path.read_bytes()

    from safetensors import torch as st

    real_save = st.save_file

    def half_then_fail(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as f:
            f.truncate(1000)
        raise OSError("disk full")

    monkeypatch.setattr(st, "save_file", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, CONFIG, {"run": 2})
    assert files_in(tmp_path) == ["m.safetensors"]  # the partial temp file is gone
    assert path.read_bytes() == before  # and the old checkpoint is intact


def test_no_overwrite_without_force(tmp_path, model):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, CONFIG, {"run": 1}, force=False)
    before = path.read_bytes()
    with pytest.raises(EdgeresError, match="already exists; pass --force"):
        save_checkpoint(path, model, CONFIG, {"run": 2}, force=False)
    assert path.read_bytes() == before
    save_checkpoint(path, model, CONFIG, {"run": 2}, force=True)
    assert load_checkpoint(path).summary == {"run": 2}
    assert files_in(tmp_path) == ["m.safetensors"]


def test_newer_format_and_broken_metadata_are_refused(tmp_path, model):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    newer = tmp_path / "newer.safetensors"
    meta = {"format_version": 99, "config": CONFIG.to_dict(), "summary": {}}
    save_file(state, str(newer), metadata={"edgeres": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="format 99, newer than this edgeres reads"):
        load_checkpoint(newer)
    broken = tmp_path / "broken.safetensors"
    save_file(state, str(broken), metadata={"edgeres": "{not json"})
    with pytest.raises(CheckpointError, match="broken metadata block"):
        load_checkpoint(broken)


def test_corrupt_files_are_checkpoint_errors(tmp_path, model):
    good = tmp_path / "good.safetensors"
    save_checkpoint(good, model, CONFIG)
    data = good.read_bytes()
    cases = {
        "truncated.safetensors": data[: len(data) // 2],
        "header_only.safetensors": data[:64],
        "garbage.safetensors": GARBAGE,
        "garbage.pth": GARBAGE,
        "empty.pth": b"",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match="corrupt") as err:
            load_checkpoint(tmp_path / name, arch="resnet18")
        assert "\n" not in str(err.value) and name in str(err.value)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "absent.safetensors")
    (tmp_path / "model.onnx").write_bytes(b"x")  # ONNX models are read too (see test_model_sources.py)
    with pytest.raises(CheckpointError, match="corrupt or unreadable ONNX file"):
        load_checkpoint(tmp_path / "model.onnx")
    (tmp_path / "model.h5").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"unsupported model file type '\.h5'.*\.onnx"):
        load_checkpoint(tmp_path / "model.h5")


def test_state_dict_of_non_tensors_is_refused(tmp_path):
    path = tmp_path / "numbers.pth"
    torch.save({"fc.weight": 3, "lr": 0.1}, path)
    with pytest.raises(CheckpointError, match="does not hold a state dict of tensors"):
        load_checkpoint(path, arch="resnet18")


def test_conflicting_arch_for_an_edgeres_checkpoint_is_an_error(tmp_path, model):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, CONFIG)
    assert load_checkpoint(path, arch="resnet18").config.arch == "resnet18"
    with pytest.raises(CheckpointError, match="is a resnet18 checkpoint, but --arch resnet34 was given"):
        load_checkpoint(path, arch="resnet34")


def test_load_weights_explains_a_mismatch_in_one_line(model):
    other = torchvision.models.resnet18(num_classes=5)
    with pytest.raises(CheckpointError) as err:
        load_weights(other, model.state_dict(), "resnet18", source="x.pth")
    assert str(err.value) == (
        "x.pth does not fit resnet18 with 5 classes: 2 with other shapes (e.g. fc.weight (3, 512) vs (5, 512))"
    )
    r34 = torchvision.models.resnet34(num_classes=3)
    with pytest.raises(CheckpointError, match=r"does not fit resnet34 with 3 classes: \d+ missing \(e\.g\. layer"):
        load_weights(r34, model.state_dict(), "resnet34")


def test_require_matching_classes_names_both_lists():
    require_matching_classes(CONFIG, ["cat", "dog", "zebra"], "folder x")
    with pytest.raises(EdgeresError) as err:
        require_matching_classes(CONFIG, ["cat", "dog"], "folder x")
    assert str(err.value) == "folder x has classes [cat, dog] (2) but the model was trained on [cat, dog, zebra] (3)"
