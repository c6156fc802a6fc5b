"""``edgeres predict`` and ``edgeres bench`` on a really trained model, and one clear line for every bad input."""

from __future__ import annotations

import json
import math

import pytest
from engine_helpers import copy_engine, engine_files, rewrite_manifest, val_digit_files
from helpers import assert_user_error, run_cli

pytest_plugins = ["fixtures_models"]


def classify(runner, config, images, top_k=5) -> list[list[dict]]:
    """The top-k JSON form of each image through an active runner, as predict computes it."""
    from edgeres.predict import predict_images
    from edgeres.tasks import get_task

    task = get_task("classify")
    found = predict_images(runner, config.preprocess, task, config.class_names, images, {"top_k": top_k})
    return [task.to_json(p, config.class_names) for p in found]


@pytest.fixture(scope="module")
def torch_reference(trained_checkpoint):
    """classify(images) through the torch runner: the reference every engine must agree with."""
    from edgeres.backends.torch.loader import ModelLoader
    from edgeres.backends.torch.runner import TorchRunner
    from edgeres.models.checkpoint import load_checkpoint

    config = load_checkpoint(trained_checkpoint).config
    runner = TorchRunner(ModelLoader(trained_checkpoint))

    def run(images, top_k=5):
        with runner:
            return classify(runner, config, images, top_k)

    return run


def test_torch_and_onnxruntime_agree_on_real_digits_and_photos(trained_engine, digits_data, torch_reference):
    from edgeres.data.samples import reference_images
    from edgeres.engine import open_engine
    from edgeres.processing import read_image

    files = val_digit_files(digits_data, per_class=5)  # 50 held-out real MNIST digits
    images = [read_image(p) for p, _ in files] + reference_images(n_digits=0)  # + 4 scikit-image photos
    want = torch_reference(images)
    with open_engine(trained_engine) as engine:  # built with --max-batch 32: two batches
        got = [
            row
            for start in range(0, len(images), 32)
            for row in classify(engine.runner, engine.model_config, images[start : start + 32])
        ]
    assert [g[0]["label"] for g in got] == [w[0]["label"] for w in want]
    for g, w in zip(got, want, strict=True):
        assert g[0]["score"] == pytest.approx(w[0]["score"], abs=1e-4)
    correct = sum(g[0]["label"] == str(d) for g, (_, d) in zip(got, files, strict=False))
    assert correct >= 40, f"{correct}/50 digits right: the trained model should know its digits"


def test_cli_predict_json(trained_engine, digits_data, photo_file, torch_reference):
    from edgeres.processing import read_image

    digits = [val_digit_files(digits_data, per_class=1)[d][0] for d in (0, 3, 7)]
    paths = [*digits, photo_file]
    proc = run_cli("predict", "--engine", trained_engine, *paths, "--json", "--top-k", "3")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["image"] for r in rows] == [str(p) for p in paths]
    assert all(r["task"] == "classify" and r["schema"] == "edgeres.classify/1" for r in rows)
    want = torch_reference([read_image(p) for p in paths], top_k=3)
    for row, ref in zip(rows, want, strict=True):
        scores = [p["score"] for p in row["predictions"]]
        assert len(row["predictions"]) == 3 and scores == sorted(scores, reverse=True)
        assert 0 < sum(scores) <= 1 + 1e-5
        assert [p["label"] for p in row["predictions"]] == [str(p["index"]) for p in row["predictions"]]
        assert row["predictions"][0]["label"] == ref[0]["label"]
        assert row["predictions"][0]["score"] == pytest.approx(ref[0]["score"], abs=1e-4)
    assert sum(r["predictions"][0]["label"] == d for r, d in zip(rows, ("0", "3", "7"), strict=False)) >= 2


