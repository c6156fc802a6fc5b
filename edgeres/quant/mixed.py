"""``mixed`` precision: INT8 where it keeps accuracy, float for the layers that lose it, for any task.

Per-layer sensitivity on a validation set (the task's primary metric, e.g. top-1 or mAP@0.5, with only that
layer left float, everything else INT8), then the most sensitive layers are kept unquantized, one at a time,
until the drop against FP32 is within the budget (in points of that metric). Every candidate is evaluated as
the real CPU INT8 engine would run it (the same rewrite, ONNX Runtime integer kernels) and scored by the
task's own scorer, the code behind ``edgeres eval``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeres.errors import EdgeresError
from edgeres.onnx_model.graph import WEIGHTED_OPS

if TYPE_CHECKING:
    from edgeres.build import BuildConfig

MOSTLY_FLOAT = 0.5  # keeping more than this share of the layers float is refused: it is an FP32 engine
SCORE_BATCH = 32


@dataclass
class MixedPlan:
    """The layers kept float and the accuracy of each option, in points of the task's primary metric."""

    float_layers: list[str]
    metric: str  # the metrics key scored ("top1", "map50")
    metric_label: str  # for people ("top-1", "mAP@0.5")
    fp32: float  # points
    int8: float
    mixed: float
    max_drop: float
    sensitivity: dict[str, float] = field(default_factory=dict)  # layer -> points gained when left float
    steps: list[dict] = field(default_factory=list)
    cpu_float_layers: list[str] = field(default_factory=list)  # set by the CPU build: kept + starved producers

    def to_dict(self) -> dict:
        return {
            "float_layers": self.float_layers,
            "cpu_float_layers": self.cpu_float_layers,
            "metric": self.metric,
            "metric_label": self.metric_label,
            "unit": "points",
            "fp32": self.fp32,
            "int8": self.int8,
            "mixed": self.mixed,
            "max_drop": self.max_drop,
            "sensitivity": self.sensitivity,
            "steps": self.steps,
        }


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


def score_session(session, val, task) -> float:
    """The task's primary metric of an ONNX Runtime session on an EvalSet, in points.

    Raises:
        EdgeresError: the metric is undefined on this data (e.g. mAP of a split without a single box).
    """
    name = session.get_inputs()[0].name
    scorer = task.scorer(val)
    for x, hws in val.eval_batches(SCORE_BATCH):
        scorer.add(session.run(None, {name: x})[0], hws)
    value = scorer.result()[task.metric.key]
    if value is None:
        raise EdgeresError(
            f"{task.metric.label} is undefined on the --val-data images (nothing to find there); "
            "--precision mixed needs labelled validation data"
        )
    return task.metric.points(value)


