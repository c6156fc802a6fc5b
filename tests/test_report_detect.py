"""`edgeres report` for detectors: its mAP columns, per-class AP and precision-recall curve are `edgeres eval`'s
numbers on the same engines and data, and the `--baseline` gate counts mAP@0.5 in points."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import assert_user_error, run_cli

pytest_plugins = ["fixtures_detect"]

TIMING = ["--duration", "0.3", "--warmup", "0.1"]


@pytest.fixture(scope="module")
def detect_report(tmp_path_factory, detect_fp32_engine, detect_int8_engine, scenes_data):
    out = tmp_path_factory.mktemp("detect_report") / "r"
    proc = run_cli(
        "report",
        "--engines",
        detect_fp32_engine,
        "--engines",
        detect_int8_engine,
        "--data",
        scenes_data,
        "--out",
        out,
        *TIMING,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "mAP@0.5" in proc.stdout
    return out


def _eval_json(*args) -> dict:
    proc = run_cli("eval", *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_detector_report_numbers_equal_edgeres_eval(
    detect_report, detect_fp32_engine, detect_int8_engine, trained_detector, scenes_data
):
    data = json.loads((detect_report / "report.json").read_text())
    assert data["schema"] == "edgeres.report/2" and data["task"] == "detect" and data["images"] == 80
    assert data["metric"] == {"key": "map50", "label": "mAP@0.5", "unit": "fraction"}
    assert data["columns"] == [["map50", "mAP@0.5"], ["map", "mAP@0.5:0.95"]]
    rows = {r["name"]: r for r in data["rows"]}
    reference = rows["torch FP32 (reference)"]
    assert reference["map50"] == _eval_json("--model", trained_detector, "--data", scenes_data)["map50"]
    for engine in (detect_fp32_engine, detect_int8_engine):
        evaluated = _eval_json("--engine", engine, "--data", scenes_data)
        row = rows[engine.name]
        assert (row["map50"], row["map"]) == (evaluated["map50"], evaluated["map"])
        assert row["per_class"] == evaluated["per_class_ap50"]
        # The row carries eval's own JSON, less the per-image list.
        same = {k: v for k, v in evaluated.items() if k not in ("detections_per_image", "model")}
        assert {k: v for k, v in row["metrics"].items() if k != "model"} == same
        assert row["delta_map50"] == pytest.approx(100 * (row["map50"] - reference["map50"]))
        for name, ap in row["per_class"].items():
            assert row["per_class_delta"][name] == pytest.approx(100 * (ap - reference["per_class"][name]))
        assert row["agreement"] is None  # one class per image is a classifier's notion
        # The precision-recall curve is the one mAP@0.5 was computed from: its mean is mAP@0.5.
        curve = row["metrics"]["pr_curve50"]
        assert len(curve["recall"]) == len(curve["precision"]) == 101 and curve["recall"][-1] == 1.0
        assert np.mean(curve["precision"]) == pytest.approx(row["map50"], abs=1e-5)
        assert all(a >= b for a, b in zip(curve["precision"], curve["precision"][1:], strict=False))  # interpolated
    assert rows[detect_int8_engine.name]["quantization"] == "entropy"


def test_detector_report_files_show_map_columns_and_four_plots(detect_report):
    md = (detect_report / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| engine"))
    for column in ("mAP@0.5", "mAP@0.5:0.95", "Δ mAP@0.5", "p50 ms"):
        assert f"| {column} |" in header
    assert "top-1" not in md
    html = (detect_report / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    for png in ("accuracy_vs_latency.png", "latency_distributions.png", "per_class_delta.png", "precision_recall.png"):
        assert (detect_report / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png})" in md


def test_detector_baseline_gate_counts_map50_points(detect_report):
    from edgeres.report import compare_to_baseline

    report = json.loads((detect_report / "report.json").read_text())
    baseline = json.loads(json.dumps(report))
    for row in baseline["rows"]:
        row["map50"] += 0.01  # the old report was 1 point of mAP@0.5 better everywhere
    found = compare_to_baseline(report, baseline, max_drop=0.5, max_latency_increase=10.0)
    assert len(found) == len(report["rows"])
    assert all("mAP@0.5" in line and "-1.00 points" in line and "limit 0.5" in line for line in found)
    assert compare_to_baseline(report, baseline, max_drop=1.5, max_latency_increase=10.0) == []


def test_detector_report_refuses_a_top1_gate_and_a_classifier_baseline(
    detect_report, detect_fp32_engine, scenes_data, tmp_path
):
    proc = run_cli(
        "report",
        "--engines",
        detect_fp32_engine,
        "--data",
        scenes_data,
        "--out",
        tmp_path / "a",
        "--max-top1-drop",
        "1",
        *TIMING,
    )
    assert_user_error(proc, "--max-top1-drop", "detection", "--max-drop", "mAP@0.5")
    baseline = json.loads((detect_report / "report.json").read_text()) | {"task": "classify"}
    old = tmp_path / "old.json"
    old.write_text(json.dumps(baseline))
    proc = run_cli(
        "report",
        "--engines",
        detect_fp32_engine,
        "--data",
        scenes_data,
        "--out",
        tmp_path / "b",
        "--baseline",
        old,
        *TIMING,
    )
    assert_user_error(proc, "classify engines", "detect engines")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
