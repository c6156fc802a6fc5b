"""Models users already have, through the real CLI: torchvision state dicts (plain, nested, DDP-prefixed;
ResNet-18 and ResNet-50 with random weights saved by torchvision), torchvision's pretrained weights by name (from
torchvision's cache; offline), and a ResNet exported to ONNX by ``torch.onnx.export`` outside edgeres.

Small inputs (32x32 real MNIST digits) and few calibration images keep every command cheap; the converted models
go to a per-test ``EDGERES_CACHE``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from helpers import assert_user_error, run_cli, write_digit_folder

from edgeres.models.checkpoint import load_checkpoint

CLASSES = ("zero", "one", "two")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Real digits 0-2 as DIR/train (20 each) and DIR/val (5 each), 32x32: a data folder with both splits."""
    root = tmp_path_factory.mktemp("sources") / "digits"
    write_digit_folder(root / "train", digits=(0, 1, 2), per_class=20)
    write_digit_folder(root / "val", digits=(0, 1, 2), per_class=5, offset=100)
    return root


@pytest.fixture(scope="module")
def r18(tmp_path_factory) -> dict:
    """A torchvision ResNet-18 (3 classes, random weights) saved the usual ways: plain state dict, and under
    'state_dict' with DDP's 'module.' prefix."""
    folder = tmp_path_factory.mktemp("r18")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3).eval()
    state = model.state_dict()
    torch.save(state, folder / "r18.pth")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 90}, folder / "r18-ddp.pth")
    return {"model": model, "state": state, "plain": folder / "r18.pth", "ddp": folder / "r18-ddp.pth"}


@pytest.fixture
def env(tmp_path) -> dict:
    """A private model cache and torch hub folder for the subprocesses."""
    return {"EDGERES_CACHE": str(tmp_path / "cache"), "TORCH_HOME": str(tmp_path / "torch")}


def _classes_file(folder: Path, names=CLASSES) -> Path:
    path = folder / "classes.txt"
    path.write_text("\n".join(names) + "\n")
    return path


def test_import_reads_a_ddp_state_dict_and_says_where_each_value_came_from(tmp_path, r18, env):
    layout = "ddp"  # the plain layout goes through every command in the next test
    out = tmp_path / "r18.safetensors"
    proc = run_cli(
        "import",
        r18[layout],
        "--arch",
        "resnet18",
        "--classes",
        _classes_file(tmp_path),
        "--img-size",
        "32",
        "--out",
        out,
        cwd=tmp_path,
        **env,
    )
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "architecture resnet18 from --arch" in text
    assert f"classes 3 (zero, one, two) from --classes {tmp_path / 'classes.txt'}" in text
    assert "input 3x32x32 from --img-size" in text
    assert "mean 0.485, 0.456, 0.406 from torchvision's ImageNet value, the default" in text
    assert ("DDP 'module.' prefix removed" in text) == (layout == "ddp")
    assert ("weights read from its 'state_dict' entry" in text) == (layout == "ddp")
    ckpt = load_checkpoint(out)  # an edgeres checkpoint now: no options needed
    assert ckpt.config.arch == "resnet18" and ckpt.config.class_names == list(CLASSES)
    assert ckpt.config.preprocess.input_size == (32, 32)
    assert ckpt.summary["imported_from"]["origins"]["classes"].startswith("--classes")
    assert all(torch.equal(ckpt.state_dict[k], v) for k, v in r18["state"].items())


