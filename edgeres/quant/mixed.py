"""``mixed`` precision: INT8 where it keeps accuracy, float for the layers that lose it.

Per-layer sensitivity on a validation set (top-1 with only that layer left float, everything else
INT8), then the most sensitive layers are kept unquantized, one at a time, until the top-1 drop
against FP32 is within the budget. Every candidate is evaluated as the real CPU INT8 engine would run
it (the same rewrite, ONNX Runtime integer kernels).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeres.errors import EdgeresError
from edgeres.onnx_graph import WEIGHTED_OPS

if TYPE_CHECKING:
    from edgeres.build import BuildConfig

MOSTLY_FLOAT = 0.5  # keeping more than this share of the layers float is refused: it is an FP32 engine


@dataclass
class MixedPlan:
    float_layers: list[str]
    fp32_top1: float
    int8_top1: float
    mixed_top1: float
    max_drop: float
    sensitivity: dict[str, float] = field(default_factory=dict)  # layer -> top-1 gain when left float
    steps: list[dict] = field(default_factory=list)
    cpu_float_layers: list[str] = field(default_factory=list)  # set by the CPU build: kept + starved producers

    def to_dict(self) -> dict:
        return {"float_layers": self.float_layers, "cpu_float_layers": self.cpu_float_layers,
                "fp32_top1": self.fp32_top1, "int8_top1": self.int8_top1, "mixed_top1": self.mixed_top1,
                "max_drop": self.max_drop, "sensitivity": self.sensitivity, "steps": self.steps}


def cpu_session(fp32_model, scales, float_layers: set[str], threads: int | None = None):
    """An ONNX Runtime session of the CPU INT8 form with ``float_layers`` left float."""
    import onnxruntime as ort

    from edgeres.quant.cpu import rewrite_for_cpu
    from edgeres.quant.qdq import write_qdq

    model = rewrite_for_cpu(write_qdq(fp32_model, scales, float_layers), scales)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _top1(session, val, batch_size: int = 32) -> tuple[float, np.ndarray]:
    name = session.get_inputs()[0].name
    pred = np.concatenate([session.run(None, {name: x})[0].argmax(1) for x in val.batches(batch_size)])
    return 100.0 * float((pred == val.labels).mean()), pred


def _latency_ms(session, val, seconds: float = 1.0) -> float:
    x = next(val.batches(1))
    name = session.get_inputs()[0].name
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 5:
        t = time.perf_counter()
        session.run(None, {name: x})
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def plan_mixed(fp32_model, scales, val, max_drop: float, progress: bool = True) -> MixedPlan:
    """Choose the layers to keep float so that FP32 top-1 minus mixed top-1 <= ``max_drop`` points.

    Raises:
        EdgeresError: the budget needs most layers float; the message gives each option's accuracy and speed.
    """
    import onnxruntime as ort

    from edgeres.progress import progress_bar

    layers = [n.name for n in fp32_model.graph.node if n.op_type in WEIGHTED_OPS]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    fp32_session = ort.InferenceSession(fp32_model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    fp32_top1, _ = _top1(fp32_session, val)
    int8_session = cpu_session(fp32_model, scales, set())
    int8_top1, _ = _top1(int8_session, val)
    plan = MixedPlan([], fp32_top1, int8_top1, int8_top1, max_drop)
    if fp32_top1 - int8_top1 <= max_drop:
        return plan
    with progress_bar(enabled=progress) as bar:
        task = bar.add_task("layer sensitivity", total=len(layers))
        for layer in layers:
            plan.sensitivity[layer] = _top1(cpu_session(fp32_model, scales, {layer}), val)[0] - int8_top1
            bar.advance(task)
    ranked = sorted(layers, key=lambda n: -plan.sensitivity[n])
    kept: list[str] = []
    top1 = int8_top1
    for layer in ranked:
        if fp32_top1 - top1 <= max_drop:
            break
        if len(kept) + 1 > MOSTLY_FLOAT * len(layers):
            _refuse(fp32_model, scales, val, plan, kept, top1, fp32_session, int8_session)
        kept.append(layer)
        top1 = _top1(cpu_session(fp32_model, scales, set(kept)), val)[0]
        plan.steps.append({"kept": layer, "sensitivity": plan.sensitivity[layer], "top1": top1})
    if fp32_top1 - top1 > max_drop:
        _refuse(fp32_model, scales, val, plan, kept, top1, fp32_session, int8_session)
    plan.float_layers, plan.mixed_top1 = kept, top1
    return plan


def _refuse(fp32_model, scales, val, plan: MixedPlan, kept: list[str], top1: float, fp32_session, int8_session):
    mixed_ms = _latency_ms(cpu_session(fp32_model, scales, set(kept)), val)
    raise EdgeresError(
        f"--max-drop {plan.max_drop} needs more than {int(MOSTLY_FLOAT * 100)}% of the {len(plan.sensitivity)} "
        f"layers left float; options: INT8 everywhere: top-1 {plan.int8_top1:.2f}% "
        f"({_latency_ms(int8_session, val):.2f} ms); mixed with {len(kept)} float layers: {top1:.2f}% "
        f"({mixed_ms:.2f} ms); "
        f"FP32: {plan.fp32_top1:.2f}% ({_latency_ms(fp32_session, val):.2f} ms). Raise --max-drop, try QAT "
        "(edgeres qat) or another calibration method, or build FP32"
    )


def cpu_float_layers(fp32_model, float_layers: set[str]) -> set[str]:
    """The layers that compute in float on the CPU for a mixed plan: the kept ones, plus each Conv whose
    output reaches only kept layers (through ReLU/MaxPool): with no quantized reader it has no output
    scale, so it cannot be an integer kernel. TensorRT runs those in FP16/FP32 too."""
    from edgeres.onnx_graph import consumers, producers

    made_by, readers = producers(fp32_model.graph), consumers(fp32_model.graph)
    result = set(float_layers)

    def quantized_reader(tensor: str) -> bool:
        for node in readers[tensor]:
            if node.op_type in ("Relu", "MaxPool"):
                if quantized_reader(node.output[0]):
                    return True
            elif (node.op_type in WEIGHTED_OPS and node.name not in float_layers) or node.op_type == "Add":
                return True
        return False

    for name in float_layers:
        node = next(n for n in fp32_model.graph.node if n.name == name)
        src = made_by.get(node.input[0])
        while src is not None and src.op_type in ("Relu", "MaxPool"):
            src = made_by.get(src.input[0])
        if src is not None and src.op_type in WEIGHTED_OPS and not quantized_reader(src.output[0]):
            result.add(src.name)
    return result


def output_conv_layers(qdq_model) -> set[str]:
    """Convs whose output reaches no QuantizeLinear (e.g. a detector's final head convs feeding the float graph
    output). ONNX Runtime has no integer Conv with a float output, so on the CPU these run in float on their
    dequantized int8 inputs; TensorRT runs them int8-in / float-out. Nothing quantized changes."""
    from edgeres.onnx_graph import consumers

    readers = consumers(qdq_model.graph)

    def reaches_quantizer(tensor: str, seen: set[str]) -> bool:
        for node in readers[tensor]:
            if node.op_type == "QuantizeLinear":
                return True
            if node.op_type not in WEIGHTED_OPS and node.name not in seen:
                seen.add(node.name)
                if any(reaches_quantizer(out, seen) for out in node.output):
                    return True
        return False

    return {n.name for n in qdq_model.graph.node if n.op_type == "Conv" and not reaches_quantizer(n.output[0], set())}


def plan_mixed_precision(cfg: BuildConfig, calib):
    """Measure per-layer sensitivity on the val images and choose the layers kept float (see quant.mixed)."""
    import onnx

    from edgeres.data.imagefolder import load_eval_split
    from edgeres.evaluate import EvalImages
    from edgeres.models.checkpoint import load_checkpoint

    config = load_checkpoint(cfg.model).config
    if config.task == "detect":
        raise EdgeresError("--precision mixed budgets a top-1 drop and works on classifiers; for a detector build "
                           "--precision int8 and check mAP with 'edgeres eval', or recover it with 'edgeres qat'")
    val_dir = cfg.val_data
    if val_dir is None:
        calib_dir = Path(calib.scales.data.get("folder", ""))
        if calib_dir.name == "train" and (calib_dir.parent / "val").is_dir():
            val_dir = calib_dir.parent / "val"
    if val_dir is None:
        raise EdgeresError("--precision mixed measures accuracy: pass --val-data DIR (labelled images, "
                           "DIR/<class>/...)")
    images = load_eval_split(Path(val_dir))
    if images.class_names != config.class_names:
        raise EdgeresError(f"--val-data {val_dir} has classes {images.class_names[:6]}, the model "
                           f"{config.class_names[:6]}")
    return plan_mixed(onnx.load(str(calib.fp32_onnx)), calib.scales, EvalImages(images, config.preprocess),
                      cfg.max_drop)
