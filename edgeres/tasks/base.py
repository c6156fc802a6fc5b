"""What a task (classify, detect, ...) gives the generic pipeline: plain functions on one small dataclass.

The generic code (``edgeres.train``, ``edgeres.evaluate``, ``quant.qat``, ``predict``, ``bench``, the camera
loop, ``report``, ``build``) never branches on a task's name: it looks the task up once
(``edgeres.tasks.get_task``) and calls what is here. No task inherits from another; a new task is one folder
under ``edgeres/tasks/`` and one line in the table in ``edgeres/tasks/__init__.py`` (see docs/adding-a-task.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


class EvalSet(Protocol):
    """A labelled split resized once to network size, served in order."""

    class_names: list[str]

    def __len__(self) -> int: ...

    def eval_batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, list[tuple[int, int]]]]:
        """(float32 network input batch, original (h, w) of each image)."""
        ...


class Scorer(Protocol):
    """Accumulates a predictor's raw outputs over an EvalSet, batch by batch, into the task's metrics."""

    def add(self, outputs: np.ndarray, image_hws: list[tuple[int, int]]) -> None: ...

    def result(self) -> dict: ...


@dataclass(frozen=True)
class Metric:
    """The task's primary metric: what ``train`` keeps the best checkpoint by, what ``report`` gates on and
    what a ``--precision mixed`` budget is counted in."""

    key: str  # in the metrics dict: "top1", "map50"
    label: str  # for people: "top-1", "mAP@0.5"
    percent: bool  # top-1 is already in percent; mAP is a fraction in [0, 1]
    history_keys: tuple[str, ...]  # metrics recorded per epoch as val_<key>

    def points(self, value: float) -> float:
        """The value in percentage points (budgets and drops are given in points for every task)."""
        return float(value) if self.percent else 100.0 * float(value)

    def fmt(self, value: float | None) -> str:
        if value is None:
            return "-"
        return f"{value:.2f}%" if self.percent else f"{value:.4f}"


@dataclass
class TrainingData:
    """What training needs from the data: class names, a torch Dataset of ``(x, *targets)`` samples (augmented),
    the val split as an EvalSet (None on ranks other than 0), and counts for the run summary."""

    class_names: list[str]
    train: Any
    val: EvalSet | None
    summary: dict = field(default_factory=dict)  # train_images, val_images and task extras (e.g. boxes)


@dataclass(frozen=True)
class TritonPostprocess:
    """A Triton Python-backend model after the engine, and an ensemble of both, for a task whose raw output is not
    what a client wants (``edgeres/deploy/triton_postprocess.py`` runs the task's ``DeployFacts.decoder``)."""

    outputs: Callable[[dict], list[tuple[str, str, list[int]]]]  # settings -> [(name, Triton type, dims)]
    parameters: Callable[[dict], dict]  # settings -> the decoder's parameters in its config.pbtxt


@dataclass(frozen=True)
class DeployFacts:
    """What ``edgeres deploy`` (DeepStream, Triton) needs to know about a task's network output."""

    nvinfer_network_type: int  # Gst-nvinfer network-type: 1 classifier (nvinfer parses it), 100 raw tensors
    append_softmax: bool  # end the ONNX in Softmax: nvinfer's classifier-threshold compares probabilities
    label_separator: str  # nvinfer's labels file: ";" (one line, a classifier's format) or "\n" (one label a line)
    decoder: str  # written into deploy.json / the post-processing config: what the deployed apps decode with
    attach: str  # what the DeepStream app puts into metadata per frame: "frame_label" or "objects"
    settings_block: str | None  # the manifest block with the decoding settings (copied into deploy.json)
    output_shape: Callable[[int, tuple[int, int]], tuple[int, ...]]  # (classes, input hw) -> one image's output
    label_filename: bool  # Triton: label_filename on the output (the classification extension's top-k labels)
    triton_postprocess: TritonPostprocess | None = None  # None: clients read the engine's output directly


@dataclass(frozen=True)
class Task:
    """One task's answers to what the generic pipeline asks. Every field is a plain function or value."""

    name: str  # "classify"
    title: str  # "classification"
    metric: Metric
    json_schema: str  # the versioned name of one prediction's JSON form: "edgeres.classify/1"
    output_names: tuple[str, ...]  # ONNX output names
    default_optimizer: str
    default_settings: dict  # decoding settings an engine records (e.g. score threshold); {} when none
    options: tuple[str, ...]  # the task-specific CLI options this task takes (e.g. "top_k", "score_threshold")

    # architectures
    resolve_arch: Callable[[str], str]  # what --arch means for this task (detect: resnet18 -> centernet_resnet18)
    check_input_size: Callable[[tuple[int, int]], None]

    # data
    default_img_size: Callable[[Any], int | None]  # the data's own size when every image shares one, else None
    load_training_data: Callable[..., TrainingData]  # (cfg: TrainConfig, pre, with_val: bool)
    load_eval_split: Callable[[Any], Any]  # path -> the labelled split at path (or its val/), with .class_names;
    # cheap: files listed and annotations parsed, no image decoded
    make_eval_set: Callable[..., EvalSet]  # (split, pre) -> the split resized for the network

    # model and training
    init_model: Callable[..., Any]  # (cfg: TrainConfig, class_names) -> torch model (weights, init_from, freeze)
    is_frozen_parameter: Callable[[str], bool]  # --freeze-backbone: which parameter names stay fixed
    make_loss: Callable[..., Callable]  # (label_smoothing) -> (outputs, targets) -> (loss, {"correct": n} | {})

    # outputs
    scorer: Callable[[EvalSet], Scorer]
    decode: Callable[..., list]  # (outputs, image_hws, input_hw, class_names, settings) -> per-image predictions
    to_json: Callable[[Any, list[str]], Any]  # one prediction -> its JSON form ("predictions" of a record)
    draw: Callable[..., np.ndarray]  # (BGR image, one decoded prediction, class_names, settings) -> image, in place
    settings: Callable[[dict, dict], dict]  # (manifest, overrides) -> decoding settings
    manifest_block: Callable[[dict], dict]  # (settings) -> extra manifest keys

    # files predict --draw writes beside each drawn image: kind -> path (from the drawn image's path), and the
    # writer of one such file (kind, prediction, class_names, path); segment: the class map as a palette PNG
    extra_draw_files: Callable[[Any], dict] = lambda drawn: {}
    write_extra_file: Callable[..., None] | None = None

    # calibration: which image files under a data folder are network inputs ((folder, every image file) -> the
    # inputs); None: all of them. Segment: not its masks.
    input_images: Callable[[Any, list], list] | None = None

    # engines
    cpu_int8_checked: tuple[str, ...] = ("onnxruntime",)  # CPU INT8 engines checked for this task (auto picks among)

    # reports
    report_columns: tuple[tuple[str, str], ...] = ()  # (metrics key, column label)
    per_class: Callable[[dict], dict] = lambda metrics: {}  # metrics -> {class name: primary metric of that class}
    summarize: Callable[[dict], str] = lambda metrics: ""  # one line for people
    tables: Callable[[dict], list] = lambda metrics: []  # [(title, column names, rows of strings)] for people

    # deployment (DeepStream, Triton); None: ``edgeres deploy`` does not handle this task yet
    deploy: DeployFacts | None = None

    def archs(self) -> list[str]:
        """The architectures registered for this task (``register_model(name, task=...)``)."""
        from edgeres.models.registry import list_models

        return list_models(self.name)

    def load_eval_set(self, path, pre) -> EvalSet:
        """The labelled split at ``path`` (or its ``val/``), resized for a network with pre-processing ``pre``."""
        return self.make_eval_set(self.load_eval_split(path), pre)

    def check_options(self, given: dict) -> None:
        """Refuse a task-specific option this task does not take, naming the tasks that do."""
        from edgeres.errors import EdgeresError
        from edgeres.tasks import tasks_taking

        for option, value in given.items():
            if value is not None and option not in self.options:
                flag = "--" + option.replace("_", "-")
                raise EdgeresError(f"{flag} is for {', '.join(tasks_taking(option)) or 'no'} models; this one is a "
                                   f"{self.name} model")