def test_state_dict_through_export_calibrate_build_and_eval(tmp_path, r18, data, env):
    source = ["--model", r18["plain"], "--arch", "resnet18", "--img-size", "32"]

    # export: the ONNX computes what the torchvision model computes
    proc = run_cli("export", *source, "--out", tmp_path / "r18.onnx", cwd=tmp_path, **env)
    assert proc.returncode == 0, proc.stderr
    assert "from --arch" in proc.stderr and "as " in proc.stderr  # the summary, on stderr
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    got = ort.InferenceSession(str(tmp_path / "r18.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    with torch.no_grad():
        want = r18["model"](torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got[0], want, atol=1e-4)

    # calibrate: DIR has train/ and val/, so train/ only; the default count is all 60 images there (< 512)
    calib = tmp_path / "calibration" / "r18-minmax"
    proc = run_cli(
        "calibrate", *source, "--data", data, "--method", "minmax", "--out", calib, "--quiet", cwd=tmp_path, **env
    )
    assert proc.returncode == 0, proc.stderr
    assert f"note: calibrating on {data / 'train'}" in proc.stderr
    assert any(line.startswith("warning: calibrating on 60 images") for line in proc.stderr.splitlines())
    scales = json.loads((calib / "scales.json").read_text())
    assert scales["data"]["images"] == 60 and scales["data"]["folder"] == str((data / "train").resolve())

    # build FP32 and INT8 (from that calibration: same converted model, so the scales match it)
    for precision in ("fp32", "int8"):
        extra = ["--calib", calib] if precision == "int8" else []
        proc = run_cli(
            "build",
            *source,
            "--precision",
            precision,
            "--backend",
            "onnxruntime",
            "--out",
            tmp_path / "engines" / f"r18-{precision}",
            *extra,
            cwd=tmp_path,
            **env,
        )
        assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "engines" / "r18-int8" / "r18-int8.manifest.json").read_text())
    assert manifest["arch"] == "resnet18" and manifest["preprocess"]["input_size"] == [32, 32]
    assert "--arch resnet18" in manifest["build_command"] and str(r18["plain"]) in manifest["build_command"]

    # eval: the state dict (classes from the data folder) and the FP32 engine predict the same on real digits
    proc = run_cli("eval", *source, "--data", data, "--json", cwd=tmp_path, **env)
    assert proc.returncode == 0, proc.stderr
    torch_metrics = json.loads(proc.stdout)
    proc = run_cli("eval", "--engine", tmp_path / "engines" / "r18-fp32", "--data", data, "--json", cwd=tmp_path, **env)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    assert metrics["images"] == 15 and metrics["predictions"] == torch_metrics["predictions"]


