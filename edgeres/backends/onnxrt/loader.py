"""Builds ONNX Runtime sessions, and writes optimized ONNX files for engines."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgeres.errors import EdgeresError, require

# Provider names as users type them -> ONNX Runtime's names.
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def graph_optimization_level(name: str):
    ort = require("onnxruntime", "desktop")
    levels = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if name not in levels:
        raise EdgeresError(f"unknown optimization level '{name}'; accepted: {', '.join(levels)}")
    return levels[name]


def resolve_providers(requested: list[str] | None) -> list[str]:
    """Map user names (cpu, cuda, tensorrt) to ONNX Runtime providers, checking they are available."""
    ort = require("onnxruntime", "desktop")
    available = ort.get_available_providers()
    if not requested:
        return ["CPUExecutionProvider"]
    providers = [PROVIDER_ALIASES.get(p.lower(), p) for p in requested]
    missing = [p for p in providers if p not in available]
    if missing:
        raise EdgeresError(f"requested provider {', '.join(missing)}; available: {', '.join(available)}")
    if "CPUExecutionProvider" not in providers:
        providers.append("CPUExecutionProvider")
    return providers


@dataclass
class SessionLoader:
    """Callable that opens an ONNX file as an InferenceSession with the given threading and providers.

    Args:
        path: the ONNX file (its external data, if any, must lie in its folder).
        providers: user or ONNX Runtime provider names; default CPU only.
        threads: intra-op threads (None: ONNX Runtime's default, one per physical core).
        spinning: let idle threads spin (lower latency, burns CPU); off is kinder on shared edge CPUs.
        opt_level: graph optimization level applied when the session is created.
        session_config: extra ``SessionOptions.add_session_config_entry`` items.
    """

    path: Path
    providers: list[str] | None = None
    threads: int | None = None
    spinning: bool = True
    opt_level: str = "all"
    session_config: dict[str, str] = field(default_factory=dict)

    def session_options(self):
        ort = require("onnxruntime", "desktop")
        so = ort.SessionOptions()
        so.graph_optimization_level = graph_optimization_level(self.opt_level)
        so.log_severity_level = 3  # errors only: ONNX Runtime's optimizer warnings are not the user's problem
        if self.threads:
            so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
        for key, value in self.session_config.items():
            so.add_session_config_entry(key, value)
        return so

    def __call__(self):
        ort = require("onnxruntime", "desktop")
        from edgeres.onnx_model.files import check_onnx_file

        check_onnx_file(Path(self.path))
        try:
            return ort.InferenceSession(  # no fallback: ORT would print "EP Error" banners and retry the same file
                str(self.path), self.session_options(), providers=resolve_providers(self.providers), enable_fallback=0
            )
        except Exception as exc:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
            raise EdgeresError(f"ONNX Runtime cannot load {self.path}: {str(exc).splitlines()[0][:300]}") from None


def write_optimized_model(src: Path, dst: Path, opt_level: str, threads: int | None = None,
                          session_config: dict[str, str] | None = None) -> None:
    """Let ONNX Runtime optimize ``src`` and save the optimized graph to ``dst``."""
    ort = require("onnxruntime", "desktop")
    loader = SessionLoader(src, threads=threads, opt_level=opt_level, session_config=session_config or {})
    so = loader.session_options()
    so.optimized_model_filepath = str(dst)
    try:
        ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"], enable_fallback=0)
    except Exception as exc:
        raise EdgeresError(f"ONNX Runtime cannot optimize {src}: {str(exc).splitlines()[0][:300]}") from None


def int8_session_config(saturation_free: bool = False, facts: dict | None = None) -> dict[str, str]:
    """Session settings an INT8 engine needs on this CPU.

    x86 without VNNI multiplies u8 x s8 with ``vpmaddubsw``, whose pairwise 16-bit sums can saturate; ONNX
    Runtime's x64 quantization-precision mode then switches to exact (slower) u8 x u8 kernels. An engine whose
    every pair sum is proven to fit in int16 (``saturation_free``, from ``quant.cpu.integer_kernel_bounds`` at
    build time) needs nothing, nor does any CPU with VNNI/AMX or ARM dot products.

    Args:
        saturation_free: the engine's manifest says its integer kernels cannot saturate.
        facts: the CPU (default: this one).
    """
    from edgeres.backends.cpu_int8 import sums_int8_in_32_bits
    from edgeres.device.cpu import cpu_facts

    if saturation_free or sums_int8_in_32_bits(facts if facts is not None else cpu_facts()):
        return {}
    return {"session.x64quantprecision": "1"}
