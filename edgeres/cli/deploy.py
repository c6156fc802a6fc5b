"""``edgeres deploy``: hand an engine to DeepStream (nvinfer config + app) or Triton (model repository)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

app = typer.Typer(help="Hand an engine to DeepStream or Triton Inference Server.", no_args_is_help=True)


class Int8From(str, Enum):
    qdq = "qdq"
    cache = "cache"


@app.command("deepstream")
def deepstream(
    engine: Path = typer.Option(..., "--engine", help="Engine folder, file or manifest."),
    out: Path = typer.Option(..., "--out", help="Folder to write the nvinfer config, labels, ONNX and app into."),
    batch_size: int = typer.Option(1, "--batch-size", help="nvinfer batch-size: streams batched per call."),
    int8_from: Int8From = typer.Option(
        None,
        "--int8-from",
        help="INT8: qdq (explicit, the Q/DQ ONNX) or cache (FP32 ONNX + calibration cache, "
        "TensorRT <= 10) [default: the engine's, else qdq].",
    ),
    tensorrt_version: str = typer.Option(
        None,
        "--tensorrt-version",
        help="INT8: the device's TensorRT, for the calibration file header "
        "(JetPack 6.0: 8.6.2, 6.1/6.2: 10.3.0) [default: a TensorRT engine's].",
    ),
    calib: Path = typer.Option(None, "--calib", help="INT8: the calibration folder, if it moved since the build."),
    classifier_threshold: float = typer.Option(
        None, "--classifier-threshold", help="Classifiers: min probability [default: 0.0]."
    ),
    gpu_id: int = typer.Option(0, "--gpu-id", min=0),
    force: bool = typer.Option(False, "--force", help="Replace a folder written by 'edgeres deploy'."),
) -> None:
    """Write a Gst-nvinfer config, labels, the ONNX (+ calibration file) and a DeepStream Python app."""
    from edgeres.cli.console import make_console
    from edgeres.deploy.deepstream import CONFIG_FILE, DeepStreamConfig, deploy_deepstream

    done = deploy_deepstream(
        DeepStreamConfig(
            engine=engine,
            out=out,
            batch_size=batch_size,
            int8_from=int8_from.value if int8_from else None,
            tensorrt_version=tensorrt_version,
            calib=calib,
            classifier_threshold=classifier_threshold,
            gpu_id=gpu_id,
            force=force,
        )
    )
    console = make_console()
    precision = done["precision"] + (
        f" ({done['int8_from']}, TensorRT {done['tensorrt_version']})" if done["int8_from"] else ""
    )
    console.print(f"wrote {out}/ for DeepStream: {', '.join(done['files'])}")
    console.print(f"  {done['task']}, {precision}, batch-size {done['max_batch']}; {done['normalization']}")
    for note in done["notes"]:
        console.print(f"  note: {note}")
    console.print(
        f"  run on the device: cd {out} && python3 deepstream_app.py file:///path/video.mp4 "
        f"(or: deepstream-app with {CONFIG_FILE} as the primary GIE config)"
    )


@app.command("triton")
def triton(
    engine: Path = typer.Option(..., "--engine", help="Engine folder, file or manifest."),
    out: Path = typer.Option(..., "--out", help="Triton model repository to write the model folders into."),
    name: str = typer.Option(None, "--name", help="Model name [default: the engine's]."),
    dynamic_batching: bool = typer.Option(True, "--dynamic-batching/--no-dynamic-batching"),
    max_queue_delay_us: int = typer.Option(100, "--max-queue-delay-us", help="Dynamic batching: wait for more."),
    instances: int = typer.Option(1, "--instances", help="instance_group count."),
    triton_release: str = typer.Option(
        None,
        "--triton-release",
        help="TensorRT plans: the release to serve them with, e.g. 24.08 (checked against the plan's TensorRT).",
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Write into an existing repository (replaces only the model folders 'edgeres deploy' wrote).",
    ),
) -> None:
    """Write a Triton model repository (config.pbtxt, model, labels; detectors: + post-processing ensemble)."""
    from edgeres.cli.console import make_console
    from edgeres.deploy.triton import TritonConfig, deploy_triton

    result = deploy_triton(
        TritonConfig(
            engine=engine,
            out=out,
            name=name,
            dynamic_batching=dynamic_batching,
            max_queue_delay_us=max_queue_delay_us,
            instances=instances,
            triton_release=triton_release,
            force=force,
        )
    )
    err = make_console(stderr=True)
    for warning in result.warnings:
        err.print(f"warning: {warning}")
    console = make_console()
    console.print(f"wrote {', '.join(result.models)} into the Triton repository {out}")
    for note in result.notes:
        console.print(f"  {note}")
    console.print(f"  serve: tritonserver --model-repository {Path(out).resolve()}")