@pytest.mark.slow
def test_resnet50_ddp_state_dict_builds_int8_and_evaluates(tmp_path, data, env):
    torch.manual_seed(1)
    model = torchvision.models.resnet50(num_classes=3)
    path = tmp_path / "r50.pth"
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    engine = tmp_path / "engines" / "r50-int8"
    proc = run_cli(
        "build",
        "--model",
        path,
        "--arch",
        "resnet50",
        "--img-size",
        "32",
        "--precision",
        "int8",
        "--backend",
        "onnxruntime",
        "--calib-data",
        data,
        "--calib-method",
        "minmax",
        "--out",
        engine,
        cwd=tmp_path,
        **env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "DDP 'module.' prefix removed" in proc.stderr and f"note: calibrating on {data / 'train'}" in proc.stderr
    manifest = json.loads((engine / "r50-int8.manifest.json").read_text())
    assert manifest["arch"] == "resnet50" and manifest["calibration"]["images"] == 60
    proc = run_cli("eval", "--engine", engine, "--data", data, "--json", cwd=tmp_path, **env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["images"] == 15


@pytest.mark.slow  # CI runs it (.ci/run: pytest -m slow)
def test_onnx_from_elsewhere_calibrates_builds_and_benchmarks(tmp_path, r18, data, env):
    """A torchvision ResNet exported by torch.onnx.export outside edgeres: fixed batch 1, its own tensor names."""
    external = tmp_path / "resnet18-ext.onnx"
    torch.onnx.export(
        r18["model"],
        (torch.zeros(1, 3, 32, 32),),
        str(external),
        input_names=["x"],
        output_names=["y"],
        opset_version=17,
        dynamo=False,
    )
    source = ["--model", external, "--classes", _classes_file(tmp_path)]
    calib = tmp_path / "calibration" / "ext"
    proc = run_cli(
        "calibrate",
        *source,
        "--data",
        data / "train",
        "--method",
        "minmax",
        "--num-images",
        "30",
        "--out",
        calib,
        "--quiet",
        cwd=tmp_path,
        **env,
    )
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stderr.split())
    assert "(ONNX classifier)" in text and "input 'x' [1, 3, 32, 32] -> 'input' [batch, 3, 32, 32]" in text
    assert "input 3x32x32 from the ONNX input shape" in text
    for precision in ("fp32", "int8"):
        extra = ["--calib", calib] if precision == "int8" else []
        proc = run_cli(
            "build",
            *source,
            "--precision",
            precision,
            "--backend",
            "onnxruntime",
            "--out",
            tmp_path / "engines" / f"ext-{precision}",
            *extra,
            cwd=tmp_path,
            **env,
        )
        assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "engines" / "ext-int8" / "ext-int8.manifest.json").read_text())
    assert manifest["class_names"] == list(CLASSES) and manifest["calibration"]["images"] == 30

    proc = run_cli(
        "bench",
        "--engine",
        tmp_path / "engines" / "ext-int8",
        *source,
        "--batch",
        "1,2",
        "--duration",
        "0.2",
        "--warmup",
        "0.05",
        "--json",
        cwd=tmp_path,
        **env,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["engines"]
    assert [(r["backend"], r["precision"]) for r in rows] == [("onnxruntime", "int8"), ("onnxruntime", "fp32")]
    assert all(r["results"][0]["throughput_ips"] > 0 for r in rows)

    # eval of the ONNX model (ONNX Runtime; classes from the data folder) predicts what the original file predicts.
    import onnxruntime as ort

    from edgeres.config import PreprocessConfig
    from edgeres.data.imagefolder import load_eval_split
    from edgeres.processing import preprocess, read_image

    images = load_eval_split(data)
    batch = preprocess([read_image(p) for p in images.paths], PreprocessConfig(input_size=(32, 32)))
    session = ort.InferenceSession(str(external), providers=["CPUExecutionProvider"])
    want = [int(session.run(None, {"x": batch[i : i + 1]})[0].argmax()) for i in range(len(batch))]
    proc = run_cli("eval", "--model", external, "--data", data, "--json", cwd=tmp_path, **env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["predictions"] == want

    # qat needs torch weights: said in one line
    proc = run_cli("qat", *source, "--data", data, "--out", tmp_path / "qat", cwd=tmp_path, **env)
    assert_user_error(proc, "needs torch weights", str(external), "is an ONNX model")


def test_torchvision_weights_by_name_from_torchvision_cache(tmp_path, env):
    """--weights IMAGENET1K_V1 reads torchvision's own cache; classes and pre-processing from its metadata."""
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    cached = Path(env["TORCH_HOME"]) / "hub" / "checkpoints" / Path(weights.url).name
    cached.parent.mkdir(parents=True)
    torch.manual_seed(2)
    state = torchvision.models.resnet18().state_dict()  # random weights in the real layout (no download here)
    torch.save(state, cached)
    out = tmp_path / "r18-imagenet.safetensors"
    proc = run_cli("import", "--weights", "IMAGENET1K_V1", "--arch", "resnet18", "--out", out, cwd=tmp_path, **env)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "classes 1000 (tench, goldfish, great white shark, tiger shark, hammerhead, ...)" in text
    assert "from torchvision's ResNet18_Weights.IMAGENET1K_V1 metadata" in text
    assert "Downloading" not in proc.stdout + proc.stderr
    ckpt = load_checkpoint(out)
    assert ckpt.config.class_names == weights.meta["categories"]
    assert ckpt.config.preprocess.input_size == (224, 224)
    assert ckpt.config.preprocess.mean == (0.485, 0.456, 0.406)
    assert all(torch.equal(ckpt.state_dict[k], v) for k, v in state.items())


def test_torchvision_weights_offline_is_one_line(tmp_path, env):
    # A proxy on a closed local port: the download fails at once, online or not.
    offline = {"HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "NO_PROXY": "", "no_proxy": ""}
    proc = run_cli(
        "build",
        "--weights",
        "imagenet",
        "--arch",
        "resnet50",
        "--out",
        tmp_path / "engines" / "r50",
        cwd=tmp_path,
        **env,
        **offline,
    )
    assert_user_error(
        proc,
        "could not download torchvision's ResNet50_Weights.IMAGENET1K_V2",
        "resnet50-11ad3fa6.pth",
        "edgeres import --weights IMAGENET1K_V2 --arch resnet50",
    )
    assert "Downloading" not in proc.stdout + proc.stderr
    assert not (tmp_path / "engines").exists()


def test_init_imports_a_state_dict_into_the_workspace(tmp_path, r18, env):
    ws = tmp_path / "ws"
    proc = run_cli("init", ws, "--model", r18["plain"], "--arch", "resnet18", "--img-size", "32", cwd=tmp_path, **env)
    assert proc.returncode == 0, proc.stderr
    assert (ws / "models" / "r18.safetensors").is_file()
    assert 'checkpoint = "models/r18.safetensors"' in (ws / "edgeres.toml").read_text()
    proc = run_cli("export", "--out", ws / "m.onnx", cwd=ws, **env)  # no options: the workspace's imported model
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ""  # an edgeres checkpoint now: nothing to explain