def test_predict_splits_batches_above_the_engine_maximum(cli_engine, trained_engine, digits_data):
    """Three images on a --max-batch 2 engine: predict runs them as 2 + 1, with the results of one batch of 3."""
    from edgeres.predict import predict_files

    paths = [p for p, _ in val_digit_files(digits_data, per_class=1)[:3]]
    small = predict_files(cli_engine, paths, options={"top_k": 2})
    big = predict_files(trained_engine, paths, options={"top_k": 2})
    assert [r["image"] for r in small] == [str(p) for p in paths]
    assert [r["predictions"][0]["label"] for r in small] == [r["predictions"][0]["label"] for r in big]
    for s, b in zip(small, big, strict=True):
        assert s["predictions"][0]["score"] == pytest.approx(b["predictions"][0]["score"], abs=1e-4)


def _outside_external_data(folder):
    """Move the engine's weights into a file one level above the folder and point the ONNX at '../outside.bin'."""
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    engine_file, _ = engine_files(folder)
    model = onnx.load(str(engine_file))
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="weights.bin", size_threshold=1024)
    onnx.save_model(model, str(engine_file))
    (folder / "weights.bin").rename(folder.parent / "outside.bin")
    model = onnx.load(str(engine_file), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../outside.bin"
    onnx.save_model(model, str(engine_file))
    rewrite_manifest(folder)  # the manifest matches these bytes: the ONNX check must be what refuses it


def _make_case(case: str, engine, tmp_path, digit):
    """Set up one kind of bad input; return (--engine target, image arguments, fragments of the error line)."""
    folder = tmp_path / "engine"
    if case == "undecodable image":
        bad = tmp_path / "photo.jpg"
        bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
        return engine, [digit, bad], ["cannot decode", "photo.jpg"]
    if case == "missing image":
        return engine, [digit, tmp_path / "nope.png"], ["cannot read image", "nope.png"]
    copy_engine(engine, folder)
    engine_file, manifest_file = engine_files(folder)
    if case == "missing onnx":
        engine_file.unlink()
        return folder, [digit], ["is missing", "rebuild it with: edgeres build"]
    if case == "engine file without manifest":
        manifest_file.unlink()
        return engine_file, [digit], ["has no manifest", "edgeres build"]
    if case == "folder without manifest":
        manifest_file.unlink()
        return folder, [digit], ["found: none"]
    if case == "corrupt onnx":
        engine_file.write_bytes(engine_file.read_bytes()[:100_000])
        return folder, [digit], ["bytes do not match its manifest", "rebuild it with"]
    if case == "corrupt onnx, manifest updated":
        engine_file.write_bytes(engine_file.read_bytes()[:100_000])
        rewrite_manifest(folder)
        return folder, [digit], ["is not a readable ONNX model"]
    if case == "external data outside folder":
        _outside_external_data(folder)
        return folder, [digit], ["points its external data outside the model's folder (../outside.bin)"]
    if case == "newer manifest schema":
        rewrite_manifest(folder, schema_version=2)
        return folder, [digit], ["manifest schema 2, newer than this edgeres reads", "upgrade edgeres"]
    raise AssertionError(case)


BAD_INPUTS = [
    "undecodable image",
    "missing image",
    "missing onnx",
    "engine file without manifest",
    "folder without manifest",
    "corrupt onnx",
    "corrupt onnx, manifest updated",
    "external data outside folder",
    "newer manifest schema",
]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_predict_bad_input_is_one_clear_line(case, cli_engine, digits_data, tmp_path):
    digit = val_digit_files(digits_data, per_class=1)[0][0]
    engine, images, fragments = _make_case(case, cli_engine, tmp_path, digit)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    proc = run_cli("predict", "--engine", engine, *images, "--json", cwd=tmp_path)
    assert_user_error(proc, *fragments)
    assert proc.stdout == ""  # not even the good image: every input is checked before any result is printed
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # and nothing was written


def test_bench_refuses_batches_above_the_engine_maximum(cli_engine, tmp_path):
    proc = run_cli(
        "bench", "--engine", cli_engine, "--batch", "1,3", "--duration", "5", "--warmup", "1", "--json", cwd=tmp_path
    )
    assert_user_error(proc, "batch 3 is above the maximum batch 2", "--max-batch")
    assert proc.stdout == ""


def test_bench_needs_something_and_valid_batches(tmp_path):
    from edgeres.cli.bench import parse_batches
    from edgeres.errors import EdgeresError

    assert_user_error(run_cli("bench", "--batch", "1", cwd=tmp_path), "nothing to benchmark", "--engine", "--model")
    assert parse_batches("1, 8,32") == [1, 8, 32]
    for text in ("1,x", "0", "", "-2"):
        with pytest.raises(EdgeresError, match="not a comma-separated list of positive integers"):
            parse_batches(text)


def _check_stats(stats: dict) -> None:
    assert set(stats) == {"p50", "p90", "p99", "mean", "std", "min", "max"}
    assert 0 < stats["min"] <= stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["max"]
    assert stats["min"] <= stats["mean"] <= stats["max"] and stats["std"] >= 0


def test_cli_bench_json_engine_and_torch(trained_engine, trained_checkpoint, tmp_path):
    import onnxruntime
    import torch

    proc = run_cli(
        "bench",
        "--engine",
        trained_engine,
        "--model",
        trained_checkpoint,
        "--batch",
        "1,8",
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
        "--threads",
        "1",
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    env = report["environment"]
    assert env["cpu"] and env["cpu_isa"] and env["cores"] >= 1 and env["date"]
    assert env["versions"]["onnxruntime"] == onnxruntime.__version__
    assert env["versions"]["torch"] == torch.__version__ and env["versions"]["python"]
    assert env["settings"]["batches"] == [1, 8] and env["settings"]["duration"] == 0.3
    assert env["settings"]["threads"] == 1
    assert "real photos" in env["frames"]

    engine_row, torch_row = report["engines"]
    assert (engine_row["name"], engine_row["backend"]) == ("digits-fp32", "onnxruntime")
    assert engine_row["precision"] == torch_row["precision"] == "fp32"
    assert (torch_row["name"], torch_row["backend"]) == ("torch-eager", "torch")
    assert engine_row["engine_size_mb"] == pytest.approx(engine_files(trained_engine)[0].stat().st_size / 2**20)
    for row in (engine_row, torch_row):
        assert row["arch"] == "resnet18" and list(row["input_size"]) == [32, 32]
        assert row["peak_rss_mb"] > 50 and math.isfinite(row["rss_increase_mb"])
        assert [r["batch"] for r in row["results"]] == [1, 8]
        for r in row["results"]:
            lat = r["latency_ms"]
            assert set(lat) == {"preprocess", "inference", "postprocess", "end_to_end"}
            for stats in lat.values():
                _check_stats(stats)
            assert r["iterations"] >= 10
            # end-to-end is the sum of the three stages, iteration by iteration
            stage_sum = lat["preprocess"]["mean"] + lat["inference"]["mean"] + lat["postprocess"]["mean"]
            assert lat["end_to_end"]["mean"] == pytest.approx(stage_sum, rel=1e-6)
            assert r["throughput_ips"] == pytest.approx(r["batch"] * 1e3 / lat["end_to_end"]["mean"], rel=1e-6)
        # 640x480 frames are resized for every image: batch 8 pre-processes 8 of them
        one, eight = (r["latency_ms"]["preprocess"]["p50"] for r in row["results"])
        assert eight > one


def test_bench_table_names_every_stage(trained_engine, capsys):
    from edgeres.bench import BenchConfig, bench_engine, bench_environment
    from edgeres.cli.bench import print_bench

    cfg = BenchConfig(batches=[2], threads=1, duration=0.1, warmup=0.0, min_iterations=3)
    row = bench_engine(trained_engine, cfg)
    assert row["results"][0]["iterations"] >= 3
    print_bench({"environment": bench_environment(cfg), "engines": [row]})
    out = capsys.readouterr().out
    for column in ("e2e p50 ms", "p90", "p99", "mean±std", "pre ms", "infer ms", "post ms", "img/s", "peak RSS MiB"):
        assert column in out
    assert "digits-fp32" in out and "onnxruntime" in out
    e2e = row["results"][0]["latency_ms"]["end_to_end"]
    assert f"{e2e['p50']:.2f}" in out
