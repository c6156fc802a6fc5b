"""The Jetson board: L4T release, model, power mode and locked clocks (what a published number depends on)."""

from __future__ import annotations

import glob
import re
import shutil
from pathlib import Path

from edgeres.device.common import read_text, run_tool


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
    release = read_text("/etc/nv_tegra_release")
    if release is None:
        return None
    model = read_text("/proc/device-tree/model")
    power = None
    if shutil.which("nvpmodel"):
        stdout, _ = run_tool(["nvpmodel", "-q"])
        power = parse_nvpmodel(stdout) if stdout else None
    return {
        "l4t": parse_tegra_release(release),
        "model": (model.strip("\x00 \n") or None) if model else None,
        "power_mode": power,
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
