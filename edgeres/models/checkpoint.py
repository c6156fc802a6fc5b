"""Checkpoints: safetensors weights with a JSON metadata block (model config + training summary).

Foreign ``.pth``/``.pt`` state dicts load through ``torch.load(weights_only=True)``: a pickle that
would run code is refused. Writes are atomic (temp file + rename) and never overwrite without force.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from edgeres.config import ModelConfig, PreprocessConfig
from edgeres.errors import CheckpointError, EdgeresError, require
from edgeres.fileio import atomic_path, check_writable

METADATA_KEY = "edgeres"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model's config, its weights and what training recorded."""

    config: ModelConfig
    state_dict: dict
    summary: dict = field(default_factory=dict)
    path: Path | None = None
    onnx_path: Path | None = None  # an ONNX model (no torch weights): state_dict is empty

    @property
    def is_onnx(self) -> bool:
        return self.onnx_path is not None

    def build_model(self):
        """Instantiate the registered architecture and load these weights (eval mode)."""
        from edgeres.models.registry import get_model

        if self.is_onnx:
            raise CheckpointError(
                f"{self.path} is an ONNX model without torch weights; this step needs them: use the checkpoint or "
                ".pth it was exported from (--model FILE.pth --arch ARCH)"
            )

        model = get_model(self.config.arch, num_classes=self.config.num_classes)
        load_weights(model, self.state_dict, self.config.arch, source=str(self.path))
        return model.eval()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(path: Path, model, config: ModelConfig, summary: dict | None = None, force: bool = True):
    """Write ``model``'s weights and ``config`` as one safetensors file, atomically.

    Args:
        path: destination ``.safetensors`` file.
        model: a torch module (DDP-wrapped modules are unwrapped).
        config: the model's config, stored in the metadata block.
        summary: training facts to keep (epochs, accuracy, data, time...).
        force: overwrite an existing file (training overwrites its own run folder's files).
    """
    st = require("safetensors.torch", "desktop")
    path = Path(path)
    check_writable(path, force)
    module = getattr(model, "module", model)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    meta = {"format_version": FORMAT_VERSION, "config": config.to_dict(), "summary": summary or {}}
    size = sum(t.numel() * t.element_size() for t in state.values())
    with atomic_path(path, expect_bytes=size) as tmp:  # free space checked first: a run must not die at epoch end
        st.save_file(state, str(tmp), metadata={METADATA_KEY: json.dumps(meta)})


