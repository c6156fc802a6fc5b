"""Classification: a torchvision ResNet with a new head; top-1 is the primary metric."""

from __future__ import annotations

from edgeres.tasks.base import Metric, Task
from edgeres.tasks.classify import data, deploy, metrics, model, outputs

TASK = Task(
    name="classify",
    title="classification",
    metric=Metric(key="top1", label="top-1", percent=True, history_keys=("top1", "top5")),
    json_schema="edgeres.classify/1",
    output_names=("logits",),
    default_optimizer="sgd",
    default_settings={},
    options=("top_k",),
    resolve_arch=model.resolve_arch,
    check_input_size=lambda hw: None,
    default_img_size=data.default_img_size,
    load_training_data=data.load_training_data,
    load_eval_split=data.load_eval_split,
    make_eval_set=data.EvalImages,
    init_model=model.init_model,
    is_frozen_parameter=model.is_frozen_parameter,
    make_loss=model.make_loss,
    scorer=metrics.ClassifyScorer,
    decode=outputs.decode,
    to_json=outputs.to_json,
    draw=outputs.draw,
    settings=outputs.settings,
    manifest_block=lambda settings: {},
    cpu_int8_checked=("onnxruntime", "openvino"),  # OpenVINO's engine matches the Q/DQ arithmetic (test_cpu_int8)
    report_columns=(("top1", "top-1 %"), ("top5", "top-5 %")),
    per_class=lambda metrics: {name: v["top1"] for name, v in metrics["per_class"].items()},
    summarize=metrics.summarize,
    tables=metrics.tables,
    deploy=deploy.DEPLOY,
)
