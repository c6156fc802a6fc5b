"""Session fixtures for the INT8 tests: one small REAL trained digits ResNet-18, calibrated once, built once.

Load it from a test module with ``pytest_plugins = ["fixtures_quant"]``: registered as a plugin, each
fixture is made once per session however many modules use it. Everything here is read-only for tests;
copy a folder before changing it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import made_once, run_cli

pytest_plugins = ["fixtures_models"]  # digits_data

CALIB_IMAGES = 512


@pytest.fixture(scope="session")
def quant_digits(digits_data) -> Path:
    """The bundled real MNIST digits as ``train/`` (4,000) and ``val/`` (1,000) ImageFolder trees of 32x32 PNGs
    (``fixtures_models.digits_data``: written once for the whole session)."""
    return digits_data


@pytest.fixture(scope="session")
def quant_model(trained_checkpoint) -> Path:
    """The suite's trained digits model (``fixtures_models.trained_checkpoint``: resnet18, >= 90 % val top-1)."""
    return trained_checkpoint


@pytest.fixture(scope="session")
def quant_calib(tmp_path_factory, quant_model, quant_digits):
    """``run_calibration`` of ``quant_model`` on 512 real training digits (entropy): a CalibResult whose folder
    holds scales.json, model.fp32.onnx and model.qdq.onnx."""
    from edgeres.quant.scales import Scales
    from edgeres.quant.workflow import SCALES_FILE, CalibConfig, CalibResult, run_calibration

    def make(folder: Path) -> None:
        result = run_calibration(CalibConfig(model=quant_model, data=quant_digits / "train", out=folder / "r18-entropy",
                                             method="entropy", num_images=CALIB_IMAGES, progress=False))
        assert not result.reused

    out = made_once(tmp_path_factory, "quant_calib", make) / "r18-entropy"
    return CalibResult(out, Scales.load(out / SCALES_FILE), reused=False)


@pytest.fixture(scope="session")
def wide_stem_calib(tmp_path_factory, quant_calib):
    """``quant_calib`` with its Q/DQ artifact as edgeres wrote it before ``quant.signs`` (and as other tools write
    one): the stem's weights on -127..127, so that the CPU engines must split its signed input on CPUs that sum int8
    products in 16-bit pairs. A CalibResult; the same scales."""
    import shutil

    import onnx

    from edgeres.quant.qdq import write_qdq
    from edgeres.quant.workflow import CalibResult

    def make(folder: Path) -> None:
        shutil.copytree(quant_calib.folder, folder / "r18-entropy-wide")
        wide = write_qdq(onnx.load(str(quant_calib.fp32_onnx)), quant_calib.scales, signed_input_qmax=127)
        onnx.save(wide, str(folder / "r18-entropy-wide" / quant_calib.qdq_onnx.name))

    out = made_once(tmp_path_factory, "wide_stem_calib", make) / "r18-entropy-wide"
    return CalibResult(out, quant_calib.scales, reused=True)


@pytest.fixture(scope="session")
def quant_int8_engine(tmp_path_factory, quant_model, quant_calib) -> Path:
    """The INT8 CPU engine folder built by the real CLI: ``edgeres build --precision int8 --calib ...``, in the form
    that is exact on every x86 CPU (``--int8-cpu portable``; the stem reads its input whole, its weights on
    -64..64), whatever CPU the tests run on."""
    def make(work: Path) -> None:
        proc = run_cli("build", "--model", quant_model, "--precision", "int8", "--backend", "onnxruntime",
                       "--int8-cpu", "portable", "--calib", quant_calib.folder, "--out", work / "engines" / "r18-int8",
                       cwd=work)
        assert proc.returncode == 0, proc.stderr

    return made_once(tmp_path_factory, "quant_engine", make) / "engines" / "r18-int8"


@pytest.fixture(scope="session")
def quant_val(quant_model, quant_digits):
    """The val split (1,000 real digits) pre-processed for the model: an EvalImages."""
    from edgeres.data.imagefolder import load_eval_split
    from edgeres.models.checkpoint import load_checkpoint
    from edgeres.tasks.classify.data import EvalImages

    return EvalImages(load_eval_split(quant_digits), load_checkpoint(quant_model).config.preprocess)

