"""Detection: CenterNet on a torchvision ResNet (stride-4 heatmaps, box size and offset); mAP@0.5 is the primary
metric. The numpy side (decoding, NMS, targets, mAP, drawing) runs without torch."""

from __future__ import annotations

from edgeres.tasks.base import Metric, Task
from edgeres.tasks.detect import data, deploy, loss, metrics, model, outputs

TASK = Task(
    name="detect",
    title="detection",
    metric=Metric(key="map50", label="mAP@0.5", percent=False, history_keys=("map50", "map")),
    json_schema="edgeres.detect/1",
    output_names=("maps",),  # [N, C + 4, H/4, W/4]: heatmap logits, box size, centre offset
    default_optimizer="adamw",
    default_settings=outputs.DEFAULT_SETTINGS,
    options=("score_threshold", "nms_iou"),
    resolve_arch=model.resolve_arch,
    check_input_size=model.check_input_size,
    default_img_size=data.default_img_size,
    load_training_data=data.load_training_data,
    load_eval_split=data.load_eval_split,
    make_eval_set=data.DetectionImages,
    init_model=model.init_model,
    is_frozen_parameter=model.is_frozen_parameter,
    make_loss=loss.make_loss,
    scorer=metrics.DetectScorer,
    decode=outputs.decode,
    to_json=outputs.to_json,
    draw=outputs.draw,
    settings=outputs.settings,
    manifest_block=outputs.manifest_block,
    report_columns=(("map50", "mAP@0.5"), ("map", "mAP@0.5:0.95")),
    per_class=lambda metrics: dict(metrics["per_class_ap50"]),
    summarize=metrics.summarize,
    tables=metrics.tables,
    deploy=deploy.DEPLOY,
)
