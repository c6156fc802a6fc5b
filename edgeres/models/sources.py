"""Every source of a model resolved in one place.

A user arrives with one of:

- an edgeres checkpoint (``.safetensors`` with the edgeres metadata block), or an edgeres ONNX;
- a torchvision-layout state dict (``.pth``/``.pt``/``.bin`` or bare ``.safetensors``; nested under
  ``state_dict``/``model``, with DDP's ``module.`` prefix) plus ``--arch``, classes and pre-processing;
- torchvision's pretrained weights by name (``--weights imagenet`` or an enum name such as ``IMAGENET1K_V2``);
- an ONNX classifier exported elsewhere.

``resolve_model`` turns any of them into a file every command reads the same way: an edgeres checkpoint (torch
sources) or an edgeres ONNX (the checked, cleaned ONNX with the config in its metadata). A foreign source is
converted once into the model cache (``$EDGERES_CACHE``, else ``$XDG_CACHE_HOME/edgeres``, else
``~/.cache/edgeres``), keyed by the source's bytes and the options, so repeated commands reuse the same file
and calibrations (keyed by the model's hash) are reused too. ``edgeres import`` writes that file where the user
wants it. Every value the conversion chose is recorded with where it came from and printed.

This module holds the request, the result, option parsing and the dispatch; each kind of source has its own
module: ``state_dict_source``, ``torchvision_source`` and ``onnx_source``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from edgeres.config import IMAGENET_MEAN, IMAGENET_STD, ModelConfig, PreprocessConfig
from edgeres.errors import CheckpointError, EdgeresError, require

STATE_DICT_SUFFIXES = (".pth", ".pt", ".bin")
DEFAULT_IMG_SIZE = 224
TORCHVISION_DEFAULT = "torchvision's ImageNet value, the default"


@dataclass(frozen=True)
class ModelRequest:
    """What the user named: ``--model`` or ``--weights``, and the options that describe a foreign model."""

    model: Path | None = None
    weights: str | None = None
    arch: str | None = None
    classes: Path | None = None
    num_classes: int | None = None
    img_size: tuple[int, int] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    # Class names a command knows without --classes (eval: the data folder's), used for a foreign model only.
    class_names: tuple[str, ...] | None = None
    class_names_from: str = ""

    @property
    def given(self) -> bool:
        """Whether anything names a model (else a command falls back to the workspace's)."""
        return self.model is not None or self.weights is not None

    def describing_options(self) -> list[str]:
        """The options given that describe a foreign model (besides --model and --arch)."""
        names = {
            "weights": "--weights",
            "classes": "--classes",
            "num_classes": "--num-classes",
            "img_size": "--img-size",
            "mean": "--mean",
            "std": "--std",
        }
        return [flag for key, flag in names.items() if getattr(self, key) is not None]

    def cli_args(self) -> list[str]:
        """These options as command-line arguments (recorded in manifests so a build can be repeated)."""
        args: list[str] = []
        if self.model is not None:
            args += ["--model", str(Path(self.model).resolve())]
        if self.weights is not None:
            args += ["--weights", self.weights]
        if self.arch is not None:
            args += ["--arch", self.arch]
        if self.classes is not None:
            args += ["--classes", str(Path(self.classes).resolve())]
        if self.num_classes is not None:
            args += ["--num-classes", str(self.num_classes)]
        if self.img_size is not None:
            args += ["--img-size", f"{self.img_size[0]}x{self.img_size[1]}"]
        for key in ("mean", "std"):
            value = getattr(self, key)
            if value is not None:
                args += [f"--{key}", ",".join(f"{v:g}" for v in value)]
        return args


@dataclass
class ResolvedModel:
    """A model every command can read, and how it was found.

    Attributes:
        path: an edgeres checkpoint (``.safetensors``) or an edgeres ONNX (``.onnx``).
        config: architecture, classes and pre-processing.
        kind: "checkpoint", "onnx-edgeres", "state_dict", "torchvision" or "onnx".
        source: what the user named (a file, or torchvision's weights enum).
        origins: for each value (arch, classes, input size, mean, std), where it came from.
        notes: facts about the reading worth a line (a DDP prefix removed, a nesting unwrapped...).
    """

    path: Path
    config: ModelConfig
    kind: str
    source: str
    origins: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def foreign(self) -> bool:
        return self.kind not in ("checkpoint", "onnx-edgeres")

    @property
    def is_onnx(self) -> bool:
        return self.kind in ("onnx", "onnx-edgeres")

    def describe(self) -> list[str]:
        """What was read and where each value came from, one line each (printed once per command)."""
        cfg = self.config
        pre = cfg.preprocess
        names = ", ".join(cfg.class_names[:5]) + (", ..." if cfg.num_classes > 5 else "")
        what = {
            "state_dict": "torchvision state dict",
            "torchvision": "torchvision pretrained weights",
            "onnx": "ONNX classifier",
            "checkpoint": "edgeres checkpoint",
            "onnx-edgeres": "edgeres ONNX",
        }
        rows = [
            ("architecture", cfg.arch, self.origins.get("arch", "")),
            ("classes", f"{cfg.num_classes} ({names})", self.origins.get("classes", "")),
            ("input", f"3x{pre.input_size[0]}x{pre.input_size[1]}", self.origins.get("input_size", "")),
            ("mean", ", ".join(f"{v:g}" for v in pre.mean), self.origins.get("mean", "")),
            ("std", ", ".join(f"{v:g}" for v in pre.std), self.origins.get("std", "")),
        ]
        lines = [f"model: {self.source} ({what[self.kind]})" + (f"; {'; '.join(self.notes)}" if self.notes else "")]
        lines += [f"  {key:12s} {value:32s} from {origin}" for key, value, origin in rows]
        if self.foreign:
            lines.append(f"  as {self.path}")
        return lines


# ---- parsing of the describing options ----------------------------------------------------------------------


def parse_img_size(text: str) -> tuple[int, int]:
    """'224' -> (224, 224); '224x320' or '224,320' -> (224, 320) as (height, width)."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        sizes = []
    if len(sizes) == 1:
        sizes *= 2
    if len(sizes) != 2 or min(sizes) < 8:
        raise EdgeresError(
            f"--img-size '{text}' is not a size; accepted: one number (224) or HEIGHTxWIDTH (224x320), each at least 8"
        )
    return sizes[0], sizes[1]


def parse_channels(text: str, flag: str) -> tuple[float, float, float]:
    """'0.485,0.456,0.406' -> three floats on the [0, 1] scale (images are divided by 255 before normalizing)."""
    try:
        values = tuple(float(v) for v in text.replace(" ", ",").split(",") if v.strip())
    except ValueError:
        values = ()
    if len(values) != 3:
        raise EdgeresError(
            f"{flag} '{text}' is not three numbers; accepted: R,G,B such as "
            f"{','.join(str(v) for v in (IMAGENET_MEAN if flag == '--mean' else IMAGENET_STD))}"
        )
    if max(abs(v) for v in values) > 1.0:
        raise EdgeresError(
            f"{flag} {text} looks like 0-255 values; edgeres divides pixels by 255 first, so give "
            f"them on the [0, 1] scale (e.g. {','.join(f'{v / 255:.3f}' for v in values)})"
        )
    if flag == "--std" and min(values) <= 0:
        raise EdgeresError(f"--std {text} has a value <= 0; every channel's std must be positive")
    return values  # type: ignore[return-value]


def read_class_names(path: Path) -> list[str]:
    """Class names from a text file (one per line, blank lines ignored) or a JSON list."""
    path = Path(path)
    if not path.is_file():
        raise EdgeresError(
            f"--classes file not found: {path}; accepted: a text file with one class name per line (or a JSON list)"
        )
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() == ".json":
        try:
            names = json.loads(text)
        except ValueError as exc:
            raise EdgeresError(f"--classes {path} is not valid JSON ({exc})") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise EdgeresError(f"--classes {path} must hold a JSON list of class-name strings")
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise EdgeresError(f"--classes {path} names no classes; accepted: one class name per line")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise EdgeresError(f"--classes {path} names '{repeated[0]}' more than once; every class needs its own name")
    return names


# ---- the resolver ------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where converted models live: ``$EDGERES_CACHE``, else ``$XDG_CACHE_HOME/edgeres``, else ``~/.cache/edgeres``."""
    if os.environ.get("EDGERES_CACHE"):
        return Path(os.environ["EDGERES_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgeres"


def resolve_model(request: ModelRequest, out: Path | None = None, force: bool = False) -> ResolvedModel:
    """Find what ``request`` names and make it readable by every command.

    Args:
        request: the user's ``--model``/``--weights`` and describing options.
        out: write the converted model here (``edgeres import``) instead of the cache.
        force: overwrite ``out``.

    Returns:
        The resolved model. Raises ``EdgeresError``/``CheckpointError`` with one line for anything unusable.
    """
    if request.model is not None and request.weights is not None:
        raise EdgeresError("give --model FILE or --weights NAME, not both")
    if request.weights is not None:
        from edgeres.models.torchvision_source import from_torchvision

        return from_torchvision(request, out, force)
    if request.model is None:
        raise EdgeresError(
            "no model given: pass --model FILE (checkpoint, .pth state dict or .onnx) or --weights imagenet --arch ARCH"
        )
    path = Path(request.model)
    if not path.is_file():
        raise CheckpointError(f"model not found: {path}" + (" (it is a folder)" if path.is_dir() else ""))
    from edgeres.models.state_dict_source import from_state_dict

    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from edgeres.models.onnx_source import from_onnx

        return from_onnx(request, path, out, force)
    if suffix == ".safetensors":
        found = _edgeres_config(path)
        if found is not None:
            return from_edgeres_file(request, path, found, "checkpoint", out, force)
        return from_state_dict(request, path, out, force)
    if suffix in STATE_DICT_SUFFIXES:
        return from_state_dict(request, path, out, force)
    raise CheckpointError(
        f"unsupported model file type '{path.suffix}' ({path}); accepted: .safetensors, .pth, .pt, "
        ".bin (state dicts) and .onnx"
    )


def is_edgeres_model(path: Path) -> bool:
    """Whether ``path`` is an edgeres checkpoint or edgeres ONNX (a file every command reads without options)."""
    path = Path(path)
    if not path.is_file():
        return False
    if path.suffix.lower() == ".onnx":
        from edgeres.models.onnx_source import read_edgeres_onnx

        try:
            return read_edgeres_onnx(path) is not None
        except CheckpointError:
            return False
    if path.suffix.lower() != ".safetensors":
        return False
    st = require("safetensors", "desktop")
    try:
        with st.safe_open(str(path), framework="pt") as f:
            return "edgeres" in (f.metadata() or {})
    except Exception:
        return False


def _edgeres_config(path: Path) -> ModelConfig | None:
    from edgeres.models.checkpoint import load_checkpoint

    st = require("safetensors", "desktop")
    try:
        with st.safe_open(str(path), framework="pt") as f:
            has_meta = "edgeres" in (f.metadata() or {})
    except Exception:
        has_meta = True  # let load_checkpoint say what is wrong with the file
    return load_checkpoint(path).config if has_meta else None


def from_edgeres_file(
    request: ModelRequest, path: Path, config: ModelConfig, kind: str, out: Path | None, force: bool
) -> ResolvedModel:
    """An edgeres checkpoint or ONNX already records everything; describing options must agree with it."""
    pre = config.preprocess
    if request.arch is not None and request.arch != config.arch:
        raise CheckpointError(f"{path} is a {config.arch} checkpoint, but --arch {request.arch} was given")
    recorded = {
        "--img-size": (request.img_size, tuple(pre.input_size)),
        "--mean": (request.mean, tuple(pre.mean)),
        "--std": (request.std, tuple(pre.std)),
        "--num-classes": (request.num_classes, config.num_classes),
    }
    if request.classes is not None:
        recorded["--classes"] = (read_class_names(request.classes), list(config.class_names))
    for flag, (given, own) in recorded.items():
        if given is not None and given != own:
            raise CheckpointError(
                f"{path} is an edgeres model that records {flag.removeprefix('--')} {_fmt(own)}; "
                f"{flag} {_fmt(given)} differs (describing options are for state dicts and ONNX "
                "files from elsewhere)"
            )
    if out is not None:
        import shutil

        from edgeres.fileio import atomic_path, check_writable

        check_out_suffix(out, ".onnx" if kind == "onnx-edgeres" else ".safetensors", path)
        check_writable(out, force)
        with atomic_path(out) as tmp:
            shutil.copyfile(path, tmp)
        path = Path(out)
    everything = "the edgeres metadata in the file"
    return ResolvedModel(
        path=path,
        config=config,
        kind=kind,
        source=str(request.model),
        origins=dict.fromkeys(("arch", "classes", "input_size", "mean", "std"), everything),
    )


def _fmt(value) -> str:
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}x{value[1]}"
    if isinstance(value, (tuple, list)):
        shown = [f"{v:g}" if isinstance(v, float) else str(v) for v in value[:6]]
        return ",".join(shown) + (",..." if len(value) > 6 else "") + (f" ({len(value)})" if len(value) > 3 else "")
    return str(value)


def check_out_suffix(out: Path, wanted: str, source: Path | str) -> None:
    if Path(out).suffix.lower() != wanted:
        kind = "an ONNX model stays ONNX" if wanted == ".onnx" else "torch weights become an edgeres checkpoint"
        raise EdgeresError(f"--out {out}: {kind}; name it *{wanted} (source: {source})")


def class_names_for(request: ModelRequest, outputs: int, where: str, head_origin: str) -> tuple[list[str], str]:
    """Class names for a model with ``outputs`` logits: from --classes, else numbered after --num-classes or the
    head. A count that differs names both numbers."""
    if request.classes is not None:
        names = read_class_names(request.classes)
        if request.num_classes is not None and request.num_classes != len(names):
            raise EdgeresError(
                f"--num-classes {request.num_classes} but --classes {request.classes} names {len(names)} classes"
            )
        if len(names) != outputs:
            raise CheckpointError(
                f"{where} has {outputs} outputs but --classes {request.classes} names {len(names)} classes"
            )
        return names, f"--classes {request.classes}"
    if request.num_classes is not None and request.num_classes != outputs:
        raise CheckpointError(f"{where} has {outputs} outputs but --num-classes {request.num_classes} was given")
    if request.class_names is not None and request.num_classes is None:
        if len(request.class_names) != outputs:
            raise CheckpointError(
                f"{where} has {outputs} outputs but {len(request.class_names)} class names were "
                f"given ({request.class_names_from}; --classes FILE names the model's own)"
            )
        return list(request.class_names), request.class_names_from
    origin = "--num-classes" if request.num_classes is not None else head_origin
    return [str(i) for i in range(outputs)], origin + " (numbered; --classes FILE names them)"


def preprocess_for(
    request: ModelRequest,
    size: tuple[int, int] | None,
    size_origin: str,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    norm_origin: str = TORCHVISION_DEFAULT,
) -> tuple[PreprocessConfig, dict]:
    img = request.img_size or size or (DEFAULT_IMG_SIZE, DEFAULT_IMG_SIZE)
    origins = {
        "input_size": "--img-size" if request.img_size else size_origin,
        "mean": "--mean" if request.mean else norm_origin,
        "std": "--std" if request.std else norm_origin,
    }
    pre = PreprocessConfig(input_size=tuple(img), mean=tuple(request.mean or mean), std=tuple(request.std or std))
    return pre, origins


def classifiers() -> list[str]:
    from edgeres.models.registry import list_models

    return list_models("classify")


def cache_key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def target_path(request_out: Path | None, stem: str, key: str, suffix: str) -> Path:
    if request_out is not None:
        return Path(request_out)
    return cache_dir() / "models" / f"{stem}-{key}{suffix}"


def require_torch_weights(resolved: ResolvedModel, command: str) -> None:
    """Refuse an ONNX model for a step that needs torch weights, naming what to give instead."""
    if resolved.is_onnx:
        raise EdgeresError(
            f"{command} needs torch weights and {resolved.source} is an ONNX model; pass the "
            "checkpoint or .pth state dict it was exported from (--model FILE --arch ARCH)"
        )
