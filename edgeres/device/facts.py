"""Every device fact in one JSON-able dict: what ``edgeres info --json`` prints."""

from __future__ import annotations

import platform
import socket

from edgeres.device.cpu import cpu_facts
from edgeres.device.gpu import gpu_facts
from edgeres.device.jetson import jetson_facts
from edgeres.device.packages import package_versions


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
