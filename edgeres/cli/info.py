"""``edgeres info``: what this machine has (CPU features, packages, GPUs, Jetson). States, never judges."""

from __future__ import annotations

import contextlib
import json
import sys

import typer
from rich.table import Table

from edgeres.cli.console import make_console
from edgeres.device.facts import collect


def _fmt(value, missing: str = "unknown") -> str:
    if value is None:
        return missing
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "none"
    return str(value)


def _section(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    return table


def _gpu_line(gpu: dict) -> str:
    mem = gpu["memory_total_mib"]
    return (f"{_fmt(gpu['name'])}, compute {_fmt(gpu['compute_cap'])}, "
            f"{f'{mem} MiB' if mem is not None else 'memory unknown'}, driver {_fmt(gpu['driver_version'])}")


def _int8_rows(summary: dict) -> list[tuple[str, str]]:
    rows = [("int8 products", summary["int8_products"]),
            ("auto INT8 engine", f"{summary['auto_backend']} ({summary['auto_reason']})")]
    rows += [(f"{name} guarantee", f"{g['level']}: {g['why']}") for name, g in summary["guarantees"].items()]
    return rows


def render(facts: dict) -> list[Table]:
    """Turn ``collect()`` output into one rich table per section.

    Args:
        facts: the dict returned by ``edgeres.device.facts.collect``.

    Returns:
        Tables for System, CPU, CPU INT8 (what INT8 engines guarantee here), Packages, GPU and Jetson, in that
        order.
    """
    cpu, pkgs, cuda, jetson = facts["cpu"], facts["packages"], facts["cuda"], facts["jetson"]
    feats = cpu["features"]
    if all(v is None for v in feats.values()):
        simd = [("SIMD features", "unknown (no /proc/cpuinfo)")]
    else:
        simd = [("SIMD present", " ".join(k for k, v in feats.items() if v) or "none"),
                ("SIMD absent", " ".join(k for k, v in feats.items() if not v) or "none")]
    cores = f"{_fmt(cpu['logical_cores'])} logical, {_fmt(cpu['usable_cores'])} usable by this process"
    tables = [
        _section("System", [("os", facts["os"]), ("hostname", facts["hostname"])]),
        _section("CPU", [("model", _fmt(cpu["model"])), ("arch", cpu["arch"]), ("cores", cores),
                         *simd, ("isa", cpu["isa"])]),
    ]
    if "cpu_int8" in facts:
        tables.append(_section("CPU INT8", _int8_rows(facts["cpu_int8"])))
    rows = [(k, _fmt(pkgs[k], "not installed"))
            for k in ("python", "edgeres", "numpy", "torch", "torchvision", "onnx", "onnxruntime")]
    if pkgs["onnxruntime"]:
        rows.append(("onnxruntime providers", _fmt(pkgs["onnxruntime_providers"])))
    rows.append(("opencv", _fmt(pkgs["opencv"], "not installed")))
    if pkgs["opencv"]:
        build = {"FFmpeg": "opencv_ffmpeg", "GStreamer": "opencv_gstreamer", "GUI": "opencv_gui"}
        rows.append(("opencv build", ", ".join(f"{k} {_fmt(pkgs[v])}" for k, v in build.items())))
    rows.append(("tensorrt", _fmt(pkgs["tensorrt"], "not installed")))
    rows += [(f"{name} import error", err) for name, err in pkgs["import_errors"].items()]
    tables.append(_section("Packages", rows))

    gpu_rows = [(f"GPU {i}", _gpu_line(g)) for i, g in enumerate(facts["gpus"])] or [("GPUs", "none found")]
    if cuda["nvidia_smi_error"]:
        gpu_rows.append(("nvidia-smi error", cuda["nvidia_smi_error"]))
    gpu_rows += [("torch CUDA build", _fmt(cuda["version"], "none")),
                 ("torch CUDA available", _fmt(cuda["available"], "unknown (no torch)")),
                 ("torch CUDA devices", _fmt(cuda["device_count"], "unknown (no torch)"))]
    tables.append(_section("GPU", gpu_rows))

    if jetson is None:
        tables.append(_section("Jetson", [("Jetson", "no")]))
    else:
        power = jetson["power_mode"]
        mode = "unknown" if power is None else f"{_fmt(power['name'])} (id {_fmt(power['id'])})"
        tables.append(_section("Jetson", [("L4T", _fmt(jetson["l4t"])), ("model", _fmt(jetson["model"])),
                                          ("power mode", mode)]))
    return tables


def info(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Show this machine's CPU features, package versions, GPUs and Jetson board."""
    if json_out:
        # A package that prints on import must not corrupt the JSON on stdout.
        with contextlib.redirect_stdout(sys.stderr):
            facts = collect()
        print(json.dumps(facts, indent=2))
        return
    console = make_console()
    for table in render(collect()):
        console.print(table)
        console.print()
