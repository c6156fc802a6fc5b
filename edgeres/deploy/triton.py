"""``deploy triton``: a Triton Inference Server model repository for an engine.

``REPO/<name>/`` holds ``config.pbtxt`` and ``1/`` with the engine itself: ``model.onnx`` (ONNX Runtime
backend, the CPU engine as built), ``model.xml``/``model.bin`` (OpenVINO backend: the INT8 engine saved as
OpenVINO IR) or ``model.plan`` (TensorRT backend). ``max_batch_size`` is the manifest's max batch, names,
dims and types are read from the engine file itself, ``dynamic_batching`` and ``instance_group`` are set.

What differs between tasks comes from the task's ``DeployFacts`` (``edgeres/tasks/<task>/deploy.py``), never from
its name. Classifiers: the output carries ``label_filename`` so clients can ask Triton's classification extension
for the top k labels. Detectors (a task with ``triton_postprocess``): the engine's raw CenterNet maps are not what a
client wants, so the repository also holds ``<name>_postprocess`` (Python backend; ``model.py`` calls edgeres's
numpy decoder named by its ``decoder`` parameter) and ``<name>_ensemble`` (engine -> post-processing), which takes
the pre-processed image and the original image size and returns what the task's post-processing returns
(detectors: ``num_detections``, ``boxes`` in original-image pixels, ``scores`` and ``labels``, padded to the
manifest's ``max_detections``).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from edgeres import __version__
from edgeres.deploy.folders import MARKER, staged_folder
from edgeres.deploy.source import DeploySource, TensorSpec, engine_io, open_source
from edgeres.errors import EdgeresError

TRITON_TYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "uint8": "TYPE_UINT8",
    "int8": "TYPE_INT8",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "bool": "TYPE_BOOL",
}
LABELS_FILE = "labels.txt"
POSTPROCESS_APP = "triton_postprocess.py"
IMAGE_HW = "image_hw"  # the post-processing's second input: each image's original (height, width)
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass
class TritonConfig:
    """What ``deploy triton`` writes; the CLI fills it."""

    engine: Path
    out: Path
    name: str | None = None
    dynamic_batching: bool = True
    max_queue_delay_us: int = 100
    instances: int = 1
    triton_release: str | None = None
    force: bool = False


@dataclass
class TritonResult:
    """The model folders written, the warnings to show and what was decided."""

    repo: Path
    models: list[str]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def deploy_triton(cfg: TritonConfig) -> TritonResult:
    """Write the model folders into the repository ``cfg.out``.

    Raises:
        EdgeresError: a fixed-batch engine with dynamic batching, a bad name or count, or an existing
            repository without ``force``.
    """
    src = open_source(cfg.engine)
    name = cfg.name or re.sub(r"[^A-Za-z0-9_.-]", "_", src.name)
    if not NAME_RE.match(name):
        raise EdgeresError(f"--name '{name}' is not a Triton model name (letters, digits, '_', '.', '-')")
    if cfg.instances < 1:
        raise EdgeresError(f"--instances must be at least 1, got {cfg.instances}")
    if cfg.max_queue_delay_us < 0:
        raise EdgeresError(f"--max-queue-delay-us must be >= 0, got {cfg.max_queue_delay_us}")
    max_batch = _max_batch_size(src, cfg.dynamic_batching)
    post = src.facts.triton_postprocess
    settings = src.decoding_settings()  # checked before anything is written
    models = [name] + ([f"{name}_postprocess", f"{name}_ensemble"] if post is not None else [])
    _check_repo(Path(cfg.out), models, cfg.force)
    result = TritonResult(Path(cfg.out), models)
    if src.engine_backend.TENSORRT_PLAN:
        _plan_checks(src, cfg.triton_release, result)
    elif cfg.triton_release is not None:
        result.notes.append(
            f"--triton-release matters for TensorRT plans only; the {src.backend} model runs on any recent release"
        )
    if src.manifest["backend"].get("isa_bound"):
        result.warnings.append(
            f"the engine was saved with --opt-level all for CPU ISA "
            f"{src.manifest['device'].get('cpu_isa')}: serve it on that CPU, or rebuild with "
            "--opt-level extended for any x86 server"
        )
    marker = {
        "target": "triton",
        "edgeres_version": __version__,
        "engine": str(src.engine_file.resolve()),
        "engine_sha256": src.manifest["engine"]["sha256"],
        "task": src.task,
    }
    with staged_folder(Path(cfg.out) / name, marker) as tmp:
        inputs, outputs = _write_engine_model(src, tmp)
        (tmp / "config.pbtxt").write_text(engine_config(src, name, inputs, outputs, max_batch, cfg))
        (tmp / LABELS_FILE).write_text("\n".join(src.class_names) + "\n")
    if post is not None:
        maps = outputs[0]
        with staged_folder(Path(cfg.out) / f"{name}_postprocess", marker) as tmp:
            (tmp / "1").mkdir()
            shutil.copyfile(Path(__file__).with_name(POSTPROCESS_APP), tmp / "1" / "model.py")
            (tmp / "config.pbtxt").write_text(
                postprocess_config(src, f"{name}_postprocess", maps, max_batch, settings, cfg)
            )
            (tmp / LABELS_FILE).write_text("\n".join(src.class_names) + "\n")
        with staged_folder(Path(cfg.out) / f"{name}_ensemble", marker) as tmp:
            (tmp / "1").mkdir()  # an ensemble has no files, but Triton wants its version folder
            (tmp / "config.pbtxt").write_text(ensemble_config(src, name, inputs[0], maps, max_batch, settings))
        result.notes.append(
            f"clients call {name}_ensemble with the pre-processed image and its original size; "
            f"{name}_postprocess needs edgeres importable by Triton's Python backend"
        )
    return result


def _max_batch_size(src: DeploySource, dynamic_batching: bool) -> int:
    """Triton's ``max_batch_size``: the manifest's max batch; 0 (no batch axis) for an engine with a fixed batch."""
    fixed = src.fixed_batch
    if dynamic_batching and (fixed is not None or src.max_batch < 2):
        what = f"a fixed batch of {fixed}" if fixed is not None else "a max batch of 1"
        raise EdgeresError(
            f"the engine has {what} (input shape {src.manifest['input']['shape']}); Triton's dynamic "
            "batching needs a batch axis that grows: rebuild with 'edgeres build --max-batch N' or pass "
            "--no-dynamic-batching"
        )
    return 0 if fixed is not None else src.max_batch


def _check_repo(repo: Path, models: list[str], force: bool) -> None:
    if repo.exists() and not repo.is_dir():
        raise EdgeresError(f"{repo} exists and is not a folder; --out names a Triton model repository")
    if repo.exists() and any(repo.iterdir()):
        if not force:
            raise EdgeresError(
                f"{repo} already exists; pass --force to write {', '.join(models)} into it (other "
                "models there are left alone)"
            )
        for model in models:
            folder = repo / model
            if folder.exists() and not (folder / MARKER).is_file():
                raise EdgeresError(
                    f"{folder} was not written by 'edgeres deploy' (no {MARKER}); refusing to replace "
                    "it even with --force; choose another --name"
                )


def _plan_checks(src: DeploySource, release: str | None, result: TritonResult) -> None:
    from edgeres.deploy.triton_releases import plan_release_problem, releases_for

    backend, device = src.manifest["backend"], src.manifest.get("device", {})
    version = backend.get("version") or "unknown"
    problem = plan_release_problem(version, bool(backend.get("version_compatible")), release)
    if problem:
        result.warnings.append(problem)
    matching = releases_for(version)
    gpu = (
        "Ampere or later GPUs (hardware-compatible)"
        if backend.get("hardware_compat") == "ampere_plus"
        else f"{device.get('gpu')} (sm {device.get('compute_capability')}) only"
    )
    result.notes.append(
        f"the plan runs on TensorRT {version} and {gpu}"
        + (f"; matching Triton releases: {', '.join(matching)}" if matching else "")
    )
    if device.get("l4t"):
        result.notes.append(
            f"built on a Jetson (L4T {device['l4t']}): serve it with Triton's JetPack release "
            "(the iGPU tarball of a matching release), not the x86 container"
        )
    if device.get("dla_core") is not None:
        result.warnings.append(
            f"the plan runs on DLA core {device['dla_core']}; Triton's TensorRT backend runs it "
            "like any plan, on a Jetson with that DLA core free"
        )


def _write_engine_model(src: DeploySource, folder: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Put the engine into ``folder/1/`` as its Triton backend loads it and return the model's real inputs and
    outputs."""
    version = folder / "1"
    version.mkdir()
    src.engine_backend.write_triton_model(src.engine_file, version / src.engine_backend.TRITON_MODEL[0])
    return engine_io(src)


