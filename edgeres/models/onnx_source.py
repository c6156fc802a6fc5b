"""ONNX classifiers from elsewhere: checked and cleaned like edgeres' own export, then carried as an "edgeres
ONNX" (the cleaned file with the model's config in its ``metadata_props``).

What a file must be: one float32 input ``N x 3 x H x W`` and one ``[N, classes]`` output, opset 13 or newer
(per-channel Q/DQ needs 13). Cleaning gives it what every later step expects of our export: the input named
``input`` and the output ``logits``, a dynamic batch axis (checked by running batches of 1 and 2), readable
per-layer weight names (``clean_exported_graph``), ``onnx.checker`` passed, and a run in ONNX Runtime on real
images that gives finite logits of the expected shape.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgeres.config import ModelConfig
from edgeres.errors import CheckpointError, require

METADATA_KEY = "edgeres"
FORMAT_VERSION = 1
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
MIN_OPSET = 13  # QuantizeLinear/DequantizeLinear with a per-channel axis


def read_onnx(path: Path):
    """``onnx.load`` with one clear line for a file that is not ONNX."""
    onnx = require("onnx", "desktop")
    try:
        return onnx.load(str(path))
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"corrupt or unreadable ONNX file {path}: {detail}") from None


def edgeres_metadata(model) -> dict | None:
    """The edgeres block of an ONNX model's ``metadata_props`` (None for a file from elsewhere)."""
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            try:
                meta = json.loads(prop.value)
                ModelConfig.from_dict(meta["config"])
            except (ValueError, KeyError, TypeError) as exc:
                raise CheckpointError(f"the edgeres metadata of this ONNX file is broken ({exc})") from None
            return meta
    return None


def read_edgeres_onnx(path: Path) -> tuple[ModelConfig, dict] | None:
    """(config, metadata) of an edgeres ONNX file, or None when it carries no edgeres metadata."""
    meta = edgeres_metadata(read_onnx(path))
    if meta is None:
        return None
    return ModelConfig.from_dict(meta["config"]), meta


def _dims(value_info) -> list:
    """A tensor's dims as ints (fixed) or strings (named/unknown)."""
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def _dtype_name(value_info) -> str:
    onnx = require("onnx", "desktop")
    return onnx.TensorProto.DataType.Name(value_info.type.tensor_type.elem_type).lower()


def _shape_text(dims: list) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def inspect_classifier(model, path: Path) -> dict:
    """What an ONNX file's interface says: input name/dims, output name/dims, opset. Refuses anything that is
    not one float32 N x 3 x H x W input and one [N, classes] output."""
    init_names = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init_names]  # opset < 9 lists weights as inputs
    if len(inputs) != 1:
        raise CheckpointError(
            f"{path} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); accepted: "
            "one float32 N x 3 x H x W image input"
        )
    dims, dtype = _dims(inputs[0]), _dtype_name(inputs[0])
    if dtype != "float" or len(dims) != 4 or dims[1] != 3:
        raise CheckpointError(
            f"{path} has input '{inputs[0].name}' of {dtype} {_shape_text(dims)}; accepted: "
            "float32 N x 3 x H x W (NCHW, 3 channels)"
        )
    outputs = list(model.graph.output)
    out_dims = _dims(outputs[0]) if len(outputs) == 1 else []
    if len(outputs) != 1 or len(out_dims) != 2 or not isinstance(out_dims[1], int):
        found = ", ".join(f"'{o.name}' {_shape_text(_dims(o))}" for o in outputs)
        raise CheckpointError(f"{path} has outputs {found}; accepted: one [N, classes] output (a classifier)")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        raise CheckpointError(
            f"{path} is opset {opset}; INT8 Q/DQ needs opset {MIN_OPSET}+: re-export it with "
            "torch.onnx.export(..., opset_version=17)"
        )
    return {
        "input": inputs[0].name,
        "input_dims": dims,
        "output": outputs[0].name,
        "classes": out_dims[1],
        "opset": opset,
    }


