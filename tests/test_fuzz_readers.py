"""Every reader fuzzed with real files: mutations of them (truncation, bit flips, zero runs, header lies, huge
declared sizes) and hypothesis-chosen edits. Each case must be accepted or refused with one line naming the
file, with no other exception and no file changed or created (``fuzz_cases.attempt``). A few cases per reader
here; ``benchmarks/fuzz_campaign.py`` runs thousands with a seed (docs/reliability.md).
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path

import fuzz_cases as fz
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest_plugins = ["fixtures_models", "fixtures_quant"]

FEW = 4  # random byte mutations per reader in CI
FUZZ = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def assert_no_problems(outcomes: list[fz.Outcome], min_refused: int = 1) -> None:
    problems = [f"{o.case}: {o.message}" for o in outcomes if o.kind == "problem"]
    assert not problems, "\n".join(problems)
    assert sum(o.kind == "refused" for o in outcomes) >= min_refused, outcomes


def test_images_bombs_and_mutations(tmp_path):
    outcomes = list(fz.fuzz_images(tmp_path, random.Random(0), FEW))
    assert_no_problems(outcomes, min_refused=5)
    by_case = {o.case: o for o in outcomes}
    bomb = by_case["PNG declaring 50000x50000"]
    assert bomb.kind == "refused" and "decompression bomb" in bomb.message, bomb
    assert by_case["PNG declaring 30000x30000"].kind == "refused"  # under OpenCV's own limit: ours stops it
    for odd in ("photo16.png", "cmyk.jpg", "one.png", "rgba.png", "gray.png"):  # unusual but valid images
        assert by_case[f"{odd} as written"].kind == "accepted", by_case[f"{odd} as written"]


def test_image_bomb_limit_is_configurable(tmp_path, monkeypatch):
    from edgeres.errors import DataError
    from edgeres.processing import read_image

    path = tmp_path / "wide.png"
    path.write_bytes(fz.png_bytes(4000, 3000))
    monkeypatch.setenv("EDGERES_MAX_IMAGE_PIXELS", "1000000")
    with pytest.raises(DataError, match=r"wide\.png declares a 4000x3000 image"):
        read_image(path)
    monkeypatch.setenv("EDGERES_MAX_IMAGE_PIXELS", "20000000")
    assert read_image(path).shape == (3000, 4000, 3)


def test_safetensors_header_lies_values_and_mutations(tmp_path, trained_checkpoint):
    outcomes = list(fz.fuzz_safetensors(tmp_path, trained_checkpoint, random.Random(1), FEW))
    assert_no_problems(outcomes, min_refused=10)
    refused = {o.case: o.message for o in outcomes if o.kind == "refused"}
    assert "NaN or Inf" in refused["NaN in fc.weight"]
    assert "NaN or Inf" in refused["Inf in fc.weight"]
    assert "int32" in refused["conv1.weight stored as int32"]
    assert "newer than this edgeres reads" in refused["format from the future"]


def test_pth_pickles_with_code_and_zip_bombs(tmp_path, trained_checkpoint):
    outcomes = list(fz.fuzz_pth(tmp_path, trained_checkpoint, random.Random(2), FEW))
    assert_no_problems(outcomes, min_refused=4)
    refused = {o.case: o.message for o in outcomes if o.kind == "refused"}
    assert (
        "os.system" in refused["pickle that runs os.system"] or "posix.system" in refused["pickle that runs os.system"]
    )
    assert "zip bomb" in refused["zip bomb: a 64 KB tensor record unpacking to 64 MiB"]
    assert not Path("/tmp/edgeres-fuzz-pwned").exists()


def test_onnx_external_data_outside_folder_and_mutations(tmp_path, trained_engine):
    model = next(Path(trained_engine).glob("*.onnx"))
    outcomes = list(fz.fuzz_onnx(tmp_path, model, random.Random(3), FEW))
    assert_no_problems(outcomes, min_refused=6)
    refused = {o.case: o.message for o in outcomes if o.kind == "refused"}
    for case in (
        "external data ../outside/secret.bin",
        "external data at an absolute path",
        "external data through a symlink leaving the folder",
    ):
        assert "outside the model's folder" in refused[case], refused.get(case)
    assert "missing" in refused["external data file missing"]


def test_engine_manifest_edits(tmp_path, trained_engine):
    outcomes = list(fz.fuzz_manifests(tmp_path, Path(trained_engine), random.Random(4), 6))
    assert_no_problems(outcomes, min_refused=5)
    refused = {o.case: o.message for o in outcomes if o.kind == "refused"}
    assert "modified or replaced after the build" in refused["engine bytes changed after the build"]
    assert "newer than this edgeres reads" in refused["schema from the future"]
    assert "plain file name" in refused["engine file ../../etc/passwd"]


@FUZZ
@given(
    key=st.sampled_from(["engine", "backend", "input", "preprocess", "class_names", "device", "source"]),
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=6,
    ),
)
def test_engine_manifest_any_json_value(trained_engine, key, value):
    """Any JSON value in any manifest section: opened or refused in one line, never a traceback."""
    with tempfile.TemporaryDirectory() as d:
        folder = fz.copy_tree(Path(trained_engine), Path(d) / "engine")
        manifest = next(folder.glob("*.manifest.json"))
        doc = json.loads(manifest.read_text())
        doc[key] = value
        manifest.write_text(json.dumps(doc))
        out = fz.attempt(
            "engine manifest", f"{key}={value!r}", lambda: fz.open_engine_like_edgeres(folder), (folder.name,), folder
        )
    assert out.kind != "problem", out


def test_calibration_folder_edits(tmp_path, quant_calib, quant_model):
    outcomes = list(fz.fuzz_calibration(tmp_path, quant_calib.folder, quant_model, random.Random(5), FEW))
    assert_no_problems(outcomes, min_refused=10)
    refused = {o.case: o.message for o in outcomes if o.kind == "refused"}
    assert "calibrated for another model" in refused["calibrated for another model"]
    assert "not the export these scales were computed on" in refused["model.fp32.onnx swapped for another file"]


@FUZZ
@given(
    section=st.sampled_from(["activations", "weights"]),
    value=st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=4)
    | st.lists(st.floats(), max_size=3),
)
def test_scales_any_range_value(quant_calib, quant_model, section, value):
    """A hand-edited range of any type: the build refuses it naming scales.json, or uses it if it is one."""
    with tempfile.TemporaryDirectory() as d:
        folder = fz.copy_tree(quant_calib.folder, Path(d) / "calib")
        fz.edit_json(folder / "scales.json", lambda doc: next(iter(doc[section].values())).update(amax=value))
        out = fz.attempt(
            "calibration folder",
            f"{section} amax={value!r}",
            lambda: fz.load_calibration_like_edgeres(folder, quant_model),
            ("scales.json",),
            folder,
        )
    assert out.kind != "problem", out


def test_coco_and_yolo_annotations(tmp_path):
    outcomes = list(fz.fuzz_annotations(tmp_path, random.Random(6), FEW))
    assert_no_problems(outcomes, min_refused=8)


@FUZZ
@given(text=st.text(alphabet=st.sampled_from("0123456789 .-eEnaifx\n\t"), max_size=60))
def test_yolo_any_label_text(tmp_path_factory, text):
    root = tmp_path_factory.mktemp("yolo-h")
    seeds = fz.write_image_seeds(root / "seeds")
    folder = fz.write_yolo_seed(root / "yolo", [seeds["photo.png"], seeds["gray.png"]])
    (folder / "labels" / "000.txt").write_text(text)
    out = fz.attempt("YOLO labels", repr(text), lambda: fz.load_yolo_like_edgeres(folder), ("000.txt", "yolo"), folder)
    shutil.rmtree(root)
    assert out.kind != "problem", out
