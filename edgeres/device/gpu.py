"""NVIDIA GPUs (nvidia-smi) and CUDA as torch sees it."""

from __future__ import annotations

import re
import shutil

from edgeres.device.common import import_or_none, run_tool


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
        stdout, smi_error = run_tool(["nvidia-smi", query, "--format=csv,noheader"])
        gpus = parse_nvidia_smi(stdout or "")
    cuda: dict = {"available": None, "version": None, "device_count": None, "nvidia_smi_error": smi_error}
    torch = import_or_none("torch", {})
    if torch is not None:
        try:
            cuda["available"] = bool(torch.cuda.is_available())
            cuda["version"] = torch.version.cuda
            cuda["device_count"] = torch.cuda.device_count()
        except Exception:  # a CPU-only or half-broken build; what was read so far stands
            pass
    return {"gpus": gpus, "cuda": cuda}
