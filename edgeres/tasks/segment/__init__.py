"""Semantic segmentation: a stride-4 top-down network on a torchvision ResNet (or torchvision's FCN/DeepLabV3);
mIoU is the primary metric. Decoding (bilinear upsampling to the image, argmax), metrics and drawing are numpy."""

from __future__ import annotations

from edgeres.tasks.base import Metric, Task
from edgeres.tasks.segment import data, metrics, model, outputs

TASK = Task(
    name="segment",
    title="semantic segmentation",
    metric=Metric(key="miou", label="mIoU", percent=False, history_keys=("miou", "pixel_acc")),
    json_schema="edgeres.segment/1",
    output_names=("logits",),  # [N, C, H/4, W/4] class logits (torchvision's FCN/DeepLabV3: [N, C, H, W])
    default_optimizer="adamw",
    default_settings=outputs.DEFAULT_SETTINGS,
    options=("overlay_alpha", "view"),
    resolve_arch=model.resolve_arch,
    check_input_size=model.check_input_size,
    default_img_size=data.default_img_size,
    load_training_data=data.load_training_data,
    load_eval_split=data.load_eval_split,
    make_eval_set=data.SegmentEvalImages,
    init_model=model.init_model,
    is_frozen_parameter=model.is_frozen_parameter,
    make_loss=model.make_loss,
    scorer=metrics.SegmentScorer,
    decode=outputs.decode,
    to_json=outputs.to_json,
    draw=outputs.draw,
    settings=outputs.settings,
    manifest_block=outputs.manifest_block,
    # OpenVINO's engine gives the Q/DQ artifact's class map (test_segment_pipeline), and it is the faster one
    cpu_int8_checked=("onnxruntime", "openvino"),
    input_images=data.input_images,
    extra_draw_files=lambda drawn: {"class_map": drawn.with_name(drawn.stem + ".classes.png")},
    write_extra_file=lambda kind, prediction, class_names, path: outputs.write_class_map_png(prediction, path),
    report_columns=(("miou", "mIoU"), ("pixel_acc", "pixel acc"), ("mean_class_acc", "mean class acc")),
    per_class=lambda m: {name: v["iou"] for name, v in m["per_class"].items()},
    summarize=metrics.summarize,
    tables=metrics.tables,
)
