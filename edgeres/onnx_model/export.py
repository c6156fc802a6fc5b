"""ONNX export with a dynamic batch axis, checked by ``onnx.checker`` and verified against torch.

Exporter choice: the TorchScript-based exporter (``dynamo=False``) at opset 17 by default. It emits
a flat, standard-op graph that every target parses, TensorRT 8.6 (JetPack 6.0, opset <= 17)
included. torch 2.14's default dynamo exporter emits opset 18+; it is available with
``exporter="dynamo"`` for TensorRT >= 10 and ONNX Runtime targets.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgeres.config import ModelConfig
from edgeres.errors import EdgeresError, require
from edgeres.fileio import atomic_path, check_writable
from edgeres.onnx_model.graph import clean_exported_graph

EXPORTERS = ("torchscript", "dynamo")
DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-3  # max |torch - ONNX Runtime| on FP32 logits of real images
INPUT_NAME = "input"


def output_names(task: str) -> list[str]:
    """The ONNX output names of a network of this task (classify: logits; detect: maps)."""
    from edgeres.tasks import get_task

    return list(get_task(task).output_names)


@dataclass
class ExportResult:
    path: str
    exporter: str
    opset: int
    max_abs_diff: float
    tolerance: float
    verified_images: int
    input_name: str
    output_names: list[str]
    normalize_in_network: bool

    def to_dict(self) -> dict:
        return asdict(self)


class _NormalizeInNetwork:
    """Wraps a classifier so it takes uint8 NHWC images and normalizes them itself."""

    @staticmethod
    def wrap(model, cfg: ModelConfig):
        torch = require("torch", "desktop")

        class Uint8Input(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model
                std = torch.tensor(cfg.preprocess.std).view(1, 3, 1, 1)
                mean = torch.tensor(cfg.preprocess.mean).view(1, 3, 1, 1)
                self.register_buffer("scale", 1.0 / (255.0 * std))
                self.register_buffer("bias", -mean / std)

            def forward(self, x):
                x = x.permute(0, 3, 1, 2).float()
                return self.model(x * self.scale + self.bias)

        return Uint8Input().eval()


def export_model(model, config: ModelConfig, out: Path, opset: int = DEFAULT_OPSET, exporter: str = "torchscript",
                 tolerance: float = DEFAULT_TOLERANCE, images: list[np.ndarray] | None = None,
                 force: bool = False) -> ExportResult:
    """Export ``model`` to ONNX, check it and verify it against torch on real images.

    Args:
        model: an eval-mode classifier.
        config: the model's config (input size, normalization; ``normalize_in_network`` exports uint8 input).
        out: destination ``.onnx``; written atomically, never over an existing file without ``force``.
        opset: ONNX opset (TensorRT 8.6 parses up to 17).
        exporter: "torchscript" (legacy, default) or "dynamo".
        tolerance: largest accepted max-abs difference of the logits.
        images: BGR uint8 images to verify on (default: bundled real digits and photos).
        force: overwrite ``out``.

    Returns:
        What was exported and how closely ONNX Runtime matched torch.
    """
    torch = require("torch", "desktop")
    import onnx

    if exporter not in EXPORTERS:
        raise EdgeresError(f"unknown exporter '{exporter}'; accepted: {', '.join(EXPORTERS)}")
    if exporter == "torchscript" and not 7 <= opset <= 20:
        raise EdgeresError(f"opset {opset} is outside what the torchscript exporter writes (7-20)")
    if exporter == "dynamo" and opset < 18:
        raise EdgeresError(f"the dynamo exporter writes opset 18 or newer, not {opset}; use --exporter torchscript")
    out = Path(out)
    check_writable(out, force)
    model = model.eval()
    net = _NormalizeInNetwork.wrap(model, config) if config.preprocess.normalize_in_network else model
    h, w = config.preprocess.input_size
    outputs = output_names(config.task)
    if config.preprocess.normalize_in_network:
        example = torch.zeros(1, h, w, 3, dtype=torch.uint8)
    else:
        example = torch.zeros(1, 3, h, w)
    with atomic_path(out) as tmp:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the legacy exporter announces its deprecation
            if exporter == "torchscript":
                torch.onnx.export(net, (example,), str(tmp), input_names=[INPUT_NAME], output_names=outputs,
                                  opset_version=opset, dynamic_axes=_dynamic_axes(outputs), dynamo=False)
            else:
                batch = torch.export.Dim("batch", min=1, max=1024)
                torch.onnx.export(net, (example,), str(tmp), input_names=[INPUT_NAME], output_names=outputs,
                                  opset_version=opset, dynamic_shapes=({0: batch},), dynamo=True, external_data=False)
        exported = onnx.load(str(tmp))
        clean_exported_graph(exported)
        onnx.save(exported, str(tmp))
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except Exception as exc:
            raise EdgeresError(f"exported ONNX failed onnx.checker: {str(exc).splitlines()[0]}") from None
        diff, n = verify_against_torch(net, tmp, config, images)
        if diff > tolerance:
            raise EdgeresError(
                f"export does not match torch: max abs difference {diff:.3g} on {n} real images exceeds "
                f"the tolerance {tolerance:g}"
            )
    return ExportResult(str(out), exporter, opset, float(diff), tolerance, n, INPUT_NAME, outputs,
                        config.preprocess.normalize_in_network)


def _dynamic_axes(outputs: list[str]) -> dict:
    axes = {INPUT_NAME: {0: "batch"}}
    axes.update({name: {0: "batch"} for name in outputs})
    return axes


def verify_against_torch(net, onnx_path: Path, config: ModelConfig,
                         images: list[np.ndarray] | None = None) -> tuple[float, int]:
    """Max abs difference between torch and ONNX Runtime (CPU) outputs on real images, batched."""
    import onnxruntime as ort
    import torch

    from edgeres.data.samples import reference_images
    from edgeres.processing import preprocess

    images = images if images is not None else reference_images()
    batch = preprocess(images, config.preprocess)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    got = session.run(None, {INPUT_NAME: batch})[0]
    with torch.no_grad():
        want = net(torch.from_numpy(batch)).numpy()
    return float(np.abs(got - want).max()), len(images)


def export_checkpoint(checkpoint: Path, out: Path, opset: int = DEFAULT_OPSET, exporter: str = "torchscript",
                      tolerance: float = DEFAULT_TOLERANCE, normalize_in_network: bool = False,
                      force: bool = False) -> ExportResult:
    """Export an edgeres checkpoint (see ``export_model``)."""
    from dataclasses import replace

    from edgeres.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    config = ckpt.config
    if ckpt.is_onnx:
        return copy_checked_onnx(ckpt.onnx_path, out, normalize_in_network, force)
    if normalize_in_network:
        config = ModelConfig(config.arch, config.class_names, config.task,
                             replace(config.preprocess, normalize_in_network=True))
    return export_model(ckpt.build_model(), config, out, opset=opset, exporter=exporter, tolerance=tolerance,
                        force=force)


def copy_checked_onnx(source: Path, out: Path, normalize_in_network: bool = False, force: bool = False) -> ExportResult:
    """"Export" of an ONNX model from elsewhere: the file the model resolver checked and cleaned, run once more in
    ONNX Runtime on real images. There is no torch to compare with, so the recorded difference is 0 by definition
    (the resolver already checked batch consistency and finite outputs)."""
    import shutil

    import onnx

    from edgeres.models.onnx_source import INPUT_NAME as ONNX_INPUT
    from edgeres.models.onnx_source import onnx_predict_fn, read_edgeres_onnx

    if normalize_in_network:
        raise EdgeresError(f"--uint8-input rebuilds the network in torch; {source} is an ONNX model without torch "
                           "weights: build it with float input")
    out = Path(out)
    check_writable(out, force)
    config, _ = read_edgeres_onnx(source)
    with atomic_path(out) as tmp:
        shutil.copyfile(source, tmp)
        from edgeres.data.samples import reference_images
        from edgeres.processing import preprocess

        images = reference_images()
        logits = onnx_predict_fn(tmp)(preprocess(images, config.preprocess))
        if not np.isfinite(logits).all():
            raise EdgeresError(f"{source} gives non-finite outputs on real images")
    opset = next((o.version for o in onnx.load(str(out), load_external_data=False).opset_import
                  if o.domain in ("", "ai.onnx")), 0)
    return ExportResult(str(out), "external", opset, 0.0, 0.0, len(images), ONNX_INPUT, output_names(config.task),
                        False)
