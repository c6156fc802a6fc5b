"""Session-scoped detection data, a really trained detector and its engines.

Load with ``pytest_plugins = ["fixtures_detect"]``. Read-only for tests: copy before changing anything.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures_models import one_torch_thread
from helpers import made_once

pytest_plugins = ["fixtures_models"]  # trained_checkpoint: the backbone the detector starts from

SCENE_SIZE = 64


@pytest.fixture(scope="session")
def scenes_data(tmp_path_factory) -> Path:
    """A small digit-scenes set: real MNIST digits on real photo crops, 64x64, COCO boxes (train 600, val 80)."""
    from edgeres.data.digit_scenes import write_digit_scenes

    return made_once(tmp_path_factory, "scenes", lambda out: write_digit_scenes(
        out / "digit-scenes", size=SCENE_SIZE, train=600, val=80, seed=0, progress=False)) / "digit-scenes"


@pytest.fixture(scope="session")
def trained_detector(tmp_path_factory, scenes_data, trained_checkpoint) -> Path:
    """A CenterNet ResNet-18 really trained on ``scenes_data``: 5 short epochs at 64x64 from the backbone of the
    suite's digits classifier. Measured on one AMD EPYC: mAP@0.5 0.38 in 47 s (AVX-512, bf16) and 0.39 in 46 s
    (oneDNN capped at AVX2, float32), where 8 epochs from scratch took 72 s and 114 s for 0.38 / 0.40."""
    from edgeres.train import TrainConfig, train

    def make(folder: Path) -> None:
        with one_torch_thread():  # the other xdist worker runs tests meanwhile: two threads would stall each other
            summary = train(TrainConfig(data=scenes_data, out=folder / "run", arch="resnet18", task="detect", epochs=5,
                                        init_from=trained_checkpoint, img_size=SCENE_SIZE, batch_size=32,
                                        optimizer="adamw", lr=2e-3, weight_decay=1e-4, progress=False, seed=0))
        # The engine-vs-torch tests compare real boxes: the detector must find digits, not noise.
        assert summary["best_val_map50"] >= 0.3, summary

    return made_once(tmp_path_factory, "detector", make) / "run" / "best.safetensors"


@pytest.fixture(scope="session")
def detect_fp32_engine(tmp_path_factory, trained_detector) -> Path:
    from edgeres.build import BuildConfig, build_engine

    return made_once(tmp_path_factory, "det_engines", lambda out: build_engine(
        BuildConfig(model=trained_detector, out=out / "det-fp32", backend="onnxruntime", max_batch=16),
        progress=False)) / "det-fp32"


@pytest.fixture(scope="session")
def detect_calibration(tmp_path_factory, trained_detector, scenes_data) -> Path:
    """Entropy calibration of the detector on 256 real training scenes."""
    import warnings

    from edgeres.quant.workflow import CalibConfig, run_calibration

    def make(folder: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fewer than 500 images: the warning is tested elsewhere
            run_calibration(CalibConfig(model=trained_detector, data=scenes_data / "train", out=folder / "det-entropy",
                                        num_images=256, progress=False))

    return made_once(tmp_path_factory, "det_calib", make) / "det-entropy"


@pytest.fixture(scope="session")
def detect_int8_engine(tmp_path_factory, trained_detector, detect_calibration) -> Path:
    from edgeres.build import BuildConfig, build_engine

    return made_once(tmp_path_factory, "det_engines_int8", lambda out: build_engine(
        BuildConfig(model=trained_detector, out=out / "det-int8", backend="onnxruntime", precision="int8",
                    calib=detect_calibration, max_batch=16), progress=False)) / "det-int8"
