"""Facts about the machine edgeres runs on: CPU, packages, GPUs, Jetson board.

Every function returns JSON-able dicts and never raises because something is missing: an absent
package or tool is reported as ``None`` (``null`` in JSON). Only the standard library is imported at
module level; torch, onnxruntime, cv2 and tensorrt are imported inside the functions that need them.
The ``parse_*`` functions are pure (text in, dict out) so they can be tested with hand-written text.
"""

from __future__ import annotations

import glob
import importlib
import os
import platform
import re
import shutil
import socket
import subprocess
from pathlib import Path

X86_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx")
ARM_FLAGS = ("asimd", "asimddp", "i8mm", "sve", "asimdhp")

# (CPU implementer, CPU part) from /proc/cpuinfo -> core name, for the cores found on edge boards and
# ARM servers; ARM cpuinfo has no "model name" worth showing. Values as in util-linux lscpu-arm.c.
_ARM_CORES = {
    ("0x41", "0xd03"): "ARM Cortex-A53",
    ("0x41", "0xd05"): "ARM Cortex-A55",
    ("0x41", "0xd07"): "ARM Cortex-A57",
    ("0x41", "0xd08"): "ARM Cortex-A72",
    ("0x41", "0xd0b"): "ARM Cortex-A76",
    ("0x41", "0xd0c"): "ARM Neoverse-N1",
    ("0x41", "0xd40"): "ARM Neoverse-V1",
    ("0x41", "0xd41"): "ARM Cortex-A78",
    ("0x41", "0xd42"): "ARM Cortex-A78AE",
    ("0x41", "0xd49"): "ARM Neoverse-N2",
    ("0x41", "0xd4f"): "ARM Neoverse-V2",
    ("0x4e", "0x003"): "NVIDIA Denver 2",
    ("0x4e", "0x004"): "NVIDIA Carmel",
}

_TIMEOUT_S = 5


def _arch_family(machine: str) -> str:
    """platform.machine() spelled one way per family: "x86_64", "aarch64", or as given, lowercased."""
    m = machine.lower()
    if m in ("x86_64", "amd64"):
        return "x86_64"
    if m in ("aarch64", "arm64"):
        return "aarch64"
    return m


def _is_arm(family: str) -> bool:
    return family == "aarch64" or family.startswith("arm")