def _dims(spec: TensorSpec, batched: bool) -> list[int]:
    if batched:
        if spec.shape[0] != -1:
            raise EdgeresError(f"tensor '{spec.name}' has shape {list(spec.shape)} without a dynamic batch axis")
        return list(spec.shape[1:])
    return [d if d > 0 else -1 for d in spec.shape]


def _type(spec: TensorSpec) -> str:
    if spec.dtype not in TRITON_TYPES:
        raise EdgeresError(f"tensor '{spec.name}' has type {spec.dtype}, which edgeres does not map to Triton")
    return TRITON_TYPES[spec.dtype]


def _tensor(spec_name: str, dtype: str, dims: list[int], extra: str = "") -> str:
    return (
        f'  {{\n    name: "{spec_name}"\n    data_type: {dtype}\n    dims: [ {", ".join(map(str, dims))} ]\n'
        + extra
        + "  }"
    )


def _batching(max_batch: int, cfg: TritonConfig) -> str:
    if not cfg.dynamic_batching or max_batch < 2:
        return ""
    return f"dynamic_batching {{\n  max_queue_delay_microseconds: {cfg.max_queue_delay_us}\n}}\n"


def engine_config(
    src: DeploySource, name: str, inputs: list[TensorSpec], outputs: list[TensorSpec], max_batch: int, cfg: TritonConfig
) -> str:
    """``config.pbtxt`` of the engine model (protobuf text of Triton's ``ModelConfig``)."""
    batched = max_batch > 0
    kind = "KIND_GPU" if src.engine_backend.ON_GPU else "KIND_CPU"
    header = src.engine_backend.TRITON_MODEL[1]
    label = f'    label_filename: "{LABELS_FILE}"\n' if src.facts.label_filename else ""
    ins = ",\n".join(_tensor(s.name, _type(s), _dims(s, batched)) for s in inputs)
    outs = ",\n".join(_tensor(s.name, _type(s), _dims(s, batched), label) for s in outputs)
    return (
        f"# written by edgeres {__version__} from {src.engine_file.name} ({src.backend}, {src.precision})\n"
        f'name: "{name}"\n{header}\nmax_batch_size: {max_batch}\n'
        f"input [\n{ins}\n]\noutput [\n{outs}\n]\n"
        + _batching(max_batch, cfg)
        + f"instance_group [\n  {{\n    count: {cfg.instances}\n    kind: {kind}\n  }}\n]\n"
    )


