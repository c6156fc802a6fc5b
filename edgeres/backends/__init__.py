"""Backends behind one interface, listed in one table: engine name -> the package that holds its builder, loader
and runner.

Each package's ``__init__`` states its facts and hooks (cheap to import: the heavy package it wraps is imported
only inside the functions that need it):

- ``NAME``, ``ENGINE_SUFFIX``, ``PRECISIONS`` (what it builds), ``PACKAGE`` / ``DISTRIBUTIONS`` (what
  ``version()`` looks up), ``EXTRA`` (the pip extra that installs it), ``ON_GPU`` (``auto`` prefers it when
  ``ready()``), ``CPU_INT8`` (a CPU INT8 engine: ``backends.cpu_int8`` guarantees apply), ``TENSORRT_PLAN`` (the
  engine file is a serialized TensorRT engine: TensorRT's build options apply, DeepStream's nvinfer loads it as
  is, Triton serves it from a release with the same TensorRT), ``TRITON_MODEL`` (the file name in a Triton
  model's version folder and the ``config.pbtxt`` line that picks Triton's backend);
- ``version()``, ``ready()`` (installed and its device present, for ``auto``), ``check_request(cfg)`` (refuse what
  it cannot build, before minutes of calibration), ``check_calibrated(cfg, calib, mixed, checked)`` (the same once
  the Q/DQ artifact exists), ``build(job)`` (``base.BuildJob`` -> ``base.BuiltEngine``), ``current_facts()``,
  ``engine_problems(manifest, current)``, ``open_runner(engine_file, manifest, options)`` and ``describe(manifest)``
  (what ``edgeres build`` prints about a fresh engine);
- for ``edgeres deploy``: ``source_onnx(engine_file, manifest)`` (the ONNX beside the engine that TensorRT can
  build from, or None), ``model_io(engine_file, manifest)`` (inputs and outputs as (name, dtype, shape), or None
  when the engine cannot be read here) and ``write_triton_model(engine_file, target)``.

Adding a backend is one folder here and one line in ``ENGINE_BACKENDS``. ``torch`` (the reference runner) builds
no engines and is not in the table.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edgeres.errors import EdgeresError

# Engine backends. ``auto`` takes the first GPU one (``ON_GPU``) that is ready, else the CPU engine
# ``backends.cpu_int8.pick_cpu_backend`` names.
ENGINE_BACKENDS = {
    "onnxruntime": "edgeres.backends.onnxrt",
    "openvino": "edgeres.backends.openvino",
    "tensorrt": "edgeres.backends.trt",
}


def backend_names() -> tuple[str, ...]:
    """The engine backends, in table order."""
    return tuple(ENGINE_BACKENDS)


def backend_module(name: str, where: str = "") -> ModuleType:
    """The package of engine backend ``name`` (its facts and hooks; see the module doc).

    Args:
        name: a table name, e.g. "onnxruntime".
        where: what the error starts with (e.g. a manifest's path and ": ").

    Raises:
        EdgeresError: ``name`` is not in the table; the message lists the names that are.
    """
    if name not in ENGINE_BACKENDS:
        raise EdgeresError(f"{where}unknown backend '{name}'; accepted: {', '.join(ENGINE_BACKENDS)}")
    return importlib.import_module(ENGINE_BACKENDS[name])


def engine_suffixes() -> dict[str, str]:
    """Engine file suffix per backend (``.onnx``, ``.plan``)."""
    return {name: backend_module(name).ENGINE_SUFFIX for name in ENGINE_BACKENDS}


def auto_gpu_backend() -> tuple[str, str] | None:
    """(name, why) of the first GPU backend in the table that is installed with its device present, or None."""
    for name in ENGINE_BACKENDS:
        module = backend_module(name)
        if module.ON_GPU and module.ready():
            return name, module.AUTO_REASON
    return None
