"""``doctor``: judge this setup (TensorRT, CUDA, cuda-python/pycuda, cameras, Jetson power mode and clocks) and,
optionally, one engine, with a verdict per line. ``info`` lists facts; this says whether they are good.

``collect`` gathers facts without raising; ``judge`` and ``judge_engine`` are pure (facts in, checks out),
so every verdict is tested with hand-written facts.
"""

from __future__ import annotations

import glob
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from edgeres.device.jetson import jetson_bench_facts, parse_clocks, read_clocks  # noqa: F401 (re-exported)

VERDICTS = ("ok", "warn", "fail", "info")


@dataclass
class Check:
    """One judged line: what was checked, the verdict, the detail, and what to do about it."""

    name: str
    verdict: str
    detail: str
    fix: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def collect() -> dict:
    """Every fact ``judge`` needs, gathered without raising."""
    from edgeres.backends.trt.buffers import cuda_status
    from edgeres.device.gpu import gpu_facts
    from edgeres.device.jetson import jetson_facts
    from edgeres.device.packages import package_versions

    packages = package_versions()
    jetson = jetson_facts()
    return {
        "packages": packages,
        "gpus": gpu_facts()["gpus"],
        "cuda": cuda_status()
        if packages.get("tensorrt") or _has_cuda_binding()
        else {"binding": None, "device": None, "error": "not installed"},
        "jetson": jetson,
        "clocks_locked": read_clocks() if jetson else None,
        "cameras": sorted(glob.glob("/dev/video*")),
        "camera_access": {dev: os.access(dev, os.R_OK | os.W_OK) for dev in glob.glob("/dev/video*")},
        "nvargus": shutil.which("nvargus-daemon") is not None or Path("/usr/sbin/nvargus-daemon").exists(),
        "cuda_majors": cuda_majors(),
    }


def cuda_majors() -> dict:
    """The CUDA major each installed wheel is built for: ``{"tensorrt": 12 | 13 | None, "cuda_python": int | None}``
    (from the ``tensorrt-cuNN`` distribution and cuda-python's version; JetPack's TensorRT is no wheel: None)."""
    import importlib.metadata as md

    def version(dist: str) -> str | None:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    trt = next(
        (major for major in (12, 13) if version(f"tensorrt-cu{major}-libs") or version(f"tensorrt-cu{major}")), None
    )
    cuda_python = version("cuda-python") or version("cuda-bindings")
    return {"tensorrt": trt, "cuda_python": int(cuda_python.split(".")[0]) if cuda_python else None}


def _has_cuda_binding() -> bool:
    import importlib.util

    return any(importlib.util.find_spec(m) is not None for m in ("cuda", "pycuda"))


def judge(facts: dict) -> list[Check]:
    """A verdict per line on the setup described by ``facts`` (as ``collect`` returns)."""
    from edgeres.backends.trt.versions import SUPPORTED, fast_precisions, features

    pkgs, jetson, cuda = facts["packages"], facts.get("jetson"), facts.get("cuda") or {}
    gpu_present = bool(facts.get("gpus")) or bool(cuda.get("device")) or jetson is not None
    checks = []
    py = tuple(int(x) for x in pkgs["python"].split(".")[:2])
    checks.append(
        Check(
            "python",
            "ok" if py >= (3, 10) else "fail",
            pkgs["python"],
            "" if py >= (3, 10) else "edgeres needs Python >= 3.10 (JetPack 6)",
        )
    )
    trt = pkgs.get("tensorrt")
    trt_error = pkgs.get("import_errors", {}).get("tensorrt")
    if trt_error:
        checks.append(
            Check(
                "tensorrt",
                "fail",
                f"installed but fails to import: {trt_error}",
                "reinstall TensorRT matching this CUDA/driver (JetPack's on a Jetson)",
            )
        )
    elif trt is None:
        verdict = "warn" if gpu_present else "info"
        checks.append(
            Check(
                "tensorrt",
                verdict,
                "not installed: only ONNX Runtime (CPU) engines can be built",
                "pip install 'edgeres[tensorrt]' on a GPU desktop (CUDA 12 driver; "
                "'edgeres[tensorrt-cu13]' for CUDA 13); JetPack's TensorRT on a Jetson"
                if gpu_present
                else "",
            )
        )
    else:
        try:
            feat = features(trt)
            extra = "" if feat.implicit_int8 else " (strongly typed: INT8 from Q/DQ only, FP16 from FP16-typed ONNX)"
            checks.append(Check("tensorrt", "ok", f"{trt}{extra}"))
        except Exception:
            checks.append(Check("tensorrt", "fail", f"{trt} is not supported", f"use TensorRT {SUPPORTED}"))
    if cuda.get("device"):
        dev = cuda["device"]
        checks.append(
            Check("cuda", "ok", f"{cuda['binding']}: {dev['name']}, compute capability {dev['compute_capability']}")
        )
        fast = fast_precisions(dev["compute_capability"])
        if fast["int8"] is False:
            checks.append(
                Check(
                    "int8 speed",
                    "warn",
                    f"compute capability {dev['compute_capability']} has no fast INT8",
                    "prefer --precision fp16 on this GPU",
                )
            )
    elif trt is not None or gpu_present:
        checks.append(
            Check(
                "cuda",
                "fail",
                cuda.get("error") or "no CUDA device",
                "pip install 'edgeres[tensorrt]' (cuda-python), and check the NVIDIA driver",
            )
        )
    else:
        checks.append(Check("cuda", "info", "no NVIDIA GPU"))
    checks += _judge_cuda_majors(facts)
    checks += _judge_dla(facts)
    checks += _judge_jetson(facts)
    checks += _judge_cameras(facts)
    return checks


