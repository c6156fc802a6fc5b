"""Engine manifests, the resolver and loading: find an engine, check it, open it with its runner.

Every built engine has a JSON sidecar (never a header glued onto the engine, so native tools still
read the engine file). Loading reads the manifest first and explains any mismatch (newer schema,
changed bytes, stale checkpoint, other backend version, other CPU ISA or GPU) before anything is
deserialized: engine files are treated as executables.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from edgeres.backends import backend_module, engine_suffixes
from edgeres.backends.base import nvidia_smi_gpus  # noqa: F401  (public here since before the backends table)
from edgeres.config import ModelConfig, PreprocessConfig
from edgeres.errors import EdgeresError
from edgeres.manifest import MANIFEST_SUFFIX, manifest_path_for, read_manifest
from edgeres.models.checkpoint import file_sha256

ENGINE_SUFFIXES = engine_suffixes()  # per backend, from the table in edgeres.backends


class EngineMismatchError(EdgeresError):
    """The engine cannot be used here as built; the message says what differs and how to rebuild."""


def resolve(target: Path) -> tuple[Path, Path]:
    """Turn an engine file, its manifest or its folder into (engine file, manifest file).

    Raises:
        EdgeresError: nothing usable there, or the engine has no manifest.
    """
    target = Path(target)
    if target.is_dir():
        manifests = sorted(target.glob("*" + MANIFEST_SUFFIX))
        if len(manifests) != 1:
            found = ", ".join(m.name for m in manifests) or "none"
            raise EdgeresError(f"{target} must hold exactly one *{MANIFEST_SUFFIX} engine manifest (found: {found})")
        manifest_file = manifests[0]
    elif target.name.endswith(MANIFEST_SUFFIX):
        manifest_file = target
    elif target.is_file():
        manifest_file = manifest_path_for(target)
        if not manifest_file.is_file():
            raise EdgeresError(
                f"{target} has no manifest ({manifest_file.name} is missing); edgeres only loads engines it can "
                "check: rebuild it with 'edgeres build'"
            )
    else:
        raise EdgeresError(f"engine not found: {target} (give an engine file, its manifest or its folder)")
    if not manifest_file.is_file():
        raise EdgeresError(f"engine manifest not found: {manifest_file}")
    manifest = read_manifest(manifest_file)
    return manifest_file.parent / manifest["engine"]["file"], manifest_file


def rebuild_hint(manifest: dict) -> str:
    cmd = manifest.get("build_command")
    return f"rebuild it with: {cmd}" if cmd else "rebuild it with 'edgeres build'"


def check_engine(engine_file: Path, manifest: dict, current: dict | None = None) -> list[str]:
    """Every reason this engine cannot be used on this machine (empty when it can).

    Args:
        engine_file: the engine's path.
        manifest: its manifest.
        current: facts about this machine and its packages (default: measured now); tests pass their own.
    """
    current = current if current is not None else current_facts(manifest["backend"]["name"])
    problems = []
    if not engine_file.is_file():
        return [f"engine file {engine_file} is missing"]
    eng = manifest["engine"]
    size = engine_file.stat().st_size
    if size != eng.get("size") or file_sha256(engine_file) != eng.get("sha256"):
        problems.append(f"{engine_file.name}'s bytes do not match its manifest (size {size} vs {eng.get('size')}): "
                        "it was modified or replaced after the build")
    backend = manifest["backend"]
    device = manifest.get("device", {})
    # The backend's own checks: its version (TensorRT: version/hardware compatibility, L4T, DLA), the GPU, and
    # for CPU INT8 engines the CPUs they were built for.
    problems += backend_module(backend["name"]).engine_problems(manifest, current)
    if backend.get("isa_bound") and device.get("cpu_isa") != current.get("cpu_isa"):
        problems.append(f"optimized for CPU ISA {device.get('cpu_isa')}, this CPU is {current.get('cpu_isa')}")
    source = manifest.get("source", {})
    ckpt = Path(source["checkpoint"]) if source.get("checkpoint") else None
    if ckpt is not None and ckpt.is_file() and source.get("sha256") and file_sha256(ckpt) != source["sha256"]:
        problems.append(f"stale: the checkpoint {ckpt} changed after this engine was built")
    return problems


def current_facts(backend: str) -> dict:
    """This machine's facts that an engine depends on."""
    from edgeres.device.cpu import cpu_facts

    facts = {"cpu_isa": cpu_facts()["isa"], "backend_version": backend_version(backend)}
    return facts | backend_module(backend).current_facts()  # GPU names (TensorRT: CUDA's, L4T, DLA); CPU INT8 facts


def int8_guarantee(manifest: dict, facts: dict | None = None) -> dict | None:
    """What a CPU INT8 engine's arithmetic reproduces on this CPU (``backends.cpu_int8.guarantee``), from its
    manifest's ``saturation_free`` (engines from before that field count as not proven); None for other engines.
    The manifest's ``backend.guarantee`` records the same for the CPU the engine was built on."""
    from edgeres.backends.cpu_int8 import guarantee, kernel_facts
    from edgeres.device.cpu import cpu_facts

    backend = manifest["backend"]
    if manifest.get("precision") not in ("int8", "mixed") or backend.get("name") not in engine_suffixes() or \
            not backend_module(backend["name"]).CPU_INT8:
        return None
    cpu = facts if facts is not None else kernel_facts(backend["name"], cpu_facts())
    return guarantee(backend["name"], cpu, bool(backend.get("saturation_free")), backend.get("int8_cpu"))


def backend_version(backend: str) -> str | None:
    """The installed version of a backend's runtime (None: not installed)."""
    return backend_module(backend).version()


@dataclass
class Engine:
    """An engine that passed its checks, with its config and an (inactive) runner."""

    engine_file: Path
    manifest_file: Path
    manifest: dict
    runner: object

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def class_names(self) -> list[str]:
        return self.manifest["class_names"]

    @property
    def preprocess(self) -> PreprocessConfig:
        return PreprocessConfig.from_dict(self.manifest["preprocess"])

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig(self.manifest["arch"], self.class_names, self.task, self.preprocess)

    @property
    def name(self) -> str:
        return self.engine_file.stem

    def __enter__(self):
        self.runner.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.runner.deactivate()


def open_engine(target: Path, threads: int | None = None, providers: list[str] | None = None,
                spinning: bool = True, current: dict | None = None, cuda_graph: bool = False) -> Engine:
    """Resolve, check and prepare an engine for running (the runner is activated by ``with``).

    ``cuda_graph`` (TensorRT engines): replay captured CUDA graphs, for batch-1 latency.

    Raises:
        EngineMismatchError: the engine does not fit this machine; the message lists every difference.
    """
    engine_file, manifest_file = resolve(target)
    manifest = read_manifest(manifest_file)
    problems = check_engine(engine_file, manifest, current)
    if problems:
        raise EngineMismatchError(f"cannot use engine {engine_file}: " + "; ".join(problems) + "; "
                                  + rebuild_hint(manifest))
    module = backend_module(manifest["backend"]["name"], where=f"{manifest_file}: ")
    runner = module.open_runner(engine_file, manifest, threads=threads, providers=providers, spinning=spinning,
                                cuda_graph=cuda_graph)
    return Engine(engine_file, manifest_file, manifest, runner)


def command_line(args: list[str]) -> str:
    return shlex.join(["edgeres", *args])
