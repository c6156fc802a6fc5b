"""ONNX export: dynamic batch axis, named input/output, onnx.checker, and ONNX Runtime checked against torch."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_user_error, files_in, run_cli

from edgeres.errors import EdgeresError

pytest_plugins = ["fixtures_models"]


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.parametrize("arch", ["resnet18", pytest.param("resnet50", marks=pytest.mark.slow)])
def test_onnxruntime_matches_torch_on_real_images(arch, random_checkpoint, tmp_path, record_property):
    import onnx
    import onnxruntime as ort
    import torch

    from edgeres.data.samples import reference_images
    from edgeres.models.checkpoint import load_checkpoint
    from edgeres.onnx_model.export import DEFAULT_TOLERANCE, export_checkpoint
    from edgeres.processing import preprocess

    ckpt = random_checkpoint(arch)
    out = tmp_path / f"{arch}.onnx"
    result = export_checkpoint(ckpt, out)
    images = reference_images()
    assert result.max_abs_diff <= DEFAULT_TOLERANCE == result.tolerance
    assert result.verified_images == len(images) == 10
    assert (result.exporter, result.opset, result.input_name, result.output_names) == (
        "torchscript", 17, "input", ["logits"])
    record_property("max_abs_diff", result.max_abs_diff)

    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["logits"]
    assert _dims(model.graph.input[0]) == ["batch", 3, 64, 64]
    assert _dims(model.graph.output[0]) == ["batch", 10]
    assert {op.domain: op.version for op in model.opset_import}[""] == 17

    # Our own check, independent of the exporter's: every image alone and all of them as one batch.
    ckpt_loaded = load_checkpoint(ckpt)
    batch = preprocess(images, ckpt_loaded.config.preprocess)
    with torch.no_grad():
        want = ckpt_loaded.build_model()(torch.from_numpy(batch)).numpy()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    whole = session.run(["logits"], {"input": batch})[0]
    one_by_one = np.concatenate([session.run(["logits"], {"input": batch[i:i + 1]})[0] for i in range(len(batch))])
    assert whole.shape == want.shape == (10, 10)
    assert np.abs(whole - want).max() <= DEFAULT_TOLERANCE
    assert np.abs(one_by_one - want).max() <= DEFAULT_TOLERANCE
    assert (whole.argmax(1) == want.argmax(1)).all()


def _trace_diverging_model(arch: str = "resnet18"):
    """A classifier whose traced graph differs from its eager behaviour on real images.

    The branch depends on the data: tracing the all-zeros example records the negated path, while real
    (non-zero) images take the other one in torch, so the exported ONNX truly disagrees with torch.
    """
    import torch

    from edgeres.models.registry import get_model

    with torch.random.fork_rng():
        torch.manual_seed(0)
        inner = get_model(arch, num_classes=10).eval()

    class Diverging(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            y = self.inner(x)
            return y if bool(x.abs().sum() > 0) else -y - 10.0

    return Diverging().eval()


def test_export_fails_beyond_tolerance_and_leaves_no_file(tmp_path):
    from edgeres.config import ModelConfig, PreprocessConfig
    from edgeres.onnx_model.export import export_model

    cfg = ModelConfig("resnet18", [str(i) for i in range(10)], preprocess=PreprocessConfig(input_size=(32, 32)))
    out = tmp_path / "out" / "bad.onnx"
    with pytest.raises(EdgeresError, match=r"export does not match torch: max abs difference .* on 10 real images "
                                           r"exceeds the tolerance 0\.001"):
        export_model(_trace_diverging_model(), cfg, out)
    assert not out.parent.exists()  # no half-written .onnx, no temp file, not even the folder it made for them


def test_export_refuses_bad_options_and_overwrites(random_checkpoint, tmp_path):
    from edgeres.onnx_model.export import export_checkpoint

    ckpt = random_checkpoint("resnet18")
    with pytest.raises(EdgeresError, match="unknown exporter 'tflite'; accepted: torchscript, dynamo"):
        export_checkpoint(ckpt, tmp_path / "a.onnx", exporter="tflite")
    with pytest.raises(EdgeresError, match="dynamo exporter writes opset 18 or newer, not 17"):
        export_checkpoint(ckpt, tmp_path / "a.onnx", exporter="dynamo", opset=17)
    with pytest.raises(EdgeresError, match="opset 21 is outside"):
        export_checkpoint(ckpt, tmp_path / "a.onnx", opset=21)
    existing = tmp_path / "keep.onnx"
    existing.write_bytes(b"mine")
    with pytest.raises(EdgeresError, match="already exists; pass --force"):
        export_checkpoint(ckpt, existing)
    assert existing.read_bytes() == b"mine"
    assert files_in(tmp_path) == ["keep.onnx"]


def test_cli_export_reports_diff_and_refuses_overwrite(random_checkpoint, tmp_path):
    import onnx

    out = tmp_path / "r18.onnx"
    proc = run_cli("export", "--model", random_checkpoint("resnet18"), "--out", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "torchscript exporter, opset 17" in proc.stdout
    assert "on 10 real images: max abs diff" in proc.stdout
    diff = float(proc.stdout.split("max abs diff ")[1].split()[0])
    assert 0 <= diff <= 1e-3
    onnx.checker.check_model(str(out))
    before = out.read_bytes()

    again = run_cli("export", "--model", random_checkpoint("resnet18"), "--out", out, cwd=tmp_path)
    assert_user_error(again, "already exists", "--force")
    assert out.read_bytes() == before
    assert files_in(tmp_path) == ["r18.onnx"]
