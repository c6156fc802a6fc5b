"""``deploy deepstream``: a Gst-nvinfer config, labels, the ONNX (and calibration file) and a pyds app.

What nvinfer gets, and why:

* the ONNX, never an engine built elsewhere alone: nvinfer builds the TensorRT engine on the device and caches
  it at ``model-engine-file`` (the name nvinfer itself would choose), so later starts skip the build. A
  TensorRT engine folder also ships its plan and points ``model-engine-file`` at it; nvinfer rebuilds from
  the ONNX if that plan does not fit the device.
* pre-processing from the manifest through ``normalize.nvinfer_scaling`` (exact, see there).
* INT8: the Q/DQ artifact (explicit quantization, the default), or the FP32 ONNX plus the calibration cache
  (``--int8-from cache``, implicit INT8, TensorRT <= 10). Either way ``int8-calib-file`` names a readable cache:
  nvinfer with ``network-mode=1`` and no readable calibration file silently builds FP16 instead
  (nvdsinfer's model builder); with a Q/DQ network TensorRT ignores the cache and uses the ONNX's scales.
* what differs between tasks comes from the task's ``DeployFacts`` (``edgeres/tasks/<task>/deploy.py``), never
  from its name: classifiers end in a Softmax (nvinfer's ``classifier-threshold`` compares probabilities, the
  network gives logits) and use ``network-type=1``; CenterNet detectors need parsing nvinfer does not have, so
  they use ``network-type=100`` with ``output-tensor-meta=1`` and the app's probe decodes with edgeres's numpy
  decoder. ``deploy.json`` names the decoder and what the app attaches, as data.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgeres import __version__
from edgeres.deploy.folders import check_out_folder, staged_folder
from edgeres.deploy.normalize import STD_INPUT_SUFFIX, input_range, nvinfer_scaling
from edgeres.deploy.source import DeploySource, deployable_tasks, open_source
from edgeres.errors import EdgeresError, require

CONFIG_FILE = "config_infer_primary.txt"
LABELS_FILE = "labels.txt"
ONNX_FILE = "model.onnx"
CACHE_FILE = "calib.cache"
APP_FILE = "deepstream_app.py"
SETTINGS_FILE = "deploy.json"
PROBABILITIES = "probabilities"
INT8_SOURCES = ("qdq", "cache")
NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2, "mixed": 1}  # nvinfer: 0 FP32, 1 INT8, 2 FP16
NVINFER_CLASSIFIER = 1  # network-type: 0 detector, 1 classifier, 2 segmentation, 100 other (raw tensors)
COLOR_FORMAT = {"RGB": 0, "BGR": 1}  # nvinfer model-color-format; 2 is GRAY
SCALING_FILTER = {"nearest": 0, "linear": 1, "cubic": 2}  # NvBufSurfTransformInter_*; "area" has none


@dataclass
class DeepStreamConfig:
    """What ``deploy deepstream`` writes; the CLI fills it."""

    engine: Path
    out: Path
    batch_size: int = 1
    int8_from: str | None = None  # default: the TensorRT engine's own choice, else "qdq"
    tensorrt_version: str | None = None  # for the calibration file header (INT8); default: a TensorRT engine's
    calib: Path | None = None  # the calibration folder, when it moved since the build
    classifier_threshold: float | None = None  # nvinfer classifiers only; default 0.0
    gpu_id: int = 0
    force: bool = False


def deploy_deepstream(cfg: DeepStreamConfig) -> dict:
    """Write the DeepStream folder and return what was written and decided (also saved as ``deploy.json``).

    Raises:
        EdgeresError: an engine or option nvinfer cannot take, or an existing ``--out`` without ``force``.
    """
    src = open_source(cfg.engine)
    facts = src.facts
    scaling = nvinfer_scaling(src.preprocess)
    if cfg.batch_size < 1:
        raise EdgeresError(f"--batch-size must be at least 1, got {cfg.batch_size}")
    fixed = src.fixed_batch
    if fixed is not None and cfg.batch_size != fixed:
        raise EdgeresError(
            f"the engine has a fixed batch of {fixed}; --batch-size {cfg.batch_size} cannot run on it "
            f"(use --batch-size {fixed}, or rebuild with a dynamic batch)"
        )
    if cfg.batch_size > src.max_batch:
        raise EdgeresError(
            f"--batch-size {cfg.batch_size} is above the engine's max batch {src.max_batch}; rebuild "
            f"with 'edgeres build --max-batch {cfg.batch_size}' or lower --batch-size"
        )
    nvinfer_classifier = facts.nvinfer_network_type == NVINFER_CLASSIFIER
    if cfg.classifier_threshold is not None and not nvinfer_classifier:
        takes = deployable_tasks(lambda f: f.nvinfer_network_type == NVINFER_CLASSIFIER)
        raise EdgeresError(
            f"--classifier-threshold is for {', '.join(takes) or 'no'} models (nvinfer classifiers); this one is "
            f"a {src.task} model"
        )
    threshold = 0.0 if cfg.classifier_threshold is None else cfg.classifier_threshold
    if not 0.0 <= threshold <= 1.0:
        raise EdgeresError(f"--classifier-threshold is a probability in [0, 1], got {threshold}")
    pre = src.preprocess
    if pre.channel_order not in COLOR_FORMAT:
        raise EdgeresError(f"channel order '{pre.channel_order}' has no nvinfer model-color-format; accepted: RGB, BGR")
    if pre.resize != "stretch":
        raise EdgeresError(f"resize '{pre.resize}' has no nvinfer equivalent here; edgeres models use 'stretch'")
    separator = facts.label_separator
    if separator != "\n" and any(separator in name for name in src.class_names):
        raise EdgeresError(
            f"a class name contains '{separator}', which separates labels in nvinfer's label file for this "
            f"{src.task} model; rename the class"
        )
    int8_from, trt_version = _int8_choice(cfg, src)
    decoding = src.decoding_settings()
    check_out_folder(cfg.out, cfg.force, "DeepStream folder")

    model, scales = _gpu_onnx(src, int8_from, cfg.calib)
    int8 = NETWORK_MODE[src.precision] == 1
    how = scaling.how
    if scaling.inv_std is not None:
        how += f": {_apply_inv_std(model, scaling.inv_std, int8)}"
    if facts.append_softmax:
        _append_softmax(model)
    output_name = model.graph.output[0].name
    h, w = pre.input_size
    mode = NETWORK_MODE[src.precision]
    engine_cache = f"{ONNX_FILE}_b{cfg.batch_size}_gpu{cfg.gpu_id}_{('fp32', 'int8', 'fp16')[mode]}.engine"
    plan_name = src.engine_file.name if src.engine_backend.TENSORRT_PLAN else None
    prop = {
        "gpu-id": cfg.gpu_id,
        "net-scale-factor": scaling.net_scale_factor,
        "offsets": list(scaling.offsets),
        "model-color-format": COLOR_FORMAT[pre.channel_order],
        "onnx-file": ONNX_FILE,
        "model-engine-file": plan_name or engine_cache,
        "labelfile-path": LABELS_FILE,
        "infer-dims": [3, h, w],
        "batch-size": cfg.batch_size,
        "network-mode": mode,
        "network-type": facts.nvinfer_network_type,
        "network-input-order": 0,  # NCHW
        "process-mode": 1,  # primary: whole frames
        "gie-unique-id": 1,
        "maintain-aspect-ratio": 0,  # edgeres stretches to the input size
        "scaling-filter": SCALING_FILTER.get(pre.interpolation, 1),  # "area": bilinear, said in notes
        "output-blob-names": [output_name],
        "output-tensor-meta": 1,  # the app's probe reads the raw output (every task)
    }
    if int8:
        prop["int8-calib-file"] = CACHE_FILE
    if nvinfer_classifier:
        prop["classifier-threshold"] = threshold
    settings = {
        "edgeres_version": __version__,
        "task": src.task,
        "class_names": src.class_names,
        "input_hw": [h, w],
        "output_name": output_name,
        "max_batch": cfg.batch_size,
        "precision": src.precision,
        "int8_from": int8_from if int8 else None,
        "tensorrt_version": trt_version if int8 else None,
        "normalization": how,
        "output": "probabilities (Softmax added)" if facts.append_softmax else "raw",
        "decoder": facts.decoder,  # what deepstream_app.py decodes the output with
        "attach": facts.attach,  # and what it puts into DeepStream metadata
        **({facts.settings_block: decoding} if facts.settings_block else {}),  # what the decoder reads
        "engine": str(src.engine_file.resolve()),
        "engine_sha256": src.manifest["engine"]["sha256"],
        "files": [CONFIG_FILE, LABELS_FILE, ONNX_FILE, APP_FILE],
        "notes": [],
    }
    if pre.interpolation not in SCALING_FILTER:
        settings["notes"].append(
            f"nvinfer has no '{pre.interpolation}' resize filter; it resizes bilinearly, so "
            "inputs differ slightly from edgeres's pre-processing"
        )
    if plan_name:
        settings["notes"].append(
            f"model-engine-file is the TensorRT plan {plan_name}; nvinfer rebuilds from "
            f"{ONNX_FILE} if the plan does not fit the device's TensorRT or GPU"
        )
    _check_nvinfer_invariants(prop)
    with staged_folder(cfg.out, {"target": "deepstream", **settings}) as tmp:
        import onnx

        onnx.save(model, str(tmp / ONNX_FILE))
        if int8:
            _write_calib_file(
                scales, trt_version, tmp / CACHE_FILE, model.graph.input[0].name, pre, moved=scaling.inv_std is not None
            )
            settings["files"].append(CACHE_FILE)
        if plan_name:
            shutil.copyfile(src.engine_file, tmp / plan_name)
            settings["files"].append(plan_name)
        (tmp / CONFIG_FILE).write_text(nvinfer_config_text(prop, src))
        (tmp / LABELS_FILE).write_text(labels_text(separator, src.class_names))
        shutil.copyfile(Path(__file__).with_name(APP_FILE), tmp / APP_FILE)
        (tmp / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")
        settings["files"].append(SETTINGS_FILE)
    return settings


def _int8_choice(cfg: DeepStreamConfig, src: DeploySource) -> tuple[str | None, str | None]:
    """(Q/DQ or cache, TensorRT version for the calibration file) of an INT8 engine; (None, None) otherwise."""
    from edgeres.backends.trt.versions import TrtVersion

    if NETWORK_MODE[src.precision] != 1:
        if cfg.int8_from is not None:
            raise EdgeresError(f"--int8-from applies to INT8 engines; this engine is {src.precision}")
        return None, None
    backend = src.manifest["backend"]
    int8_from = cfg.int8_from or backend.get("int8_from") or "qdq"
    if int8_from not in INT8_SOURCES:
        raise EdgeresError(f"unknown --int8-from '{int8_from}'; accepted: {', '.join(INT8_SOURCES)}")
    if int8_from == "cache" and src.precision == "mixed":
        raise EdgeresError(
            "--precision mixed keeps layers float in the Q/DQ ONNX; a calibration cache cannot say "
            "that: use --int8-from qdq"
        )
    version = cfg.tensorrt_version or (backend.get("version") if src.engine_backend.TENSORRT_PLAN else None)
    if version is None:
        raise EdgeresError(
            "INT8 for DeepStream writes a calibration file whose header names the device's TensorRT: "
            "pass --tensorrt-version (JetPack 6.0: 8.6.2, JetPack 6.1/6.2: 10.3.0)"
        )
    if TrtVersion.parse(version).major >= 11:
        raise EdgeresError(
            f"TensorRT {version} has no calibration files, and nvinfer's network-mode=1 without one "
            "builds FP16; the DeepStream releases edgeres knows ship TensorRT 8.6 to 10.x"
        )
    return int8_from, version


def _gpu_onnx(src: DeploySource, int8_from: str | None, calib_override: Path | None):
    """(ONNX model for TensorRT, scales or None): the engine's own source files, checked (see ``source``)."""
    import onnx

    from edgeres.quant.scales import Scales

    scales = None
    if NETWORK_MODE[src.precision] == 1:
        folder = src.calibration_folder(calib_override)
        scales = Scales.load(folder / "scales.json")
        if src.precision == "mixed":
            path = src.engine_backend.source_onnx(src.engine_file, src.manifest)
            if path is None or not path.is_file():
                raise EdgeresError(f"the mixed engine's Q/DQ file {path} is missing; rebuild the engine")
        else:
            path = folder / ("model.qdq.onnx" if int8_from == "qdq" else "model.fp32.onnx")
        return onnx.load(str(path)), scales
    if src.engine_backend.TENSORRT_PLAN:
        source = src.engine_backend.source_onnx(src.engine_file, src.manifest)
        if source is None:
            raise EdgeresError(
                f"the TensorRT engine's manifest names no source ONNX, which nvinfer builds from; rebuild "
                f"{src.engine_file.name} with this edgeres"
            )
        if not source.is_file():
            raise EdgeresError(f"the TensorRT engine's source ONNX {source} is missing; rebuild the engine")
        return onnx.load(str(source)), None
    return _fresh_export(src), None