def fixed_input_size(facts: dict) -> tuple[int, int] | None:
    """The (H, W) an ONNX input fixes, or None when either is dynamic."""
    h, w = facts["input_dims"][2:]
    return (h, w) if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 else None


def clean_classifier(model, facts: dict, input_size: tuple[int, int]) -> None:
    """In place: name the input ``input`` and the output ``logits``, make the batch axis dynamic and the spatial
    axes the chosen input size, give weights readable per-layer names."""
    from edgeres.onnx_model.graph import clean_exported_graph

    renames = {facts["input"]: INPUT_NAME, facts["output"]: OUTPUT_NAME}
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]
        for i, name in enumerate(node.output):
            if name in renames:
                node.output[i] = renames[name]
    graph_input = next(i for i in model.graph.input if i.name == facts["input"])
    graph_input.name = INPUT_NAME
    dims = graph_input.type.tensor_type.shape.dim
    dims[0].Clear()
    dims[0].dim_param = "batch"
    for dim, size in zip(dims[2:], input_size, strict=True):
        dim.Clear()
        dim.dim_value = size
    graph_output = model.graph.output[0]
    graph_output.name = OUTPUT_NAME
    graph_output.type.tensor_type.shape.dim[0].Clear()
    graph_output.type.tensor_type.shape.dim[0].dim_param = "batch"
    # Intermediate shapes recorded for the old fixed batch would contradict the dynamic one.
    del model.graph.value_info[:]
    clean_exported_graph(model)


def check_runs(model_bytes: bytes, path: Path, input_size: tuple[int, int], classes: int, preprocess=None) -> int:
    """Run the cleaned model in ONNX Runtime on real images, one at a time and as a batch of two: the outputs must
    be finite, ``[N, classes]``, and the same either way (a batch axis that only pretended to be dynamic fails
    here). Returns how many images were run."""
    ort = require("onnxruntime", "desktop")
    from edgeres.config import PreprocessConfig
    from edgeres.data.samples import reference_images
    from edgeres.processing import preprocess as to_batch

    so = ort.SessionOptions()
    so.log_severity_level = 3
    try:
        session = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise CheckpointError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0][:200]}") from None
    images = reference_images(n_digits=2, photos=("astronaut", "coffee"))[:4]
    batch = to_batch(images, preprocess or PreprocessConfig(input_size=input_size))
    try:
        pairs = session.run(None, {INPUT_NAME: batch[:2]})[0]
        singles = np.concatenate([session.run(None, {INPUT_NAME: batch[i : i + 1]})[0] for i in range(len(batch))])
    except Exception as exc:
        raise CheckpointError(
            f"{path} does not run with a dynamic batch at input {input_size[0]}x{input_size[1]} "
            f"({str(exc).splitlines()[0][:160]}); re-export it with "
            "dynamic_axes={'input': {0: 'batch'}}"
        ) from None
    if singles.shape != (len(batch), classes) or not np.isfinite(singles).all():
        raise CheckpointError(
            f"{path} gives outputs of shape {list(singles.shape)} (finite: "
            f"{bool(np.isfinite(singles).all())}) for {len(batch)} images; expected "
            f"[{len(batch)}, {classes}] finite logits"
        )
    if not np.allclose(pairs, singles[:2], rtol=1e-3, atol=1e-3):
        raise CheckpointError(
            f"{path} gives other results for a batch of 2 than for single images: its batch "
            "axis is not really dynamic; re-export it with dynamic_axes={'input': {0: 'batch'}}"
        )
    return len(batch)