def load_checkpoint(path: Path, arch: str | None = None, class_names: list[str] | None = None) -> Checkpoint:
    """Load an edgeres checkpoint, or a foreign state dict when ``arch`` is given.

    Args:
        path: ``.safetensors`` (edgeres, or bare weights with ``arch``) or ``.pth``/``.pt``.
        arch: architecture for files without edgeres metadata (for an edgeres checkpoint it must match).
        class_names: class names for files without edgeres metadata (default: "0".."N-1").

    Returns:
        The checkpoint. Raises ``CheckpointError`` with one clear line when it cannot be used.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return _load_edgeres_onnx(path, arch)
    if suffix == ".safetensors":
        state, meta = _read_safetensors(path)
    elif suffix in (".pth", ".pt", ".bin"):
        state, meta = load_state_dict_file(path), None
    else:
        raise CheckpointError(
            f"unsupported model file type '{path.suffix}' ({path}); accepted: .safetensors, .pth, .pt, .onnx"
        )
    if meta is not None:
        config = ModelConfig.from_dict(meta["config"])
        if arch is not None and arch != config.arch:  # a conflicting option is an error, not silently ignored
            raise CheckpointError(f"{path} is a {config.arch} checkpoint, but --arch {arch} was given")
        return Checkpoint(config=config, state_dict=state, summary=meta.get("summary", {}), path=path)
    if arch is None:
        raise CheckpointError(f"{path} has no edgeres metadata; say which architecture it is (e.g. --arch resnet18)")
    head = state.get("fc.weight")
    if head is None:
        raise CheckpointError(f"{path} has no 'fc.weight': not a torchvision ResNet classifier state dict")
    n = int(head.shape[0])
    names = list(class_names) if class_names else [str(i) for i in range(n)]
    if len(names) != n:
        raise CheckpointError(f"{path} has {n} outputs but {len(names)} class names were given")
    config = ModelConfig(arch=arch, class_names=names, preprocess=PreprocessConfig())
    return Checkpoint(config=config, state_dict=state, summary={}, path=path)


def _load_edgeres_onnx(path: Path, arch: str | None) -> Checkpoint:
    """An ONNX model that carries edgeres metadata (written by the model resolver or ``edgeres import``)."""
    from edgeres.models.onnx_source import read_edgeres_onnx

    found = read_edgeres_onnx(path)
    if found is None:
        raise CheckpointError(
            f"{path} is an ONNX file without edgeres metadata; give its classes and input "
            "(--classes FILE or --num-classes N, --img-size, --mean, --std) or run 'edgeres import' on it"
        )
    config, meta = found
    if arch is not None and arch != config.arch:
        raise CheckpointError(f"{path} is a {config.arch} model, but --arch {arch} was given")
    return Checkpoint(config=config, state_dict={}, summary=meta.get("summary", {}), path=path, onnx_path=path)


def checkpoint_task(path: Path) -> str:
    """The task a model file was trained for, read from an edgeres checkpoint's metadata header only (no tensors
    loaded). Files without edgeres metadata (torchvision state dicts, ONNX models from elsewhere) are classifiers.

    Raises:
        CheckpointError: the file is missing, or a ``.safetensors`` file whose header cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix.lower() != ".safetensors":
        return "classify"
    st = require("safetensors", "desktop")
    try:
        with st.safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
    except Exception as exc:
        raise CheckpointError(f"corrupt or unreadable checkpoint {path}: {exc}") from None
    if raw is None:
        return "classify"
    try:
        task = json.loads(raw)["config"].get("task", "classify")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CheckpointError(f"{path}: its edgeres metadata is not valid JSON with a 'config' block") from None
    if not isinstance(task, str):
        raise CheckpointError(f"{path}: its metadata names task {task!r}, not a task name")
    return task


def _read_safetensors(path: Path) -> tuple[dict, dict | None]:
    st = require("safetensors", "desktop")
    try:
        with st.safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iterator)
    except Exception as exc:
        raise CheckpointError(f"corrupt or unreadable checkpoint {path}: {exc}") from None
    if raw is None:
        return state, None
    try:
        meta = json.loads(raw)
        ModelConfig.from_dict(meta["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} has a broken metadata block ({exc})") from None
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format {meta['format_version']}, newer than this edgeres reads "
            f"({FORMAT_VERSION}); upgrade edgeres"
        )
    return state, meta


def load_state_dict_file(path: Path) -> dict:
    """Load a ``.pth``/``.pt`` state dict safely (``weights_only=True``), unwrapping common nestings."""
    return read_state_dict_file(path)[0]