def _fresh_export(src: DeploySource):
    """An FP32 export of the recorded checkpoint (an ONNX Runtime engine file is not an ONNX TensorRT parses)."""
    import tempfile

    import onnx

    from edgeres.onnx_model.export import export_checkpoint

    ckpt = src.manifest.get("source", {}).get("checkpoint")
    if not ckpt or not Path(ckpt).is_file():
        raise EdgeresError(
            f"the engine's checkpoint {ckpt} is missing; deploy exports the FP32 ONNX from it "
            "(ONNX Runtime engine files hold CPU-only operators)"
        )
    require("torch", "desktop")
    export = src.manifest.get("export", {})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.onnx"
        export_checkpoint(Path(ckpt), out, opset=export.get("opset", 17))
        return onnx.load(str(out))


def _apply_inv_std(model, inv_std, int8: bool) -> str:
    """Move 1/std into the ONNX (see ``normalize``) and say how."""
    from edgeres.deploy.normalize import fold_inv_std_into_first_conv, insert_inv_std_mul

    mul = "a per-channel Mul before the input quantizer, so every calibrated scale stays as calibrated"
    if int8:
        insert_inv_std_mul(model, inv_std)
        return mul
    try:
        fold_inv_std_into_first_conv(model, inv_std)
        return "folded into the first convolution's weights"
    except EdgeresError:  # e.g. an FP16-typed ONNX casts its input first: the Mul is just as exact
        insert_inv_std_mul(model, inv_std)
        return "a per-channel Mul after the input (the input does not feed one Conv directly)"