def _judge_cuda_majors(facts: dict) -> list[Check]:
    majors = facts.get("cuda_majors") or {}
    trt, binding = majors.get("tensorrt"), majors.get("cuda_python")
    if trt is None or binding is None or trt == binding:
        return []
    extra = "tensorrt" if trt == 12 else f"tensorrt-cu{trt}"
    return [
        Check(
            "cuda majors",
            "fail",
            f"TensorRT is built for CUDA {trt}, cuda-python for CUDA {binding}",
            f"pip install 'cuda-python>={trt},<{trt + 1}' (or reinstall with 'edgeres[{extra}]')",
        )
    ]


def _judge_dla(facts: dict) -> list[Check]:
    """On a Jetson: whether the installed TensorRT builds DLA engines, and the rules it builds them by."""
    from edgeres.backends.trt.versions import features, no_dla_reason

    trt = facts["packages"].get("tensorrt")
    if facts.get("jetson") is None or trt is None:
        return []
    try:
        feat = features(trt)
    except Exception:  # unsupported versions get their own line
        return []
    if not feat.dla:
        return [Check("dla", "info", no_dla_reason(feat.version))]
    how = "INT8 from --int8-from cache" if feat.implicit_int8 else "FP16 only"
    return [Check("dla", "ok", f"TensorRT {trt} builds DLA engines (--dla-core): one fixed batch (--max-batch), {how}")]


def _judge_jetson(facts: dict) -> list[Check]:
    jetson = facts.get("jetson")
    if jetson is None:
        return [Check("jetson", "info", "not a Jetson")]
    checks = [Check("jetson", "ok", f"{jetson.get('model') or 'Jetson'}, L4T {jetson.get('l4t')}")]
    l4t = jetson.get("l4t") or ""
    if l4t and int(l4t.split(".")[0]) < 36:
        checks.append(
            Check(
                "jetpack",
                "fail",
                f"L4T {l4t} is JetPack 4/5 (Python 3.6/3.8)",
                "edgeres needs JetPack 6 (L4T 36) on a Jetson Orin",
            )
        )
    power = jetson.get("power_mode")
    if power is None or power.get("name") is None:
        checks.append(
            Check(
                "power mode",
                "warn",
                "unknown (nvpmodel not found or failed)",
                "record 'sudo nvpmodel -q' with any benchmark",
            )
        )
    else:
        maxed = "MAXN" in str(power["name"]).upper()
        checks.append(
            Check(
                "power mode",
                "ok" if maxed else "warn",
                f"{power['name']} (id {power.get('id')})",
                "" if maxed else "benchmarks depend on it: 'sudo nvpmodel -m 0' for MAXN, and report it",
            )
        )
    locked = facts.get("clocks_locked")
    checks.append(
        Check(
            "clocks",
            {True: "ok", False: "warn", None: "warn"}[locked],
            {True: "locked (jetson_clocks)", False: "not locked: clocks scale with load", None: "unknown"}[locked],
            "" if locked else "'sudo jetson_clocks' before benchmarking",
        )
    )
    return checks


def _judge_cameras(facts: dict) -> list[Check]:
    cams, access = facts.get("cameras") or [], facts.get("camera_access") or {}
    checks = []
    if not cams:
        checks.append(Check("camera", "info", "no /dev/video* device"))
    else:
        denied = [c for c in cams if not access.get(c)]
        checks.append(
            Check(
                "camera",
                "warn" if denied else "ok",
                f"{', '.join(cams)}" + (f"; no access to {', '.join(denied)}" if denied else ""),
                "add yourself to the 'video' group (sudo usermod -aG video $USER) and log in again" if denied else "",
            )
        )
    if facts.get("jetson") is not None:
        gst = facts["packages"].get("opencv_gstreamer")
        checks.append(
            Check(
                "csi camera",
                "ok" if gst and facts.get("nvargus") else "warn",
                f"OpenCV GStreamer {'yes' if gst else 'no'}, nvargus-daemon {'yes' if facts.get('nvargus') else 'no'}",
                "" if gst and facts.get("nvargus") else "use JetPack's OpenCV (GStreamer) for CSI cameras",
            )
        )
    return checks


def judge_engine(target: Path, current: dict | None = None) -> list[Check]:
    """Verdicts on one engine: manifest readable, bytes match, and it fits this machine (each difference a line)."""
    from edgeres.engine import check_engine, rebuild_hint, resolve
    from edgeres.errors import EdgeresError
    from edgeres.manifest import read_manifest

    try:
        engine_file, manifest_file = resolve(Path(target))
        manifest = read_manifest(manifest_file)
    except EdgeresError as exc:
        return [Check("engine", "fail", str(exc))]
    backend = manifest["backend"]
    checks = [
        Check(
            "engine",
            "info",
            f"{engine_file.name}: {backend['name']} {backend.get('version')}, "
            f"{manifest['precision']}, built {manifest.get('created')}",
        )
    ]
    problems = check_engine(engine_file, manifest, current)
    checks += [Check("engine fits", "fail", p, rebuild_hint(manifest)) for p in problems]
    if not problems:
        checks.append(Check("engine fits", "ok", "bytes match the manifest; built for this machine"))
    return checks