def _param(key: str, value) -> str:
    return f'  {{\n    key: "{key}"\n    value: {{ string_value: "{value}" }}\n  }}'


def postprocess_config(
    src: DeploySource, name: str, maps: TensorSpec, max_batch: int, settings: dict, cfg: TritonConfig
) -> str:
    """``config.pbtxt`` of the Python-backend model that decodes the engine's output (``maps``) with the task's
    decoder (detectors: into padded detections)."""
    post = src.facts.triton_postprocess
    batched = max_batch > 0
    h, w = src.preprocess.input_size
    ins = [_tensor(maps.name, "TYPE_FP32", _dims(maps, batched)), _tensor(IMAGE_HW, "TYPE_INT32", [2])]
    outs = [_tensor(out, dtype, dims) for out, dtype, dims in post.outputs(settings)]
    params = {
        "num_classes": len(src.class_names),
        "input_h": h,
        "input_w": w,
        **post.parameters(settings),
        "maps_name": maps.name,  # the engine output this model reads
        "decoder": src.facts.decoder,  # which of triton_postprocess.py's decoders runs
    }
    return (
        f"# written by edgeres {__version__}: decodes {src.engine_file.name}'s output with edgeres "
        f"({src.facts.decoder})\n"
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: {max_batch}\n'
        f"input [\n{(',' + chr(10)).join(ins)}\n]\n"
        f"output [\n{(',' + chr(10)).join(outs)}\n]\n"
        + _batching(max_batch, cfg)
        + f"instance_group [\n  {{\n    count: {cfg.instances}\n    kind: KIND_CPU\n  }}\n]\n"
        + "parameters [\n"
        + ",\n".join(_param(key, v) for key, v in params.items())
        + "\n]\n"
    )


def ensemble_config(
    src: DeploySource, name: str, image: TensorSpec, maps: TensorSpec, max_batch: int, settings: dict
) -> str:
    """``config.pbtxt`` of the ensemble: pre-processed image + original size -> the post-processing's outputs."""
    batched = max_batch > 0
    post_outputs = src.facts.triton_postprocess.outputs(settings)
    ins = [_tensor(image.name, _type(image), _dims(image, batched)), _tensor(IMAGE_HW, "TYPE_INT32", [2])]
    outs = [_tensor(out, dtype, dims) for out, dtype, dims in post_outputs]

    def maps_(pairs) -> str:
        return "".join(f'      {pairs[0]} {{ key: "{a}" value: "{b}" }}\n' for a, b in pairs[1])

    step1 = (
        '    {\n      model_name: "'
        + name
        + '"\n      model_version: -1\n'
        + maps_(("input_map", [(image.name, image.name)]))
        + maps_(("output_map", [(maps.name, maps.name)]))
        + "    }"
    )
    step2 = (
        '    {\n      model_name: "'
        + name
        + '_postprocess"\n      model_version: -1\n'
        + maps_(("input_map", [(maps.name, maps.name), (IMAGE_HW, IMAGE_HW)]))
        + maps_(("output_map", [(out, out) for out, _, _ in post_outputs]))
        + "    }"
    )
    return (
        f"# written by edgeres {__version__}: {name} -> {name}_postprocess\n"
        f'name: "{name}_ensemble"\nplatform: "ensemble"\nmax_batch_size: {max_batch}\n'
        f"input [\n{(',' + chr(10)).join(ins)}\n]\noutput [\n{(',' + chr(10)).join(outs)}\n]\n"
        f"ensemble_scheduling {{\n  step [\n{step1},\n{step2}\n  ]\n}}\n"
    )


def summary(result: TritonResult) -> dict:
    return {"repo": str(result.repo), "models": result.models, "warnings": result.warnings, "notes": result.notes}


def to_json(result: TritonResult) -> str:
    return json.dumps(summary(result))
