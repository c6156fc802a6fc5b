"""``edgeres bench``: latency and throughput of engines (and the torch reference) in one run."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edgeres.cli.model_source import model_options


def parse_batches(text: str) -> list[int]:
    from edgeres.errors import EdgeresError

    try:
        batches = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1:
        raise EdgeresError(f"--batch '{text}' is not a comma-separated list of positive integers (e.g. 1,8,32)")
    return batches


@model_options
def bench(
    engine: list[Path] = typer.Option(None, "--engine", help="Engine file/manifest/folder (repeatable)."),
    model: Path = typer.Option(None, "--model", help="Also time this model's reference: a checkpoint or .pth in "
                               "torch eager, an .onnx in ONNX Runtime."),
    batch: str = typer.Option("1", "--batch", help="Batch sizes, e.g. 1,8,32."),
    threads: int = typer.Option(None, "--threads", min=1, help="Intra-op threads [default: runtime's choice]."),
    duration: float = typer.Option(10.0, "--duration", min=0.1, help="Seconds measured per engine and batch."),
    warmup: float = typer.Option(2.0, "--warmup", min=0.0, help="Seconds of warm-up before measuring."),
    no_spin: bool = typer.Option(False, "--no-spin", help="Don't let idle ONNX Runtime threads spin."),
    cuda_graph: bool = typer.Option(False, "--cuda-graph", help="TensorRT engines: replay CUDA graphs."),
    json_out: bool = typer.Option(False, "--json", help="Print results as JSON."),
    request=None,
) -> None:
    """Time pre-process, inference and post-process on real 640x480 frames."""
    from edgeres.bench import BenchConfig, bench_checkpoint, bench_engine, bench_environment
    from edgeres.cli.model_source import resolve_for_command
    from edgeres.errors import EdgeresError

    if not engine and not request.given:
        raise EdgeresError("nothing to benchmark: give --engine ENGINE (repeatable) and/or --model CKPT")
    reference = resolve_for_command(request, quiet=json_out).path if request.given else None
    cfg = BenchConfig(batches=parse_batches(batch), threads=threads, duration=duration, warmup=warmup,
                      spinning=not no_spin, cuda_graph=cuda_graph)
    rows = [bench_engine(e, cfg) for e in engine or []]
    if reference is not None:
        rows.append(bench_checkpoint(reference, cfg))
    for row in rows:
        for r in row["results"]:
            r.pop("samples_ms", None)  # per-iteration times stay in reports; the summary is what bench prints
    report = {"environment": bench_environment(cfg), "engines": rows}
    if json_out:
        print(json.dumps(report, indent=2))
    else:
        print_bench(report)


def print_bench(report: dict) -> None:
    from rich.table import Table

    from edgeres.cli.console import make_console

    env = report["environment"]
    console = make_console()
    console.print(f"[bold]{env['cpu']}[/] ({env['cpu_isa']}, {env['cores']} cores)  {env['date']}", highlight=False)
    console.print("  " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v), highlight=False)
    s = env["settings"]
    console.print(f"  threads {s['threads'] or 'default'}, {s['duration']} s measured after {s['warmup']} s warm-up; "
                  f"{env['frames']}", highlight=False)
    table = Table()
    for col in ("engine", "backend", "prec", "batch", "e2e p50 ms", "p90", "p99", "mean±std",
                "pre ms", "infer ms", "post ms", "img/s", "peak RSS MiB"):
        table.add_column(col, justify="left" if col in ("engine", "backend", "prec") else "right")
    for row in report["engines"]:
        for r in row["results"]:
            lat = r["latency_ms"]
            e2e = lat["end_to_end"]
            table.add_row(
                row["name"], row["backend"], row["precision"], str(r["batch"]), f"{e2e['p50']:.2f}",
                f"{e2e['p90']:.2f}", f"{e2e['p99']:.2f}", f"{e2e['mean']:.2f}±{e2e['std']:.2f}",
                f"{lat['preprocess']['p50']:.2f}",
                f"{lat['inference']['p50']:.2f}" + (f" (GPU {r['gpu_compute_ms']['p50']:.2f})"
                                                    if "gpu_compute_ms" in r else ""),
                f"{lat['postprocess']['p50']:.3f}", f"{r['throughput_ips']:.1f}", f"{row['peak_rss_mb']:.0f}",
            )
    console.print(table)
    from edgeres.bench import tuning_notes

    for note in tuning_notes(report["engines"]):
        console.print(f"  note: {note}", highlight=False)
    if env.get("jetson"):
        j = env["jetson"]
        mode = (j.get("power_mode") or {}).get("name")
        console.print(f"  Jetson {j.get('model')}, L4T {j.get('l4t')}: power mode {mode}, clocks locked: "
                      f"{j.get('clocks_locked')}", highlight=False)