def checked_classifier(path: Path, input_size: tuple[int, int] | None) -> tuple[object, dict, tuple[int, int]]:
    """Load, check and clean an ONNX classifier from elsewhere.

    Args:
        path: the ``.onnx`` file.
        input_size: (H, W) asked for with ``--img-size`` (None: the file's own fixed size).

    Returns:
        (the cleaned ``onnx.ModelProto``, the facts read from the file, the input size used).
    """
    onnx = require("onnx", "desktop")
    model = read_onnx(path)
    facts = inspect_classifier(model, path)
    fixed = fixed_input_size(facts)
    if input_size is None and fixed is None:
        raise CheckpointError(
            f"{path} has a dynamic input size {_shape_text(facts['input_dims'])}; say which one "
            "to build for with --img-size (e.g. --img-size 224)"
        )
    if input_size is not None and fixed is not None and tuple(input_size) != fixed:
        raise CheckpointError(
            f"{path} is fixed to {fixed[0]}x{fixed[1]} inputs but --img-size {input_size[0]}x{input_size[1]} was given"
        )
    size = tuple(input_size or fixed)
    clean_classifier(model, facts, size)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise CheckpointError(f"{path} fails onnx.checker: {str(exc).strip().splitlines()[0][:200]}") from None
    return model, facts, size


def write_edgeres_onnx(model, config: ModelConfig, summary: dict, dst: Path) -> None:
    """Save a cleaned model with the edgeres metadata block, atomically."""
    onnx = require("onnx", "desktop")
    from edgeres.fileio import atomic_path

    meta = {"format_version": FORMAT_VERSION, "config": config.to_dict(), "summary": summary}
    del model.metadata_props[:]
    prop = model.metadata_props.add()
    prop.key, prop.value = METADATA_KEY, json.dumps(meta)
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))


def onnx_predict_fn(path: Path, threads: int | None = None):
    """An ONNX classifier as a numpy predictor (ONNX Runtime on the CPU): the reference for an ONNX model, as torch
    eager is for a checkpoint."""
    ort = require("onnxruntime", "desktop")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def predict(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    return predict


def from_onnx(request, path: Path, out: Path | None, force: bool):
    """Resolve an ONNX file: an edgeres ONNX as it is, anything else checked, cleaned and converted."""
    from edgeres.models.checkpoint import file_sha256
    from edgeres.models.sources import (
        ResolvedModel,
        cache_key,
        check_out_suffix,
        class_names_for,
        from_edgeres_file,
        preprocess_for,
        target_path,
    )

    found = read_edgeres_onnx(path)
    if found is not None:
        return from_edgeres_file(request, path, found[0], "onnx-edgeres", out, force)
    if out is not None:
        check_out_suffix(out, ".onnx", path)
    model, facts, size = checked_classifier(path, request.img_size)
    names, class_origin = class_names_for(request, facts["classes"], str(path), "the output's size")
    pre, origins = preprocess_for(request, size, f"the ONNX input shape {facts['input_dims']}")
    if request.img_size:
        origins["input_size"] = "--img-size (the ONNX input is dynamic)"
    arch = request.arch or f"onnx-{path.stem}"
    config = ModelConfig(arch=arch, class_names=names, preprocess=pre)
    origins |= {"arch": "--arch" if request.arch else "the file name (--arch names it)", "classes": class_origin}
    sha = file_sha256(path)
    target = target_path(out, path.stem, cache_key(sha, config.to_dict()), ".onnx")
    notes = [
        f"opset {facts['opset']}",
        f"input '{facts['input']}' {facts['input_dims']} -> 'input' [batch, 3, {size[0]}, {size[1]}]",
        f"output '{facts['output']}' -> 'logits'",
    ]
    if out is not None or not target.is_file():
        images = check_runs(model.SerializeToString(), path, size, facts["classes"], pre)
        notes.append(f"checked in ONNX Runtime on {images} real images")
        summary = {
            "imported_from": {
                "kind": "onnx",
                "file": str(path.resolve()),
                "sha256": sha,
                "origins": origins,
                "notes": notes,
            }
        }
        if out is not None:
            from edgeres.fileio import check_writable

            check_writable(out, force)
        write_edgeres_onnx(model, config, summary, target)
    return ResolvedModel(path=target, config=config, kind="onnx", source=str(path), origins=origins, notes=notes)
