"""Compiles OpenVINO models for the CPU, checks that they run integer kernels, and writes INT8 engines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeres.errors import EdgeresError, require

# The pip extra that installs OpenVINO for engines.
EXTRA = "openvino"
# Layers that must run on int8 activations in an INT8 engine (OpenVINO CPU plugin layer types).
COMPUTE_LAYERS = ("Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul", "Gemm")
INTEGER_PRECISIONS = ("i8", "u8")


def openvino():
    return require("openvino", EXTRA)


@dataclass
class ModelLoader:
    """Reads an ONNX file once and compiles it for the CPU, one static input shape at a time.

    Static shapes let the CPU plugin pick its kernels and fuse at compile time (a dynamic batch axis costs
    batch-1 latency); a runner compiles each batch size it meets once.

    Args:
        path: the ONNX file.
        threads: CPU threads (``INFERENCE_NUM_THREADS``); None: OpenVINO's default (one per physical core).
        precision_hint: precision of the layers the model leaves float (``INFERENCE_PRECISION_HINT``); ``f32``
            keeps them FP32 as TensorRT's reference arithmetic does (the CPU plugin's default on AMX/AVX-512
            BF16 hardware is bf16).
        pinning: pin inference threads to cores (``ENABLE_CPU_PINNING``); off is kinder on shared machines.
    """

    path: Path
    threads: int | None = None
    precision_hint: str = "f32"
    pinning: bool = True

    def __post_init__(self):
        self._model = None
        self._core = None

    def config(self) -> dict:
        cfg = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": self.precision_hint,
               "ENABLE_CPU_PINNING": self.pinning}
        if self.threads:
            cfg["INFERENCE_NUM_THREADS"] = self.threads
        return cfg

    def read(self):
        """The model as read from ``path`` (once)."""
        if self._model is None:
            ov = openvino()
            self._core = ov.Core()
            try:
                self._model = self._core.read_model(str(self.path))
            except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
                raise EdgeresError(f"OpenVINO cannot read {self.path}: {str(exc).splitlines()[0][:300]}") from None
        return self._model

    def sample_shape(self) -> tuple[int, ...]:
        """The input shape without the batch axis (e.g. ``(3, 224, 224)``)."""
        dims = self.read().inputs[0].get_partial_shape()
        if dims.rank.is_dynamic or any(d.is_dynamic for d in list(dims)[1:]):
            raise EdgeresError(f"{self.path}: only the batch axis of the input may be dynamic, got {dims}")
        return tuple(d.get_length() for d in list(dims)[1:])

    def compile(self, shape: tuple[int, ...]):
        """A CompiledModel for inputs of exactly ``shape``."""
        ov = openvino()
        model = self.read().clone()
        model.reshape({model.inputs[0]: ov.PartialShape(list(shape))})
        try:
            return self._core.compile_model(model, "CPU", self.config())
        except Exception as exc:
            raise EdgeresError(f"OpenVINO cannot compile {self.path} for input {list(shape)}: "
                               f"{str(exc).splitlines()[0][:300]}") from None


def runtime_layers(compiled) -> list[tuple[str, str, str]]:
    """(name, layer type, runtime precision) of every layer of a compiled model's execution graph."""
    rows = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        rows.append((op.get_friendly_name(), info["layerType"].astype(str), info["runtimePrecision"].astype(str)))
    return rows


def runtime_kernels(compiled) -> list[tuple[str, str, str]]:
    """(layer type, kernel, runtime precision) of every layer of a compiled model's execution graph, the kernel as
    the CPU plugin names it (e.g. ``brgconv_avx512_amx_I8``, ``jit_avx2_I8``: which ISA's int8 code runs)."""
    rows = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        rows.append((info["layerType"].astype(str), info["primitiveType"].astype(str),
                     info["runtimePrecision"].astype(str)))
    return rows


def float_compute_layers(compiled) -> list[str]:
    """Convolution / fully connected layers of the execution graph that do not run on int8 activations."""
    return [f"{kind} {name} ({precision})" for name, kind, precision in runtime_layers(compiled)
            if kind in COMPUTE_LAYERS and precision not in INTEGER_PRECISIONS]


def check_integer_kernels(compiled) -> int:
    """Fail when any Convolution / fully connected layer of the compiled model is not an int8 kernel.

    Returns:
        The number of integer compute layers.
    """
    left = float_compute_layers(compiled)
    if left:
        raise EdgeresError(f"{len(left)} Conv/Gemm layer(s) would run in float in OpenVINO on this CPU, not as "
                           "integer kernels: " + ", ".join(left[:5]) + ("..." if len(left) > 5 else ""))
    return sum(kind in COMPUTE_LAYERS for _, kind, _ in runtime_layers(compiled))


def write_int8_engine(qdq_model, engine_file: Path, input_shape: tuple[int, ...], threads: int | None = None,
                      split_stem: bool = True) -> dict:
    """The OpenVINO INT8 engine: the Q/DQ artifact in its OpenVINO form (``quant.cpu.rewrite_for_openvino``)
    saved as ``engine_file`` (ONNX), compiled once for ``input_shape`` to check that every Conv/Gemm runs as
    an integer kernel (the build fails otherwise). ``split_stem=False`` leaves the stem reading its signed input
    whole: exact only where oneDNN sums int8 products in 32 bits (VNNI, AMX).

    Returns:
        Backend facts for the manifest.
    """
    import onnx

    from edgeres.quant.cpu import rewrite_for_openvino

    onnx.save(rewrite_for_openvino(qdq_model, split_signed_inputs=split_stem), str(engine_file))
    loader = ModelLoader(engine_file, threads=threads)
    compiled = loader.compile(tuple(input_shape))
    integer_layers = check_integer_kernels(compiled)
    return {"inference_precision": loader.precision_hint, "static_shapes": True, "integer_layers": integer_layers}
