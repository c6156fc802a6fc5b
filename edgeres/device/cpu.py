"""Facts about the CPU: model, architecture, cores, SIMD features and the ``isa`` summary (from /proc/cpuinfo).

The ``parse_*`` functions are pure (text in, dict out) so they can be tested with hand-written text.
"""

from __future__ import annotations

import os
import platform

from edgeres.device.common import fields_of, read_text

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
    fields = fields_of(text)
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


def cpu_facts() -> dict:
    """The CPU: model, architecture, core counts, SIMD features and the ``isa`` summary.

    Returns:
        ``{"model", "arch", "logical_cores", "usable_cores", "features", "isa"}``; ``usable_cores``
        is what this process may run on (CPU affinity, e.g. a container's cpuset), ``None`` where
        the OS cannot tell.
    """
    machine = platform.machine()
    parsed = parse_cpuinfo(read_text("/proc/cpuinfo") or "", machine)
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
