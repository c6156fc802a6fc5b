"""``edgeres calibrate`` and ``build --precision int8`` as users run them: real images or a clear error, reuse of
matching scales, nothing overwritten by mistake, and the workspace short form."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_user_error, run_cli, write_digit_folder

pytest_plugins = ["fixtures_quant"]


def _snapshot(folder: Path) -> dict:
    """{file name: (bytes, mtime_ns)} of every file in ``folder``."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(Path(folder).iterdir()) if p.is_file()}


def _calibrate(model: Path, data: Path, out: Path, *extra, cwd: Path):
    return run_cli("calibrate", "--model", model, "--data", data, "--out", out, "--quiet", *extra, cwd=cwd)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    """30 real 32x32 digits (0, 1, 2): fewer than the 500 calibration should have."""
    return write_digit_folder(tmp_path_factory.mktemp("calib_small") / "images", digits=(0, 1, 2), per_class=10)


def test_missing_data_folder_is_an_error_not_random_data(quant_model, tmp_path):
    out = tmp_path / "calibration" / "r18-minmax"
    proc = _calibrate(quant_model, tmp_path / "no-such-folder", out, "--method", "minmax", cwd=tmp_path)
    assert_user_error(proc, "calibration data folder not found", "no-such-folder", "real images")
    assert not out.exists()


def test_empty_data_folder_is_an_error(quant_model, tmp_path):
    data = tmp_path / "images"
    (data / "cats").mkdir(parents=True)
    (data / "README.txt").write_text("images go here\n")
    (data / ".hidden.png").write_bytes(b"")  # hidden files are not calibration images
    out = tmp_path / "calibration" / "r18-minmax"
    proc = _calibrate(quant_model, data, out, "--method", "minmax", cwd=tmp_path)
    assert_user_error(proc, "no images in", str(data))
    assert not out.exists()


def test_no_data_outside_a_workspace_is_an_error(quant_model, tmp_path):
    proc = run_cli("calibrate", "--model", quant_model, "--quiet", cwd=tmp_path)
    assert_user_error(proc, "no --data given", "real images")
    assert list(tmp_path.iterdir()) == []


def test_fewer_images_than_num_images_is_an_error(quant_model, small_set, tmp_path):
    out = tmp_path / "calibration" / "r18-minmax"
    proc = _calibrate(quant_model, small_set, out, "--method", "minmax", "--num-images", "50", cwd=tmp_path)
    assert_user_error(proc, "has 30 images but --num-images 50", "--num-images 30")
    assert not out.exists()