def _append_softmax(model) -> None:
    """End a classifier in Softmax: nvinfer thresholds probabilities."""
    from onnx import helper

    graph = model.graph
    logits = graph.output[0]
    probs = helper.make_tensor_value_info(PROBABILITIES, logits.type.tensor_type.elem_type, None)
    probs.type.CopyFrom(logits.type)
    probs.name = PROBABILITIES
    graph.node.append(helper.make_node("Softmax", [logits.name], [PROBABILITIES], axis=-1, name="edgeres_softmax"))
    del graph.output[:]
    graph.output.append(probs)


def _write_calib_file(scales, trt_version: str, path: Path, input_name: str, pre, moved: bool) -> None:
    """The calibration cache nvinfer reads. With the 1/std Mul in front, the input's calibrated range belongs to
    the Mul's output and the raw input gets its exact range (|x/255 - mean| <= that bound)."""
    from dataclasses import replace

    from edgeres.quant.trt_cache import write_cache

    if moved and input_name in scales.activations:
        acts = dict(scales.activations)
        acts[input_name + STD_INPUT_SUFFIX] = acts[input_name]
        acts[input_name] = {**acts[input_name], "amax": input_range(pre)}
        scales = replace(scales, activations=acts)
    write_cache(scales, trt_version, path)


def _check_nvinfer_invariants(prop: dict) -> None:
    """The written config must never reach nvinfer's silent FP16 fallback (INT8 without a calibration file)."""
    if prop["network-mode"] == 1 and not prop.get("int8-calib-file"):
        raise AssertionError("network-mode=1 without int8-calib-file: nvinfer would silently build FP16")


def nvinfer_config_text(prop: dict, src: DeploySource) -> str:
    """The ``[property]`` group as GLib key-file text (lists joined with ';', as nvinfer parses them)."""

    def value(v) -> str:
        if isinstance(v, list | tuple):
            return ";".join(value(x) for x in v)
        if isinstance(v, float):
            return repr(v)
        return str(v)

    head = [
        f"# Gst-nvinfer config written by edgeres {__version__} from {src.engine_file.name}",
        f"# task {src.task}, precision {src.precision}; see deploy.json beside this file",
        "[property]",
    ]
    return "\n".join(head + [f"{k}={value(v)}" for k, v in prop.items()]) + "\n"


def labels_text(separator: str, class_names: list[str]) -> str:
    """nvinfer's label file: ``separator`` ";" gives a classifier's one line of labels (one line per output
    layer), "\\n" one label per line."""
    return separator.join(class_names) + "\n"
