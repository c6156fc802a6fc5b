"""``edgeres build``: engine folders with manifests, refused combinations, atomic results, --uint8-input parity."""

from __future__ import annotations

import importlib.util
import json
import shlex
import shutil

import numpy as np
import pytest
from engine_helpers import copy_engine, engine_files, val_digit_files
from helpers import assert_user_error, files_in, run_cli

from edgeres.build import BuildConfig, build_engine
from edgeres.errors import EdgeresError
from edgeres.models.checkpoint import file_sha256

pytest_plugins = ["fixtures_models"]

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def test_cli_build_writes_engine_and_manifest(cli_engine, trained_checkpoint):
    """cli_engine is ``edgeres build --precision fp32 --backend onnxruntime --out engines/digits-b2
    --max-batch 2 --opt-level all`` (see fixtures_models)."""
    import onnx

    assert files_in(cli_engine) == ["digits-b2.manifest.json", "digits-b2.onnx"]
    assert files_in(cli_engine.parent) == ["digits-b2"]  # no temp folder, no .old folder
    engine_file, manifest_file = engine_files(cli_engine)
    m = json.loads(manifest_file.read_text())
    assert m["precision"] == "fp32" and m["backend"]["name"] == "onnxruntime"
    assert m["backend"]["saved_opt_level"] == "all" and m["backend"]["isa_bound"] is True
    assert m["input"] == {"name": "input", "shape": [-1, 3, 32, 32], "dtype": "float32", "max_batch": 2}
    assert m["export"]["exporter"] == "torchscript" and m["export"]["opset"] == 17
    assert m["export"]["max_abs_diff"] <= m["export"]["tolerance"]
    assert m["source"]["sha256"] == file_sha256(trained_checkpoint)
    assert m["engine"]["sha256"] == file_sha256(engine_file)
    assert m["build_options"]["max_batch"] == 2 and m["build_options"]["opt_level"] == "all"
    cmd = shlex.split(m["build_command"])
    assert cmd[:2] == ["edgeres", "build"]
    assert cmd[cmd.index("--out") + 1] == str(cli_engine.resolve())
    assert cmd[cmd.index("--max-batch") + 1] == "2" and cmd[cmd.index("--opt-level") + 1] == "all"
    graph = onnx.load(str(engine_file), load_external_data=False).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert graph.input[0].name == "input" and dims == ["batch", 3, 32, 32]


@pytest.mark.skipif(HAS_TENSORRT, reason="with TensorRT installed, --backend auto may pick it")
def test_fp16_refused_on_cpu_only_machine(trained_checkpoint, tmp_path):
    proc = run_cli("build", "--model", trained_checkpoint, "--precision", "fp16", "--out", "engines/r18-fp16",
                   cwd=tmp_path)
    assert_user_error(proc, "FP16 needs a GPU", "--precision fp32")
    assert files_in(tmp_path) == []  # refused before anything was created
    with pytest.raises(EdgeresError, match="FP16 needs a GPU"):
        build_engine(BuildConfig(model=trained_checkpoint, out=tmp_path / "x", precision="fp16",
                                 backend="onnxruntime"))
    assert files_in(tmp_path) == []


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed here")
def test_tensorrt_backend_names_the_missing_extra(trained_checkpoint, tmp_path):
    proc = run_cli("build", "--model", trained_checkpoint, "--precision", "fp16", "--backend", "tensorrt",
                   "--out", "engines/r18-fp16", cwd=tmp_path)
    assert_user_error(proc, "'tensorrt' is not installed", "pip install 'edgeres[tensorrt]'")
    assert files_in(tmp_path) == []


