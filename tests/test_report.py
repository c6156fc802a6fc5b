"""`edgeres report`: its numbers are `edgeres eval`'s, its JSON carries the bench settings, mismatches are refused,
and a baseline regression fails the command."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import assert_user_error, run_cli

pytest_plugins = ["fixtures_quant"]

TIMING = ["--duration", "0.3", "--warmup", "0.1"]


@pytest.fixture(scope="module")
def fp32_engine(tmp_path_factory, quant_model):
    out = tmp_path_factory.mktemp("report_engines") / "r18-fp32"
    proc = run_cli("build", "--model", quant_model, "--backend", "onnxruntime", "--out", out)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory, fp32_engine, quant_int8_engine, quant_digits):
    out = tmp_path_factory.mktemp("report") / "r"
    proc = run_cli(
        "report",
        "--engines",
        fp32_engine,
        "--engines",
        quant_int8_engine,
        "--data",
        quant_digits,
        "--out",
        out,
        *TIMING,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return out


def test_report_accuracy_equals_edgeres_eval(report, fp32_engine, quant_int8_engine, quant_model, quant_digits):
    data = json.loads((report / "report.json").read_text())
    rows = {r["name"]: r for r in data["rows"]}
    for engine in (fp32_engine, quant_int8_engine):
        proc = run_cli("eval", "--engine", engine, "--data", quant_digits, "--json")
        assert proc.returncode == 0, proc.stderr
        evaluated = json.loads(proc.stdout)
        row = rows[engine.name]
        assert row["top1"] == evaluated["top1"] and row["top5"] == evaluated["top5"]
        assert row["per_class"] == {c: v["top1"] for c, v in evaluated["per_class"].items()}
    proc = run_cli("eval", "--model", quant_model, "--data", quant_digits, "--json")
    assert rows["torch FP32 (reference)"]["top1"] == json.loads(proc.stdout)["top1"]
    assert rows[fp32_engine.name]["agreement"] == 100.0  # the FP32 engine predicts exactly like torch here
    assert rows[quant_int8_engine.name]["quantization"] == "entropy"


def test_report_json_carries_the_bench_settings_and_files_exist(report):
    data = json.loads((report / "report.json").read_text())
    assert data["schema"] == "edgeres.report/2" and data["task"] == "classify" and data["metric"]["key"] == "top1"
    settings = data["environment"]["settings"]
    assert settings["duration"] == 0.3 and settings["warmup"] == 0.1 and settings["batches"] == [1]
    assert data["environment"]["cpu_isa"] and data["environment"]["versions"]["onnxruntime"]
    for row in data["rows"]:
        lat = row["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
        assert len(row["samples_ms"]) >= 10 and row["throughput_ips"] > 0
    html = (report / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3  # self-contained: three embedded plots
    md = (report / "report.md").read_text()
    assert "| r18-int8 |" in md and "Machine:" in md
    for png in ("accuracy_vs_latency.png", "latency_distributions.png", "per_class_delta.png"):
        assert (report / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_refuses_engines_with_different_class_lists(fp32_engine, quant_int8_engine, quant_digits, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(quant_int8_engine, other)
    manifest_file = next(other.glob("*.manifest.json"))
    manifest = json.loads(manifest_file.read_text())
    manifest["class_names"] = [f"c{i}" for i in range(10)]
    manifest_file.write_text(json.dumps(manifest))
    proc = run_cli(
        "report", "--engines", fp32_engine, "--engines", other, "--data", quant_digits, "--out", tmp_path / "r", *TIMING
    )
    assert_user_error(proc, "different class lists")
    assert not (tmp_path / "r").exists()


def test_report_refuses_data_with_other_classes(fp32_engine, quant_digits, tmp_path):
    data = tmp_path / "three"
    for cls in ("0", "1", "2"):
        shutil.copytree(quant_digits / "val" / cls, data / cls)
    proc = run_cli("report", "--engines", fp32_engine, "--data", data, "--out", tmp_path / "r", *TIMING)
    assert_user_error(proc, "classes")


def test_report_baseline_regression_exits_non_zero(report, fp32_engine, quant_digits, tmp_path):
    baseline = json.loads((report / "report.json").read_text())
    for row in baseline["rows"]:
        row["top1"] += 10.0  # the old report was much better
    old = tmp_path / "old.json"
    old.write_text(json.dumps(baseline))
    out = tmp_path / "new"
    # --max-top1-drop: the classifier's older spelling of --max-drop, still accepted.
    proc = run_cli(
        "report",
        "--engines",
        fp32_engine,
        "--data",
        quant_digits,
        "--out",
        out,
        "--baseline",
        old,
        "--max-top1-drop",
        "5",
        *TIMING,
    )
    assert proc.returncode == 2, proc.stderr
    assert "regressions" in proc.stderr
    written = json.loads((out / "report.json").read_text())
    assert any("top-1" in r and "r18-fp32" in r and "limit 5.0" in r for r in written["regressions"])
    assert written["gate"]["max_drop_points"] == 5.0


def test_max_drop_is_in_points_of_the_task_metric_and_refuses_conflicts():
    from edgeres.errors import EdgeresError
    from edgeres.report import resolve_max_drop
    from edgeres.tasks import get_task

    classify, detect = get_task("classify"), get_task("detect")
    assert resolve_max_drop(classify, None, None) == resolve_max_drop(detect, None, None) == 0.5
    assert resolve_max_drop(classify, None, 2.0) == resolve_max_drop(detect, 2.0, None) == 2.0
    with pytest.raises(EdgeresError, match="not both"):
        resolve_max_drop(classify, 1.0, 1.0)
    with pytest.raises(EdgeresError, match=r"--max-top1-drop gates top-1.*--max-drop in points of mAP@0\.5"):
        resolve_max_drop(detect, None, 1.0)
    with pytest.raises(EdgeresError, match="0 or more"):
        resolve_max_drop(detect, -1.0, None)
