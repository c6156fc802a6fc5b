"""API conformance without a GPU: every TensorRT attribute the backend uses exists in that version's bindings.

The name lists in ``tests/data/trt_names`` were read from the compiled modules of the PyPI wheels
(``extract.py`` there says how). Two checks: (1) ``versions.used_names(version)`` is a subset of what that
version exports; (2) a scan of the backend's source finds every TensorRT attribute it touches and requires it
to be declared in ``versions`` (so (1) covers the real code, not a list that drifted from it). The same scan
checks the cuda-python calls against the installed ``cuda.bindings.runtime``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from fixtures_trt import name_lists

from edgeres.backends.trt import versions

TRT_DIR = Path(versions.__file__).parent
# Local variable (or self attribute) names the backend uses for TensorRT objects, and their classes.
VAR_CLASS = {
    "builder": "Builder",
    "network": "INetworkDefinition",
    "config": "IBuilderConfig",
    "parser": "OnnxParser",
    "profile": "IOptimizationProfile",
    "runtime": "Runtime",
    "engine": "ICudaEngine",
    "context": "IExecutionContext",
    "tensor": "ITensor",
    "error": "ParserError",
    "inspector": "EngineInspector",
    "tcache": "ITimingCache",
    "layer": "ILayer",
}
# Classes the backend subclasses: the methods it overrides must exist on the base.
SUBCLASSED = {"IInt8EntropyCalibrator2", "ILogger"}
# Features switched off by choice although the names still exist: EXPLICIT_BATCH is deprecated and ignored in
# 10.x; DLA is not supported by TensorRT 11 (its release notes), though the DLA enums remain; STRONGLY_TYPED
# exists from 10.x but edgeres builds weakly typed networks there (precision flags) and strongly typed on 11.
POLICY = {"explicit_batch_flag", "dla", "strongly_typed"}
EXPECTED_VERSIONS = {"8.6.1", "10.3.0", "10.16.1.11", "11.0.0.114", "11.4.0.106"}


def _chain(node: ast.AST) -> list[str] | None:
    """``trt.A.B`` -> ["trt", "A", "B"]; ``self.engine.x`` -> ["engine", "x"]; else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    parts.reverse()
    return parts[1:] if parts[0] == "self" else parts


def used_in_source() -> dict[str, set[str]]:
    """{"Class.attr" or "name": files} for every TensorRT attribute the backend's source touches."""
    found: dict[str, set[str]] = {}
    for path in sorted(TRT_DIR.glob("*.py")):
        if path.name == "buffers.py":
            continue
        tree = ast.parse(path.read_text())
        inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}  # trt.A of trt.A.B
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = [_chain(b) for b in node.bases]
                for base in bases:
                    if base and base[0] == "trt" and len(base) == 2 and base[1] in SUBCLASSED:
                        for item in node.body:
                            if isinstance(item, ast.FunctionDef) and not item.name.startswith("__"):
                                found.setdefault(f"{base[1]}.{item.name}", set()).add(path.name)
            if not isinstance(node, ast.Attribute) or id(node) in inner:
                continue
            chain = _chain(node)
            if not chain or len(chain) < 2 or chain[-1].startswith("__"):
                continue
            if chain[0] == "trt":
                name = ".".join(chain[1:3])
            elif chain[0] in VAR_CLASS and len(chain) == 2:
                name = f"{VAR_CLASS[chain[0]]}.{chain[1]}"
            else:
                continue
            found.setdefault(name, set()).add(path.name)
    return found


def test_name_lists_are_the_expected_wheels():
    lists = name_lists()
    assert set(lists) == EXPECTED_VERSIONS
    for names in lists.values():
        assert len(names) > 1500 and "Builder.build_serialized_network" in names


def test_source_scan_finds_the_backend_calls():
    found = used_in_source()
    for name in (
        "Builder.create_network",
        "IExecutionContext.execute_async_v3",
        "BuilderFlag.GPU_FALLBACK",
        "IInt8EntropyCalibrator2.read_calibration_cache",
        "ParserError.node_name",
        "ITimingCache.serialize",
    ):
        assert name in found, name


def test_source_scan_covers_the_dla_count_inspector_and_checked_calls():
    """The calls issue 18 added or now checks: the DLA core count from a Runtime (no Builder), the builder's DLA
    placement, the engine inspector, and every call whose False the runner checks."""
    found = used_in_source()
    for name in (
        "Runtime.num_DLA_cores",
        "IBuilderConfig.can_run_on_DLA",
        "INetworkDefinition.num_layers",
        "INetworkDefinition.get_layer",
        "ILayer.name",
        "ICudaEngine.create_engine_inspector",
        "EngineInspector.get_engine_information",
        "LayerInformationFormat.JSON",
        "IExecutionContext.set_input_shape",
        "IExecutionContext.set_tensor_address",
        "IExecutionContext.get_tensor_shape",
        "IBuilderConfig.create_timing_cache",
        "IBuilderConfig.set_timing_cache",
    ):
        assert name in found, name
    assert "Builder.num_DLA_cores" not in found  # a Builder per open_engine on a Jetson is gone


def test_every_used_name_is_declared_in_versions():
    declared = set(versions.COMMON_NAMES).union(*versions.FEATURE_NAMES.values())
    undeclared = {name: sorted(files) for name, files in used_in_source().items() if name not in declared}
    assert undeclared == {}, "declare these in edgeres/backends/trt/versions.py (COMMON_NAMES or FEATURE_NAMES)"


@pytest.mark.parametrize("version", sorted(EXPECTED_VERSIONS))
def test_every_name_used_for_a_version_exists_in_its_bindings(version):
    missing = sorted(versions.used_names(versions.features(version)) - name_lists()[version])
    assert missing == [], f"TensorRT {version}'s bindings lack {missing}"


@pytest.mark.parametrize("version", sorted(EXPECTED_VERSIONS))
def test_feature_gates_match_the_bindings(version):
    """A feature switched off for a version is really absent there (the matrix is not needlessly strict)."""
    feat, names = versions.features(version), name_lists()[version]
    for flag, gated in versions.FEATURE_NAMES.items():
        if not getattr(feat, flag) and flag not in POLICY:
            assert not gated <= names, f"{flag} is off for {version}, but its names all exist there"


def test_cuda_python_calls_exist_in_cuda_bindings():
    runtime = pytest.importorskip("cuda.bindings.runtime", reason="cuda-python (cuda-bindings) is not installed")
    tree = ast.parse((TRT_DIR / "buffers.py").read_text())
    chains = [_chain(n) for n in ast.walk(tree) if isinstance(n, ast.Attribute)]
    calls = {c[1] for c in chains if c and len(c) >= 2 and c[0] == "rt"}  # self.rt.X (cuda-python's runtime)
    assert {"cudaMalloc", "cudaMemcpyAsync", "cudaEventElapsedTime", "cudaGraphLaunch"} <= calls
    missing = sorted(c for c in calls if not hasattr(runtime, c))
    assert missing == []
