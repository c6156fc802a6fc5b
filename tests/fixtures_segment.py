"""Session-scoped segmentation data, a really trained segmenter and its engines.

Load with ``pytest_plugins = ["fixtures_segment"]``. Read-only for tests: copy before changing anything.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures_models import one_torch_thread
from helpers import made_once

pytest_plugins = ["fixtures_models"]  # trained_checkpoint: the backbone the segmenter starts from

MASK_SIZE = 64
MIN_FIXTURE_MIOU = 0.15  # digits found, not only the background (that alone scores about 0.085 of 11 classes)


@pytest.fixture(scope="session")
def masks_data(tmp_path_factory) -> Path:
    """A small digit-masks set: real MNIST strokes on real photo crops, 64x64, palette masks (train 400, val 60)."""
    from edgeres.data.digit_masks import write_digit_masks

    return made_once(tmp_path_factory, "masks", lambda out: write_digit_masks(
        out / "digit-masks", size=MASK_SIZE, train=400, val=60, seed=0, progress=False)) / "digit-masks"


@pytest.fixture(scope="session")
def trained_segmenter(tmp_path_factory, masks_data, trained_checkpoint) -> Path:
    """A seg_resnet18 really trained on ``masks_data``: 6 epochs of 50 steps at 64x64 from the backbone of the suite's
    digits classifier. On the loaded 2-core EPYC (AVX-512 VNNI, one torch thread): val mIoU 0.19 after 6 and 0.29
    after 10 such epochs; too short to be good, long enough that every class map holds digits."""
    from edgeres.train import TrainConfig, train

    def make(folder: Path) -> None:
        with one_torch_thread():  # the other xdist worker runs tests meanwhile: two threads would stall each other
            summary = train(TrainConfig(data=masks_data, out=folder / "run", arch="resnet18", task="segment", epochs=6,
                                        init_from=trained_checkpoint, img_size=MASK_SIZE, batch_size=8,
                                        optimizer="adamw", lr=3e-3, weight_decay=1e-4, label_smoothing=0.0,
                                        progress=False, seed=0))
        assert summary["best_val_miou"] >= MIN_FIXTURE_MIOU, summary

    return made_once(tmp_path_factory, "segmenter", make) / "run" / "best.safetensors"


@pytest.fixture(scope="session")
def segment_calibration(tmp_path_factory, trained_segmenter, masks_data) -> Path:
    """Entropy calibration of the segmenter on 128 real training images: given the split folder, the task leaves
    its masks/ out."""
    import warnings

    from edgeres.quant.workflow import CalibConfig, run_calibration

    def make(folder: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_calibration(CalibConfig(model=trained_segmenter, data=masks_data / "train", out=folder / "seg-entropy",
                                        num_images=128, progress=False))

    return made_once(tmp_path_factory, "seg_calib", make) / "seg-entropy"


@pytest.fixture(scope="session")
def segment_engines(tmp_path_factory, trained_segmenter, segment_calibration) -> dict[str, Path]:
    """FP32 and INT8 ONNX Runtime engines of the trained segmenter."""
    from edgeres.build import BuildConfig, build_engine
    from edgeres.engine import resolve

    def make(root: Path) -> None:
        build_engine(BuildConfig(model=trained_segmenter, out=root / "fp32", backend="onnxruntime", max_batch=8),
                     progress=False)
        build_engine(BuildConfig(model=trained_segmenter, out=root / "int8", backend="onnxruntime", max_batch=8,
                                 precision="int8", calib=segment_calibration), progress=False)

    root = made_once(tmp_path_factory, "seg_engines", make)
    return {name: resolve(root / name)[0] for name in ("fp32", "int8")}  # the engine files