def test_failed_build_leaves_nothing_behind(trained_checkpoint, tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(trained_checkpoint.read_bytes()[:4096])
    proc = run_cli("build", "--model", broken, "--precision", "fp32", "--backend", "onnxruntime",
                   "--out", "engines/broken", cwd=tmp_path)
    assert_user_error(proc, "corrupt or unreadable checkpoint", "broken.safetensors")
    assert not (tmp_path / "engines" / "broken").exists()
    assert not (tmp_path / "engines").exists() or files_in(tmp_path / "engines") == []


def test_failed_rebuild_keeps_the_old_engine(trained_engine, trained_checkpoint, tmp_path, monkeypatch):
    """A build that fails half-way (after export wrote files) leaves no temp folder and, with --force, the
    engine it was going to replace untouched."""
    import edgeres.onnx_model.export

    out = copy_engine(trained_engine, tmp_path / "engines" / trained_engine.name)
    before = {p.name: file_sha256(p) for p in out.iterdir()}

    def verify_says_mismatch(*args, **kwargs):
        return 0.25, 10

    monkeypatch.setattr(edgeres.onnx_model.export, "verify_against_torch", verify_says_mismatch)
    with pytest.raises(EdgeresError, match=r"export does not match torch: max abs difference 0\.25 on 10 real "
                                           r"images exceeds the tolerance 0\.001"):
        build_engine(BuildConfig(model=trained_checkpoint, out=out, backend="onnxruntime", force=True))
    assert files_in(tmp_path / "engines") == [trained_engine.name]
    assert {p.name: file_sha256(p) for p in out.iterdir()} == before


def test_existing_folders_and_bad_options_are_refused(trained_checkpoint, trained_engine, tmp_path):
    def build(**kw):
        cfg = {"model": trained_checkpoint, "out": tmp_path / "engines" / "e", "backend": "onnxruntime", **kw}
        return build_engine(BuildConfig(**cfg))

    with pytest.raises(EdgeresError, match="unknown precision 'int4'"):
        build(precision="int4")
    with pytest.raises(EdgeresError, match="unknown --opt-level 'max'; accepted: basic, extended, all"):
        build(opt_level="max")
    with pytest.raises(EdgeresError, match="--max-batch must be at least 1, got 0"):
        build(max_batch=0)
    with pytest.raises(EdgeresError, match="model checkpoint not found"):
        build(model=tmp_path / "missing.safetensors")
    with pytest.raises(EdgeresError, match="unknown backend 'tflite'"):
        build(backend="tflite")

    existing = copy_engine(trained_engine, tmp_path / "engines" / "existing")
    with pytest.raises(EdgeresError, match="already exists; pass --force to replace that engine"):
        build(out=existing)
    # --force replaces engine folders only: a mistyped --out must not delete someone's files
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.tex").write_text("years of work")
    with pytest.raises(EdgeresError, match=r"not an edgeres engine folder .*refusing to replace it even with --force"):
        build(out=notes, force=True)
    assert (notes / "thesis.tex").read_text() == "years of work"
    a_file = tmp_path / "engine.onnx"
    a_file.write_bytes(b"x")
    with pytest.raises(EdgeresError, match="exists and is not a folder"):
        build(out=a_file, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engine.onnx", "engines", "notes"]
    assert files_in(tmp_path / "engines") == ["existing"]


def test_uint8_input_gives_the_float_path_predictions(trained_checkpoint, trained_engine, digits_data, tmp_path):
    """--uint8-input puts normalization in the network; it must classify real images exactly as the float path.
    Built with --force over an older engine folder, which it replaces completely."""
    import onnx
    from onnx import TensorProto

    from edgeres.data.samples import reference_images
    from edgeres.engine import open_engine
    from edgeres.processing import preprocess, read_image

    out = copy_engine(trained_engine, tmp_path / "engines" / "digits-u8")
    proc = run_cli("build", "--model", trained_checkpoint, "--precision", "fp32", "--backend", "onnxruntime",
                   "--uint8-input", "--out", out, "--force", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    engine_file, manifest_file = engine_files(out)
    manifest = json.loads(manifest_file.read_text())
    assert files_in(out) == ["digits-u8.manifest.json", "digits-u8.onnx"]
    assert files_in(out.parent) == ["digits-u8"]
    assert manifest["input"]["dtype"] == "uint8" and manifest["input"]["shape"] == [-1, 32, 32, 3]
    assert manifest["preprocess"]["normalize_in_network"] is True and manifest["preprocess"]["layout"] == "NHWC"
    assert manifest["export"]["normalize_in_network"] is True
    assert manifest["export"]["max_abs_diff"] <= manifest["export"]["tolerance"]
    graph_input = onnx.load(str(engine_file), load_external_data=False).graph.input[0]
    assert graph_input.type.tensor_type.elem_type == TensorProto.UINT8

    files = val_digit_files(digits_data, per_class=5)
    images = [read_image(p) for p, _ in files] + reference_images(n_digits=0)
    logits = {}
    for name, folder in (("float", trained_engine), ("uint8", out)):
        with open_engine(folder, threads=1) as engine:
            x = preprocess(images, engine.preprocess)
            assert x.dtype == (np.uint8 if name == "uint8" else np.float32)
            logits[name] = np.concatenate([engine.runner.infer(x[i:i + 32])["logits"] for i in range(0, len(x), 32)])
    assert np.abs(logits["uint8"] - logits["float"]).max() < 1e-3
    np.testing.assert_array_equal(logits["uint8"].argmax(1), logits["float"].argmax(1))
    labels = np.array([d for _, d in files])
    assert (logits["uint8"][: len(files)].argmax(1) == labels).mean() >= 0.8


@pytest.mark.slow  # CI runs it (.ci/run: pytest -m slow)
def test_stale_engine_names_the_command_that_rebuilds_it(trained_checkpoint, digits_data, tmp_path):
    """Retraining the checkpoint makes its engine stale; the error quotes a build command that really fixes it."""
    from edgeres.backends.torch.loader import ModelLoader
    from edgeres.backends.torch.runner import TorchRunner
    from edgeres.engine import check_engine
    from edgeres.manifest import read_manifest
    from edgeres.models.checkpoint import load_checkpoint, save_checkpoint
    from edgeres.predict import predict_files, predict_images
    from edgeres.processing import read_image
    from edgeres.tasks import get_task

    ckpt = tmp_path / "run" / "best.safetensors"
    ckpt.parent.mkdir()
    shutil.copy(trained_checkpoint, ckpt)
    proc = run_cli("build", "--model", ckpt, "--precision", "fp32", "--backend", "onnxruntime", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "engines" / "r18-fp32"  # the default name outside a workspace
    assert files_in(folder) == ["r18-fp32.manifest.json", "r18-fp32.onnx"]

    loaded = load_checkpoint(ckpt)
    model = loaded.build_model()
    model.fc.bias.data[3] += 5.0  # "retrained": now it says 3 far more often
    save_checkpoint(ckpt, model, loaded.config)
    digit = val_digit_files(digits_data, per_class=1)[0][0]

    stale = run_cli("predict", "--engine", folder, digit, cwd=tmp_path)
    line = assert_user_error(stale, "stale", f"the checkpoint {ckpt.resolve()} changed",
                             "rebuild it with: edgeres build")
    command = shlex.split(line.split("rebuild it with: ")[1])
    assert command[:2] == ["edgeres", "build"]

    rebuilt = run_cli(*command[1:], cwd=tmp_path / "run")  # the quoted command works from any folder
    assert rebuilt.returncode == 0, rebuilt.stderr
    engine_file, manifest_file = engine_files(folder)
    assert check_engine(engine_file, read_manifest(manifest_file)) == []
    assert files_in(tmp_path / "engines") == ["r18-fp32"]
    top = predict_files(folder, [digit], options={"top_k": 1})[0]["predictions"][0]
    task = get_task("classify")
    with TorchRunner(ModelLoader(ckpt)) as runner:
        want = predict_images(runner, loaded.config.preprocess, task, loaded.config.class_names, [read_image(digit)],
                              {"top_k": 1})
    want = task.to_json(want[0], loaded.config.class_names)
    assert top["label"] == want[0]["label"]
    assert top["score"] == pytest.approx(want[0]["score"], abs=1e-4)
