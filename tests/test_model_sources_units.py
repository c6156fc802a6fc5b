"""The model resolver in-process: option parsing, state dict fitting, ONNX interface checks and cleaning, the
cache. Real torchvision models and real ONNX Runtime runs; no CLI subprocess (test_model_sources.py has those)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from edgeres.errors import CheckpointError, EdgeresError
from edgeres.models.checkpoint import load_checkpoint
from edgeres.models.sources import (
    ModelRequest,
    parse_channels,
    parse_img_size,
    read_class_names,
    resolve_model,
)
from edgeres.models.state_dict_source import fitting_architectures


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGERES_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def r18() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=4).eval()


def test_option_parsing():
    assert parse_img_size("224") == (224, 224)
    assert parse_img_size("224x320") == (224, 320) and parse_img_size("96,128") == (96, 128)
    for bad in ("", "x", "4", "224x", "a"):
        with pytest.raises(EdgeresError, match="is not a size"):
            parse_img_size(bad)
    assert parse_channels("0.5,0.5,0.5", "--mean") == (0.5, 0.5, 0.5)
    with pytest.raises(EdgeresError, match=r"0-255 values.*0\.482,0\.459,0\.408"):
        parse_channels("123,117,104", "--mean")
    with pytest.raises(EdgeresError, match="must be positive"):
        parse_channels("0.2,0,0.2", "--std")


def test_class_files(tmp_path):
    (tmp_path / "a.txt").write_text("cat\n\n dog \nzebra\n")
    assert read_class_names(tmp_path / "a.txt") == ["cat", "dog", "zebra"]
    (tmp_path / "b.json").write_text('["x", "y"]')
    assert read_class_names(tmp_path / "b.json") == ["x", "y"]
    (tmp_path / "c.txt").write_text("cat\ncat\n")
    with pytest.raises(EdgeresError, match="names 'cat' more than once"):
        read_class_names(tmp_path / "c.txt")
    with pytest.raises(EdgeresError, match="--classes file not found"):
        read_class_names(tmp_path / "none.txt")


def test_keys_fit_exactly_one_architecture(r18):
    assert fitting_architectures(r18.state_dict()) == ["resnet18"]
    torch.manual_seed(0)
    r34 = torchvision.models.resnet34(num_classes=2).state_dict()
    assert fitting_architectures(r34) == ["resnet34"]
    assert fitting_architectures({"conv.weight": torch.zeros(1)}) == []


def test_state_dict_without_batchnorm_counters_converts_once(tmp_path, r18):
    """Files saved before PyTorch 0.4.1 lack num_batches_tracked; the second resolve reuses the cached file."""
    state = {k: v for k, v in r18.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    request = ModelRequest(model=tmp_path / "old.pth", arch="resnet18", img_size=(32, 32))
    first = resolve_model(request)
    mtime = first.path.stat().st_mtime_ns
    second = resolve_model(request)
    assert second.path == first.path and second.path.stat().st_mtime_ns == mtime
    model = load_checkpoint(first.path).build_model()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), r18(x))
    assert first.origins["input_size"] == "--img-size" and first.config.class_names == ["0", "1", "2", "3"]


def _export(model, path: Path, size=32, **kwargs) -> Path:
    torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(path), opset_version=17, dynamo=False, **kwargs)
    return path


def test_onnx_with_dynamic_size_needs_img_size(tmp_path, r18):
    path = _export(r18, tmp_path / "dyn.onnx", input_names=["x"], dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
    with pytest.raises(CheckpointError, match=r"dynamic input size \[n, 3, h, w\].*--img-size"):
        resolve_model(ModelRequest(model=path))
    resolved = resolve_model(ModelRequest(model=path, img_size=(40, 48)))
    assert resolved.config.preprocess.input_size == (40, 48)
    import onnx

    graph = onnx.load(str(resolved.path)).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert graph.input[0].name == "input" and dims == ["batch", 3, 40, 48] and graph.output[0].name == "logits"


def test_onnx_fixed_size_conflicting_img_size_and_class_count(tmp_path, r18):
    path = _export(r18, tmp_path / "fixed.onnx")
    with pytest.raises(CheckpointError, match="fixed to 32x32 inputs but --img-size 64x64"):
        resolve_model(ModelRequest(model=path, img_size=(64, 64)))
    with pytest.raises(CheckpointError, match="has 4 outputs but --num-classes 3"):
        resolve_model(ModelRequest(model=path, num_classes=3))


def test_onnx_whose_batch_cannot_be_dynamic_is_refused(tmp_path, r18):
    """A Reshape to a constant [1, -1] (a hand-written flatten) pins the batch to 1: making it dynamic must fail
    in the checking run, not later in a build."""

    class PinnedBatch(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = r18

        def forward(self, x):
            features = torch.nn.Sequential(*list(self.net.children())[:-1])(x)
            return self.net.fc(features.reshape(1, 512))

    path = _export(PinnedBatch().eval(), tmp_path / "pinned.onnx")
    with pytest.raises(CheckpointError, match="batch"):
        resolve_model(ModelRequest(model=path))


def test_cleaned_onnx_computes_what_the_original_computes(tmp_path, r18):
    import onnxruntime as ort

    path = _export(r18, tmp_path / "orig.onnx", input_names=["pixels"], output_names=["scores"])
    resolved = resolve_model(ModelRequest(model=path, arch="resnet18"))
    assert resolved.kind == "onnx" and resolved.config.arch == "resnet18"
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"pixels": x})[0]
    cleaned = ort.InferenceSession(str(resolved.path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(
        cleaned.run(None, {"input": np.concatenate([x, x])})[0], np.concatenate([want, want]), atol=1e-5
    )
    ckpt = load_checkpoint(resolved.path)  # an edgeres ONNX: readable without options, no torch weights
    assert ckpt.is_onnx and ckpt.config.num_classes == 4
    with pytest.raises(CheckpointError, match="ONNX model without torch weights"):
        ckpt.build_model()
    again = resolve_model(ModelRequest(model=resolved.path))  # passing the converted file back: taken as it is
    assert again.kind == "onnx-edgeres" and again.path == resolved.path
    with pytest.raises(CheckpointError, match="records img-size 32x32; --img-size 64x64 differs"):
        resolve_model(ModelRequest(model=resolved.path, img_size=(64, 64)))
