"""Engines are tuned for batch 1 unless asked otherwise, and bench/selftest say which batch an engine was tuned
for when they time another one."""

from __future__ import annotations

from edgeres.backends.trt import versions
from edgeres.backends.trt.loader import TrtBuildOptions
from edgeres.bench import tuning_notes
from edgeres.device.selftest import summary_table, tuning_line


def test_default_options_tune_for_batch_1():
    opts = TrtBuildOptions()
    assert versions.batch_profile(opts.min_batch, opts.opt_batch, 32) == (1, 1, 32)
    assert versions.batch_profile(opts.min_batch, opts.opt_batch, 32, dla=True) == (32, 32, 32)


def _row(name, tuned, batches):
    return {"name": name, "tuned_batch": tuned, "results": [{"batch": b} for b in batches]}


def test_bench_notes_batches_outside_the_tuned_shape():
    rows = [_row("r18-fp16", 1, [1, 32]), _row("r18-ort", None, [1, 32]), _row("r18-b32", 32, [32])]
    assert tuning_notes(rows) == [
        "r18-fp16 was tuned for batch 1 (--opt-batch); its batch 32 timings run outside "
        "the tuned shape: build with --opt-batch 32 to time that batch as TensorRT would "
        "tune it"
    ]


def test_selftest_table_names_the_tuned_batch():
    rows = [
        {"name": "onnxruntime-fp32 (CPU)", "reference": True, "tuned_batch": None, "compare": {"top1": 98.0}},
        {
            "name": "tensorrt-fp16",
            "reference": False,
            "tuned_batch": 1,
            "compare": {"top1": 98.0, "agreement": 100.0, "mean_prob_diff": 0.0, "max_logit_diff": 0.0, "passed": True},
        },
    ]
    report = {"environment": {}, "rows": rows, "passed": True, "model_line": "model: m", "throughput_batch": 32}
    line = (
        "TensorRT engines tuned for batch 1 (--opt-batch); the b32 column runs the same engines outside their "
        "tuned shape"
    )
    assert tuning_line(report) == line
    assert line in summary_table(report).splitlines()
    assert tuning_line({"rows": rows[:1]}) == ""
