"""Session fixtures for the INT8 tests: one small REAL trained digits ResNet-18, calibrated once, built once.

Load it from a test module with ``pytest_plugins = ["fixtures_quant"]``: registered as a plugin, each
fixture is made once per session however many modules use it. Everything here is read-only for tests;
copy a folder before changing it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from helpers import run_cli

pytest_plugins = ["fixtures_models"]  # digits_data

# Two epochs of 40 steps of 64 images on 32x32 digits, in one torch thread: about 20 s, about 95% val top-1.
# No label smoothing: it trains the top-two logit gap towards a fixed size and leaves more near-ties, where
# any one-LSB difference between two correct INT8 implementations (an int32 bias, one more rounding before a
# residual Add) flips the prediction.
TRAIN_EPOCHS = 2
TRAIN_STEPS = 40
MIN_VAL_TOP1 = 90.0
CALIB_IMAGES = 512


@contextlib.contextmanager
def one_torch_thread():
    """Run torch on one thread, then restore the count. Two threads on two cores that other processes also use
    stall each other (measured here: 20 vs 280 training images/s), and the thread count changes float sums, so
    results would depend on the machine's load."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def quant_digits(digits_data) -> Path:
    """The bundled real MNIST digits as ``train/`` (4,000) and ``val/`` (1,000) ImageFolder trees of 32x32 PNGs
    (``fixtures_models.digits_data``: written once for the whole session)."""
    return digits_data


@pytest.fixture(scope="session")
def quant_model(tmp_path_factory, quant_digits) -> Path:
    """The best checkpoint of a short real training run (resnet18, 10 classes) that reaches >= 90% val top-1."""
    from edgeres.train import TrainConfig, train

    out = tmp_path_factory.mktemp("quant_train") / "run"
    with one_torch_thread():
        summary = train(TrainConfig(data=quant_digits, out=out, epochs=TRAIN_EPOCHS, img_size=32, label_smoothing=0.0,
                                    max_steps_per_epoch=TRAIN_STEPS, progress=False, seed=0))
    assert summary["best_top1"] >= MIN_VAL_TOP1, f"fixture model reached only {summary['best_top1']:.1f}% val top-1"
    return out / "best.safetensors"


@pytest.fixture(scope="session")
def quant_calib(tmp_path_factory, quant_model, quant_digits):
    """``run_calibration`` of ``quant_model`` on 512 real training digits (entropy): a CalibResult whose folder
    holds scales.json, model.fp32.onnx and model.qdq.onnx."""
    from edgeres.quant.workflow import CalibConfig, run_calibration

    out = tmp_path_factory.mktemp("quant_calib") / "r18-entropy"
    result = run_calibration(CalibConfig(model=quant_model, data=quant_digits / "train", out=out, method="entropy",
                                         num_images=CALIB_IMAGES, progress=False))
    assert not result.reused
    return result


@pytest.fixture(scope="session")
def quant_int8_engine(tmp_path_factory, quant_model, quant_calib) -> Path:
    """The INT8 CPU engine folder built by the real CLI: ``edgeres build --precision int8 --calib ...``."""
    work = tmp_path_factory.mktemp("quant_engine")
    out = work / "engines" / "r18-int8"
    proc = run_cli("build", "--model", quant_model, "--precision", "int8", "--backend", "onnxruntime",
                   "--calib", quant_calib.folder, "--out", out, cwd=work)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="session")
def quant_val(quant_model, quant_digits):
    """The val split (1,000 real digits) pre-processed for the model: an EvalImages."""
    from edgeres.data.imagefolder import load_eval_split
    from edgeres.evaluate import EvalImages
    from edgeres.models.checkpoint import load_checkpoint

    return EvalImages(load_eval_split(quant_digits), load_checkpoint(quant_model).config.preprocess)