def read_state_dict_file(path: Path) -> tuple[dict, list[str]]:
    """``load_state_dict_file`` and what the unwrapping did ("weights read from its 'state_dict' entry", "DDP
    'module.' prefix removed"), for the import summary."""
    if Path(path).suffix.lower() == ".safetensors":  # bare weights: safe by construction
        state, _ = _read_safetensors(Path(path))
        notes = ["DDP 'module.' prefix removed"] if any(k.startswith("module.") for k in state) else []
        return {k.removeprefix("module."): v for k, v in state.items()}, notes
    torch = require("torch", "desktop")
    import pickle
    import re
    import warnings

    _refuse_zip_bomb(Path(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the outcome is reported below
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message is a paragraph; the line that matters names the refused import, if there is one.
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found and _is_pickled_module(path):
            raise CheckpointError(
                f"refusing to load {path}: it is a whole pickled model ({found.group(1)}), which only running code "
                "from the file could read; save its state dict instead (in Python, from a file you trust): "
                f"model = torch.load('{path}', weights_only=False); "
                f"torch.save(model.state_dict(), '{path.with_suffix('')}.state_dict.pth')"
            ) from None
        if found:
            reason = f"it is a pickle that would import and run {found.group(1)}"
        else:
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            detail = next((ln for ln in lines if ln.startswith("Unsupported")), lines[-1] if lines else "")
            reason = f"it is corrupt or not a plain PyTorch state dict ({detail[:120]})"
        raise CheckpointError(
            f"refusing to load {path}: {reason}; accepted: safetensors files or plain state dicts of tensors"
        ) from None
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "the file ends early"
        raise CheckpointError(f"corrupt or unreadable checkpoint {path}: {type(exc).__name__}: {detail}") from None
    notes = []
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            notes.append(f"weights read from its '{key}' entry")
    if not isinstance(obj, dict) or not all(hasattr(v, "shape") for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    if any(str(k).startswith("module.") for k in obj):
        notes.append("DDP 'module.' prefix removed")
    return {k.removeprefix("module."): v for k, v in obj.items()}, notes


def _refuse_zip_bomb(path: Path) -> None:
    """Refuse a zip checkpoint whose entries declare far more bytes than the file holds, before torch inflates
    them: ``torch.save`` stores entries uncompressed, so a real checkpoint unpacks to about its own size."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # not a zip (a legacy pickle) or a broken one: torch.load reports it
    size = path.stat().st_size
    if declared > 2 * size + (1 << 20):
        raise CheckpointError(
            f"refusing to load {path}: its zip entries unpack to {declared / 2**20:.0f} MiB from a "
            f"{size / 2**20:.1f} MiB file (a zip bomb; torch.save writes entries uncompressed)"
        )


def _is_pickled_module(path: Path) -> bool:
    """True for ``torch.save(model)`` files: their pickle holds a ``torch.nn.Module``'s own attribute names.
    Read as bytes only: nothing is unpickled."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
            raw = archive.read(name) if name else b""
    except (zipfile.BadZipFile, OSError):
        raw = Path(path).read_bytes()[: 1 << 20]
    return b"_modules" in raw and b"_parameters" in raw


def load_weights(model, state_dict: dict, arch: str, source: str = "checkpoint") -> None:
    """Load ``state_dict`` into ``model`` strictly, explaining a mismatch in one line."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or wrong:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            detail.append(f"{len(wrong)} with other shapes (e.g. {wrong[0]})")
        raise CheckpointError(f"{source} does not fit {arch} with {_num_classes(own)} classes: " + "; ".join(detail))
    _check_values(state_dict, own, source)
    model.load_state_dict(state_dict, strict=True)


def _check_values(state_dict: dict, own: dict, source: str) -> None:
    """Refuse weights that load but cannot work: integer tensors where the network has floats (load_state_dict
    would convert them silently) and NaN/Inf values (a diverged run or a damaged file)."""
    import torch

    for k, v in state_dict.items():
        if own[k].is_floating_point() and not v.is_floating_point():
            raise CheckpointError(f"{source}: tensor {k} is stored as {v.dtype}; the network needs floating point")
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise CheckpointError(
                f"{source}: tensor {k} holds NaN or Inf values (a diverged training run or a damaged file)"
            )


def _num_classes(state: dict) -> str:
    head = state.get("fc.weight")
    return str(int(head.shape[0])) if head is not None else "?"


def require_matching_classes(config: ModelConfig, class_names: list[str], what: str) -> None:
    """Refuse data whose classes differ from the model's, naming the difference."""
    if list(config.class_names) != list(class_names):
        raise EdgeresError(
            f"{what} has classes {_short(class_names)} but the model was trained on {_short(config.class_names)}"
        )


def _short(names: list[str]) -> str:
    return "[" + ", ".join(names[:6]) + (", ..." if len(names) > 6 else "") + f"] ({len(names)})"
