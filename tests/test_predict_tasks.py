"""`edgeres predict` over the task layer: one record form for every task, drawing for every task, and the
options of one task refused for another with the tasks that take them named."""

from __future__ import annotations

import json

from engine_helpers import val_digit_files
from helpers import assert_user_error, run_cli

pytest_plugins = ["fixtures_models", "fixtures_detect"]


def test_predict_draws_a_classifiers_label_panel(trained_engine, digits_data, tmp_path):
    import cv2

    paths = [val_digit_files(digits_data, per_class=1)[d][0] for d in (1, 8)]
    drawn = tmp_path / "drawn"
    proc = run_cli("predict", *paths, "--engine", trained_engine, "--json", "--top-k", "2", "--draw", drawn)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [set(r) for r in rows] == [{"image", "task", "schema", "predictions", "drawn"}] * 2
    for src, row in zip(paths, rows, strict=True):
        assert row["drawn"] == str(drawn / src.name) and len(row["predictions"]) == 2
        original, out = cv2.imread(str(src)), cv2.imread(row["drawn"])
        assert out.shape == original.shape
        assert (out != original).any()  # the label panel is drawn onto the image, top left
    text = run_cli("predict", paths[0], "--engine", trained_engine, "--top-k", "1")
    assert text.returncode == 0 and text.stdout.startswith(f"{paths[0]}: ")


def test_options_of_another_task_are_refused_naming_the_tasks_that_take_them(
    cli_engine, detect_fp32_engine, digits_data, scenes_data
):
    digit = val_digit_files(digits_data, per_class=1)[0][0]
    scene = next((scenes_data / "val" / "images").glob("*.png"))
    proc = run_cli("predict", digit, "--engine", cli_engine, "--score-threshold", "0.5")
    assert_user_error(proc, "--score-threshold is for detect models", "classify model")
    proc = run_cli("predict", scene, "--engine", detect_fp32_engine, "--top-k", "3")
    assert_user_error(proc, "--top-k is for classify models", "detect model")
    scenes = sorted((scenes_data / "val" / "images").glob("*.png"))[:4]
    proc = run_cli("predict", *scenes, "--engine", detect_fp32_engine, "--score-threshold", "0.2")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split(": ")[0] for line in lines] == [str(p) for p in scenes]
    assert any(" at (" in line for line in lines)  # boxes for people: label, score and box