def _fields(text: str) -> dict[str, str]:
    """First value of each ``key : value`` line, keys lowercased (cpuinfo repeats them per core)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def _isa(family: str, feat: dict[str, bool | None]) -> str:
    """The isa summary string; the scheme is documented in ``parse_cpuinfo``."""
    parts = [family]
    if family == "x86_64":
        if feat.get("avx512f") and feat.get("avx512bw"):
            parts.append("avx512")
            vnni = feat.get("avx512_vnni") or feat.get("avx_vnni")
        elif feat.get("avx2") and feat.get("fma"):
            parts.append("avx2")
            vnni = feat.get("avx_vnni")
        elif feat.get("avx"):
            parts.append("avx")
            vnni = False
        elif feat.get("sse4_2"):
            parts.append("sse4")
            vnni = False
        else:
            vnni = False
        if vnni:
            parts.append("vnni")
        if feat.get("amx"):
            parts.append("amx")
    elif _is_arm(family):
        for flag, tag in (("asimd", "neon"), ("asimddp", "dotprod"), ("i8mm", "i8mm"), ("sve", "sve")):
            if feat.get(flag):
                parts.append(tag)
    return "-".join(parts)


def parse_cpuinfo(text: str, machine: str) -> dict:
    """Read the CPU model and inference-relevant SIMD features from /proc/cpuinfo text.

    x86 features come from the ``flags`` line (``amx`` means ``amx_int8``); ARM features from the
    ``Features`` line (32-bit ARM's ``neon`` counts as ``asimd``). A feature is ``None`` when the
    text has no such line (not Linux, or cpuinfo unreadable), so "unknown" is not mistaken for "no".

    The ``isa`` string ties a built engine to the CPU it was tuned on. It is the architecture
    family, then dash-separated tags, strongest first:

    - x86_64: one level of ``avx512`` (avx512f + avx512bw), ``avx2`` (avx2 + fma), ``avx`` or
      ``sse4``; then ``vnni`` if the level has int8 dot products (avx512_vnni or avx_vnni at avx512,
      avx_vnni at avx2); then ``amx`` if AMX int8 tiles exist. E.g. "x86_64-avx2",
      "x86_64-avx2-vnni" (Alder Lake), "x86_64-avx512-vnni" (Cascade Lake, Zen 4),
      "x86_64-avx512-vnni-amx" (Sapphire Rapids).
    - aarch64 (and 32-bit arm): ``neon`` (asimd), ``dotprod`` (asimddp), ``i8mm``, ``sve``, each if
      present. E.g. "aarch64-neon" (Cortex-A72, Raspberry Pi 4), "aarch64-neon-dotprod" (Jetson
      Orin, Raspberry Pi 5), "aarch64-neon-dotprod-i8mm-sve" (Graviton 3). FP16 (asimdhp) is
      reported but not tagged: every core with dotprod has it.
    - anything else, or no features known: the family alone, e.g. "riscv64".

    Args:
        text: the contents of /proc/cpuinfo (may be empty).
        machine: ``platform.machine()`` of the CPU the text describes, e.g. "x86_64", "aarch64".

    Returns:
        ``{"model": str | None, "features": {flag: bool | None}, "isa": str}``.
    """
    fields = _fields(text)
    family = _arch_family(machine)
    if _is_arm(family):
        names = ARM_FLAGS
        raw = fields.get("features")
        have = set(raw.split()) if raw is not None else None
        if have is not None and "neon" in have:
            have.add("asimd")
        core = _ARM_CORES.get((fields.get("cpu implementer", ""), fields.get("cpu part", "")))
        model = core or fields.get("model name") or fields.get("hardware")
    else:
        names = X86_FLAGS
        raw = fields.get("flags")
        have = set(raw.split()) if raw is not None else None
        if have is not None and "amx_int8" in have:
            have.add("amx")
        model = fields.get("model name")
    features = {name: (None if have is None else name in have) for name in names}
    return {"model": model or None, "features": features, "isa": _isa(family, features)}


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def cpu_facts() -> dict:
    """The CPU: model, architecture, core counts, SIMD features and the ``isa`` summary.

    Returns:
        ``{"model", "arch", "logical_cores", "usable_cores", "features", "isa"}``; ``usable_cores``
        is what this process may run on (CPU affinity, e.g. a container's cpuset), ``None`` where
        the OS cannot tell.
    """
    machine = platform.machine()
    parsed = parse_cpuinfo(_read_text("/proc/cpuinfo") or "", machine)
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    return {
        "model": parsed["model"] or platform.processor() or None,
        "arch": machine,
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "features": parsed["features"],
        "isa": parsed["isa"],
    }


def _import(name: str, errors: dict[str, str]):
    """The module, or None; an installed package that fails to import is noted in ``errors``."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:  # the package is there, one of its own dependencies is not
            errors[name] = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a broken install (missing .so, CUDA mismatch) must not stop `info`
        errors[name] = f"{type(exc).__name__}: {exc}"
    return None


def parse_opencv_build(text: str) -> dict:
    """Video and GUI support from ``cv2.getBuildInformation()``.

    Args:
        text: the build information text.

    Returns:
        ``{"ffmpeg": bool, "gstreamer": bool, "gui": bool}``. ``gui`` is true when the ``GUI:``
        line names a backend (e.g. "GTK3", not "NONE"), or, in builds before 4.6 where ``GUI:`` is
        only a heading, when a backend under it says YES. Headless wheels have no GUI.
    """
    lines = text.splitlines()
    fields = _fields(text)
    gui_value = fields.get("gui", "")
    if gui_value:
        gui = gui_value.upper() not in ("NONE", "NO", "HEADLESS")
    else:
        gui = False
        for i, line in enumerate(lines):
            if line.strip().lower().startswith("gui:"):
                depth = len(line) - len(line.lstrip())
                for sub in lines[i + 1 :]:
                    if sub.strip() and len(sub) - len(sub.lstrip()) <= depth:
                        break
                    key, _, value = sub.partition(":")
                    # VTK is the viz module's renderer, not a highgui window backend.
                    if not key.strip().upper().startswith("VTK"):
                        gui = gui or value.strip().upper().startswith("YES")
                break
    return {
        "ffmpeg": fields.get("ffmpeg", "").upper().startswith("YES"),
        "gstreamer": fields.get("gstreamer", "").upper().startswith("YES"),
        "gui": gui,
    }


def package_versions() -> dict:
    """Versions of Python, edgeres and the packages the pipeline uses; ``None`` means not installed.

    Returns:
        ``{"python", "edgeres", "numpy", "torch", "torchvision", "onnx", "onnxruntime",
        "onnxruntime_providers", "opencv", "opencv_ffmpeg", "opencv_gstreamer", "opencv_gui",
        "tensorrt", "import_errors"}``. ``import_errors`` maps a package that is installed but
        fails to import to its error, e.g. a JetPack torch missing a CUDA library.
    """
    from edgeres import __version__

    errors: dict[str, str] = {}
    out: dict = {"python": platform.python_version(), "edgeres": __version__}
    for name in ("numpy", "torch", "torchvision", "onnx", "onnxruntime"):
        out[name] = getattr(_import(name, errors), "__version__", None)
    ort = _import("onnxruntime", errors) if out["onnxruntime"] else None
    out["onnxruntime_providers"] = list(ort.get_available_providers()) if ort else None

    cv2 = _import("cv2", errors)
    out["opencv"] = getattr(cv2, "__version__", None)
    build = parse_opencv_build(cv2.getBuildInformation()) if cv2 else {}
    for key in ("ffmpeg", "gstreamer", "gui"):
        out[f"opencv_{key}"] = build.get(key)

    trt = _import("tensorrt", errors)  # lazily, here only: importing it initialises CUDA
    out["tensorrt"] = getattr(trt, "__version__", None)
    out["import_errors"] = errors
    return out


def parse_nvidia_smi(text: str) -> list[dict]:
    """GPUs from ``nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total
    --format=csv,noheader``.

    Args:
        text: the command's stdout, one GPU per line.

    Returns:
        One ``{"name", "compute_cap", "driver_version", "memory_total_mib"}`` per GPU; a field the
        driver reports as "[N/A]" (memory on a Jetson) is ``None``.
    """
    gpus = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 4:
            continue
        name, cap, driver, mem = (None if c.startswith("[") or not c else c for c in cells)
        mem_mib = re.match(r"\d+", mem) if mem else None
        gpus.append({
            "name": name,
            "compute_cap": cap,
            "driver_version": driver,
            "memory_total_mib": int(mem_mib.group()) if mem_mib else None,
        })
    return gpus


def _run(cmd: list[str]) -> tuple[str | None, str | None]:
    """(stdout, None) on success, (None, first line of the error) otherwise."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if proc.returncode != 0:
        msg = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        return None, msg[0] if msg else f"exit code {proc.returncode}"
    return proc.stdout, None


def gpu_facts() -> dict:
    """NVIDIA GPUs (from nvidia-smi) and CUDA as torch sees it.

    Returns:
        ``{"gpus": [...], "cuda": {...}}``. ``gpus`` is as ``parse_nvidia_smi``, empty without
        nvidia-smi. ``cuda`` is ``{"available": bool | None, "version": str | None,
        "device_count": int | None, "nvidia_smi_error": str | None}``; the first three come from
        torch (``None`` without torch), the last is why nvidia-smi failed, e.g. a driver mismatch.
    """
    gpus: list[dict] = []
    smi_error = None
    if shutil.which("nvidia-smi"):
        query = "--query-gpu=name,compute_cap,driver_version,memory.total"
        stdout, smi_error = _run(["nvidia-smi", query, "--format=csv,noheader"])
        gpus = parse_nvidia_smi(stdout or "")
    cuda: dict = {"available": None, "version": None, "device_count": None, "nvidia_smi_error": smi_error}
    torch = _import("torch", {})
    if torch is not None:
        try:
            cuda["available"] = bool(torch.cuda.is_available())
            cuda["version"] = torch.version.cuda
            cuda["device_count"] = torch.cuda.device_count()
        except Exception:  # a CPU-only or half-broken build; what was read so far stands
            pass
    return {"gpus": gpus, "cuda": cuda}


def parse_tegra_release(text: str) -> str | None:
    """The L4T release from /etc/nv_tegra_release.

    Args:
        text: e.g. "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, ...".

    Returns:
        The release as "major.minor.patch", e.g. "36.3.0", or ``None`` if the text is not one.
    """
    m = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"{m.group(1)}.{m.group(2).rstrip('.')}" if m else None


def parse_nvpmodel(text: str) -> dict:
    """The power mode from ``nvpmodel -q``.

    Args:
        text: e.g. "NV Power Mode: MAXN\\n0\\n" (some releases print an "NV Fan Mode" line first).

    Returns:
        ``{"name": str | None, "id": int | None}``, e.g. ``{"name": "MAXN", "id": 0}``.
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if line.startswith("NV Power Mode:"):
            name = line.partition(":")[2].strip() or None
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            return {"name": name, "id": int(nxt) if nxt.isdigit() else None}
    return {"name": None, "id": None}


def jetson_facts() -> dict | None:
    """The Jetson board, or ``None`` on anything that is not a Jetson (no /etc/nv_tegra_release).

    Returns:
        ``{"l4t": str | None, "model": str | None, "power_mode": {"name", "id"} | None}``;
        ``power_mode`` is ``None`` when nvpmodel is absent or fails.
    """
    release = _read_text("/etc/nv_tegra_release")
    if release is None:
        return None
    model = _read_text("/proc/device-tree/model")
    power = None
    if shutil.which("nvpmodel"):
        stdout, _ = _run(["nvpmodel", "-q"])
        power = parse_nvpmodel(stdout) if stdout else None
    return {
        "l4t": parse_tegra_release(release),
        "model": (model.strip("\x00 \n") or None) if model else None,
        "power_mode": power,
    }


def collect() -> dict:
    """Every fact above in one JSON-able dict (what ``edgeres info --json`` prints).

    Returns:
        ``{"os", "hostname", "cpu", "cpu_int8", "packages", "gpus", "cuda", "jetson"}``; ``cpu_int8`` is
        ``backends.cpu_int8.cpu_int8_summary`` (how this CPU sums int8 products, the INT8 engine ``auto``
        builds, each CPU engine's guarantee here).
    """
    from edgeres.backends.cpu_int8 import cpu_int8_summary  # standard library only, like this module

    gpu = gpu_facts()
    cpu = cpu_facts()
    return {
        "os": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu": cpu,
        "cpu_int8": cpu_int8_summary(cpu),
        "packages": package_versions(),
        "gpus": gpu["gpus"],
        "cuda": gpu["cuda"],
        "jetson": jetson_facts(),
    }


def parse_clocks(cpu: list[tuple[int, int]], gpu: list[tuple[int, int]]) -> bool | None:
    """Whether clocks are locked (what ``jetson_clocks`` does): every CPU and GPU minimum frequency equals its maximum.

    Args:
        cpu: (scaling_min_freq, scaling_max_freq) per CPU core.
        gpu: (min_freq, max_freq) per GPU devfreq device.

    Returns:
        True or False, or None when there is nothing to judge.
    """
    pairs = cpu + gpu
    if not cpu or not gpu:
        return None
    return all(lo == hi for lo, hi in pairs)


def read_clocks(root: Path = Path("/")) -> bool | None:
    """``parse_clocks`` over the sysfs files of a Jetson (``root`` lets tests point at a fake tree)."""

    def pairs(pattern: str, lo: str, hi: str) -> list[tuple[int, int]]:
        out = []
        for folder in sorted(glob.glob(str(Path(root) / pattern))):
            try:
                out.append((int(Path(folder, lo).read_text()), int(Path(folder, hi).read_text())))
            except (OSError, ValueError):
                continue
        return out

    return parse_clocks(pairs("sys/devices/system/cpu/cpu[0-9]*/cpufreq", "scaling_min_freq", "scaling_max_freq"),
                        pairs("sys/class/devfreq/*gpu*", "min_freq", "max_freq"))


def jetson_bench_facts() -> dict | None:
    """What a published Jetson number depends on: power mode and locked clocks (None off a Jetson)."""
    jetson = jetson_facts()
    if jetson is None:
        return None
    return {"l4t": jetson["l4t"], "model": jetson["model"], "power_mode": jetson["power_mode"],
            "clocks_locked": read_clocks()}
