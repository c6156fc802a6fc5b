"""Session fixtures for the deploy tests: small engines built from the session's trained classifier
(``fixtures_models.trained_checkpoint`` and its FP32 ``trained_engine``) and detector (``fixtures_detect``),
plus real images to run them on.

Nothing is trained here. Load with ``pytest_plugins = ["fixtures_deploy"]``; everything is read-only.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import made_once

pytest_plugins = ["fixtures_detect", "fixtures_models"]


@pytest.fixture(scope="session")
def cls_checkpoint(trained_checkpoint) -> Path:
    """A resnet18 really trained on the real digits (10 classes, 32x32)."""
    return trained_checkpoint


@pytest.fixture(scope="session")
def cls_fp32_engine(trained_engine) -> Path:
    """The trained digits classifier as an FP32 ONNX Runtime engine (max batch 32)."""
    return trained_engine


@pytest.fixture(scope="session")
def cls_calibration(tmp_path_factory, cls_checkpoint, digits_data) -> Path:
    """Min-max calibration of the classifier on 64 real training digits."""
    from edgeres.quant.workflow import CalibConfig, run_calibration

    def make(folder: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fewer than 500 images: warned about elsewhere
            run_calibration(CalibConfig(model=cls_checkpoint, data=digits_data / "train", out=folder / "digits-minmax",
                                        method="minmax", num_images=64, progress=False))

    return made_once(tmp_path_factory, "deploy_calib", make) / "digits-minmax"


@pytest.fixture(scope="session")
def cls_int8_engine(tmp_path_factory, cls_checkpoint, cls_calibration) -> Path:
    from edgeres.build import BuildConfig, build_engine

    out = tmp_path_factory.mktemp("deploy_cls_int8") / "digits-int8"
    build_engine(
        BuildConfig(
            model=cls_checkpoint, out=out, backend="onnxruntime", precision="int8", calib=cls_calibration, max_batch=4
        ),
        progress=False,
    )
    return out


@pytest.fixture(scope="session")
def cls_openvino_engine(tmp_path_factory, cls_checkpoint, cls_calibration) -> Path:
    from edgeres.build import BuildConfig, build_engine

    out = tmp_path_factory.mktemp("deploy_cls_ov") / "digits-ov"
    build_engine(
        BuildConfig(
            model=cls_checkpoint, out=out, backend="openvino", precision="int8", calib=cls_calibration, max_batch=4
        ),
        progress=False,
    )
    return out


@pytest.fixture(scope="session")
def digit_images(digits_data) -> list[np.ndarray]:
    """20 real validation digits (BGR uint8, 2 per class) as files decode them."""
    from edgeres.processing import read_image

    files = [p for d in sorted((digits_data / "val").iterdir()) for p in sorted(d.glob("*.png"))[:2]]
    return [read_image(p) for p in files]


@pytest.fixture(scope="session")
def scene_images(scenes_data) -> list[np.ndarray]:
    """8 real digit-scene validation images (BGR uint8)."""
    from edgeres.processing import read_image

    files = sorted((scenes_data / "val").rglob("*.png"))[:8] or sorted((scenes_data / "val").rglob("*.jpg"))[:8]
    assert files, f"no validation images under {scenes_data / 'val'}"
    return [read_image(p) for p in files]