def _latency_ms(session, val, seconds: float = 1.0) -> float:
    x, _ = next(val.eval_batches(1))
    name = session.get_inputs()[0].name
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 5:
        t = time.perf_counter()
        session.run(None, {name: x})
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def plan_mixed(fp32_model, scales, val, task, max_drop: float, progress: bool = True) -> MixedPlan:
    """Choose the layers to keep float so that FP32 minus mixed is at most ``max_drop`` points of the task's
    primary metric (``task.metric``: top-1 %, or mAP@0.5 x 100).

    Args:
        val: the task's EvalSet (``task.load_eval_set``) the accuracy is measured on.
        task: the model's ``edgeres.tasks.base.Task``.

    Raises:
        EdgeresError: the budget needs most layers float; the message gives each option's accuracy and speed.
    """
    import onnxruntime as ort

    from edgeres.progress import progress_bar

    layers = [n.name for n in fp32_model.graph.node if n.op_type in WEIGHTED_OPS]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    fp32_session = ort.InferenceSession(fp32_model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    fp32 = score_session(fp32_session, val, task)
    int8_session = cpu_session(fp32_model, scales, set())
    int8 = score_session(int8_session, val, task)
    plan = MixedPlan([], task.metric.key, task.metric.label, fp32, int8, int8, max_drop)
    if fp32 - int8 <= max_drop:
        return plan
    with progress_bar(enabled=progress) as bar:
        bar_task = bar.add_task("layer sensitivity", total=len(layers))
        for layer in layers:
            plan.sensitivity[layer] = score_session(cpu_session(fp32_model, scales, {layer}), val, task) - int8
            bar.advance(bar_task)
    ranked = sorted(layers, key=lambda n: -plan.sensitivity[n])
    kept: list[str] = []
    score = int8
    for layer in ranked:
        if fp32 - score <= max_drop:
            break
        if len(kept) + 1 > MOSTLY_FLOAT * len(layers):
            _refuse(fp32_model, scales, val, plan, kept, score, fp32_session, int8_session)
        kept.append(layer)
        score = score_session(cpu_session(fp32_model, scales, set(kept)), val, task)
        plan.steps.append({"kept": layer, "sensitivity": plan.sensitivity[layer], "score": score})
    if fp32 - score > max_drop:
        _refuse(fp32_model, scales, val, plan, kept, score, fp32_session, int8_session)
    plan.float_layers, plan.mixed = kept, score
    return plan


def _refuse(fp32_model, scales, val, plan: MixedPlan, kept: list[str], score: float, fp32_session, int8_session):
    mixed_ms = _latency_ms(cpu_session(fp32_model, scales, set(kept)), val)
    label = plan.metric_label
    raise EdgeresError(
        f"--max-drop {plan.max_drop} needs more than {int(MOSTLY_FLOAT * 100)}% of the {len(plan.sensitivity)} "
        f"layers left float; options ({label} in points): INT8 everywhere: {plan.int8:.2f} "
        f"({_latency_ms(int8_session, val):.2f} ms); mixed with {len(kept)} float layers: {score:.2f} "
        f"({mixed_ms:.2f} ms); "
        f"FP32: {plan.fp32:.2f} ({_latency_ms(fp32_session, val):.2f} ms). Raise --max-drop, try QAT "
        "(edgeres qat) or another calibration method, or build FP32"
    )


def cpu_float_layers(fp32_model, float_layers: set[str]) -> set[str]:
    """The layers that compute in float on the CPU for a mixed plan: the kept ones, plus each Conv whose
    output reaches only kept layers (through ReLU/MaxPool): with no quantized reader it has no output
    scale, so it cannot be an integer kernel. TensorRT runs those in FP16/FP32 too."""
    from edgeres.onnx_model.graph import consumers, producers

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
    from edgeres.onnx_model.graph import consumers

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
    """Measure per-layer sensitivity on the val data with the model's task scorer and choose the layers kept float
    (``plan_mixed``); the budget ``cfg.max_drop`` is in points of the task's primary metric.

    Raises:
        EdgeresError: no validation data found, or data whose classes are not the model's.
    """
    import onnx

    from edgeres.models.checkpoint import load_checkpoint
    from edgeres.tasks import get_task

    config = load_checkpoint(cfg.model).config
    task = get_task(config.task)
    val_dir = cfg.val_data
    if val_dir is None:  # calibrated from DIR/train: DIR/val is the held-out split
        calib_dir = Path(calib.scales.data.get("folder", ""))
        if calib_dir.name == "train" and (calib_dir.parent / "val").is_dir():
            val_dir = calib_dir.parent / "val"
    if val_dir is None:
        raise EdgeresError(
            f"--precision mixed measures {task.metric.label}: pass --val-data DIR (labelled "
            "validation data, as `edgeres eval --data` takes it)"
        )
    split = task.load_eval_split(Path(val_dir))
    if list(split.class_names) != list(config.class_names):
        raise EdgeresError(
            f"--val-data {val_dir} has classes {list(split.class_names)[:6]}, the model {list(config.class_names)[:6]}"
        )
    return plan_mixed(
        onnx.load(str(calib.fp32_onnx)), calib.scales, task.make_eval_set(split, config.preprocess), task, cfg.max_drop
    )