def test_fewer_than_500_images_calibrates_with_a_warning(quant_model, small_set, tmp_path):
    out = tmp_path / "calibration" / "r18-minmax"
    proc = _calibrate(quant_model, small_set, out, "--method", "minmax", "--num-images", "30", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "30 images" in warnings[0] and "500" in warnings[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"wrote {out}" in " ".join(proc.stdout.split())
    from edgeres.quant.scales import Scales

    scales = Scales.load(out / "scales.json")
    assert scales.method == "minmax" and scales.data["images"] == 30
    assert {p.name for p in out.iterdir()} == {"scales.json", "model.fp32.onnx", "model.qdq.onnx"}


def test_images_much_smaller_than_the_input_are_refused(quant_model, tmp_path):
    data = write_digit_folder(tmp_path / "tiny", digits=(0, 1), per_class=5, size=8)  # 8x8 for a 32x32 network
    out = tmp_path / "calibration" / "r18-minmax"
    proc = _calibrate(quant_model, data, out, "--method", "minmax", "--num-images", "10", cwd=tmp_path)
    assert_user_error(proc, "is 8x8", "less than half the network input 32x32")
    assert not out.exists()


@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_images_are_refused(quant_model, small_set, tmp_path, channels):
    import cv2

    data = shutil.copytree(small_set, tmp_path / "images")
    shape = (32, 32) if channels == 1 else (32, 32, 3)
    bad = data / "1" / "deep.png"
    assert cv2.imwrite(str(bad), np.random.default_rng(0).integers(0, 65535, shape, dtype=np.uint16))
    out = tmp_path / "calibration" / "r18-minmax"
    proc = _calibrate(quant_model, data, out, "--method", "minmax", "--num-images", "31", cwd=tmp_path)
    assert_user_error(proc, "deep.png", "uint16", "8-bit grayscale, RGB or RGBA")
    assert not out.exists()


def test_same_model_data_and_method_reuse_the_scales(quant_model, quant_digits, quant_calib, tmp_path):
    out = shutil.copytree(quant_calib.folder, tmp_path / "r18-entropy")
    before = _snapshot(out)
    proc = _calibrate(quant_model, quant_digits / "train", out, "--method", "entropy", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "reused" in proc.stdout
    assert _snapshot(out) == before  # scales.json and the Q/DQ file: same bytes, same mtime


def test_reusing_a_calibration_from_an_earlier_writer_rewrites_its_qdq_file(quant_model, quant_digits, quant_calib,
                                                                           wide_stem_calib, tmp_path):
    """A calibration folder whose Q/DQ file an earlier edgeres wrote (stem weights to 127) is reused with its scales
    and its Q/DQ file rewritten by today's writer (stem weights on -64..64), with a note; nothing else changes."""
    out = shutil.copytree(wide_stem_calib.folder, tmp_path / "r18-entropy")
    scales_before = (out / "scales.json").read_bytes()
    assert (out / "model.qdq.onnx").read_bytes() != quant_calib.qdq_onnx.read_bytes()
    proc = _calibrate(quant_model, quant_digits / "train", out, "--method", "entropy", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "reused" in proc.stdout and "rewrote" in proc.stderr and "Traceback" not in proc.stderr
    assert (out / "model.qdq.onnx").read_bytes() == quant_calib.qdq_onnx.read_bytes()
    assert (out / "scales.json").read_bytes() == scales_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r18-entropy"]  # the rewrite left nothing beside it


def test_another_method_into_the_same_folder_is_refused_without_force(quant_model, quant_digits, quant_calib,
                                                                        tmp_path):
    out = shutil.copytree(quant_calib.folder, tmp_path / "r18-entropy")
    before = _snapshot(out)
    proc = _calibrate(quant_model, quant_digits / "train", out, "--method", "minmax", cwd=tmp_path)
    assert_user_error(proc, "another model, data or method", "--force")
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r18-entropy"]  # no half-written folder beside it


def test_build_with_scales_of_another_model_is_refused(quant_model, quant_calib, tmp_path):
    from edgeres.models.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(quant_model)
    other_model = ckpt.build_model()
    other_model.fc.bias.data += 0.01  # another model: same architecture and export, other weights
    other = tmp_path / "other.safetensors"
    save_checkpoint(other, other_model, ckpt.config)
    out = tmp_path / "engines" / "other-int8"
    proc = run_cli("build", "--model", other, "--precision", "int8", "--backend", "onnxruntime",
                   "--calib", quant_calib.folder, "--out", out, cwd=tmp_path)
    assert_user_error(proc, "calibrated for another model", "scales.json", "recalibrate")
    assert not out.exists()


def test_build_int8_without_calibration_outside_a_workspace_is_an_error(quant_model, tmp_path):
    proc = run_cli("build", "--model", quant_model, "--precision", "int8", "--backend", "onnxruntime", cwd=tmp_path)
    assert_user_error(proc, "--precision int8 needs a calibration", "--calib", "--calib-data")
    assert list(tmp_path.iterdir()) == []


def test_build_int8_in_a_workspace_calibrates_and_builds(quant_model, quant_digits, tmp_path):
    import json

    import onnx

    from edgeres.quant.cpu import float_compute_nodes

    ws = tmp_path / "ws"
    ws.mkdir()
    proc = run_cli("init", "--model", quant_model, cwd=ws)
    assert proc.returncode == 0, proc.stderr
    images = ws / "calibration" / "images"
    for cls in sorted((quant_digits / "train").iterdir()):  # 60 real digits per class: 600 images
        (images / cls.name).mkdir(parents=True)
        for src in sorted(cls.glob("*.png"))[:60]:
            shutil.copy(src, images / cls.name / src.name)

    proc = run_cli("build", "--precision", "int8", cwd=ws)  # auto: OpenVINO (x86, installed) or ONNX Runtime
    assert proc.returncode == 0, proc.stderr
    engine_dir = ws / "engines" / "r18-int8"
    assert sorted(p.name for p in engine_dir.iterdir()) == ["r18-int8.manifest.json", "r18-int8.onnx"]
    calib = ws / "calibration" / "r18-entropy"
    assert {"scales.json", "model.qdq.onnx", "model.fp32.onnx"} <= {p.name for p in calib.iterdir()}
    manifest = json.loads((engine_dir / "r18-int8.manifest.json").read_text())
    assert manifest["precision"] == "int8"
    assert manifest["calibration"]["folder"] == str(calib.resolve())
    assert manifest["calibration"]["method"] == "entropy" and manifest["calibration"]["images"] == 512
    if manifest["backend"]["name"] == "onnxruntime":
        assert float_compute_nodes(onnx.load(str(engine_dir / "r18-int8.onnx"))) == []
    assert manifest["backend"]["integer_kernels"] == 21
    # the calibration wrote the stem's weights on -64..64: every pair sum fits int16 with the stem read whole, on
    # every CPU, so nothing is split
    assert manifest["backend"]["saturation_free"] and not manifest["backend"]["stem_split"]
    assert manifest["backend"]["split_convs"] == []
