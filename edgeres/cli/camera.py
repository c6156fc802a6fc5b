"""``edgeres camera``: run an engine on a camera, file, stream or image folder; overlays, recording, JSON lines."""

from __future__ import annotations

from pathlib import Path

import typer


def parse_size(text: str, option: str) -> tuple[int, int]:
    """``WxH`` -> (width, height).

    Raises:
        EdgeresError: not two positive integers joined by x.
    """
    from edgeres.errors import EdgeresError

    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        w = h = 0
    if w <= 0 or h <= 0:
        raise EdgeresError(f"{option} '{text}' is not WIDTHxHEIGHT (e.g. 1280x720)")
    return w, h


def camera(
    engine: Path = typer.Option(..., "--engine", help="Engine file, its manifest or its folder."),
    source: str = typer.Option(..., "--source", help="Camera index or /dev/videoN, video file, rtsp:// http:// "
                               "tcp:// udp:// URL, csi://N, a GStreamer pipeline ending in appsink, or an image "
                               "folder."),
    realtime: bool = typer.Option(False, "--realtime", help="Pace files and image folders at their frame rate, "
                                  "dropping frames like a live source (default: process every frame)."),
    fps: float = typer.Option(None, "--fps", min=0.1, help="Frame rate of an image folder [default: 30]."),
    max_frames: int = typer.Option(None, "--max-frames", min=1, help="Stop after this many processed frames."),
    duration: float = typer.Option(None, "--duration", min=0.001, help="Stop after this many seconds."),
    record: Path = typer.Option(None, "--record", help="Write the annotated video (.mkv recommended, .mp4, .avi)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --record file."),
    json_out: bool = typer.Option(False, "--json", help="One JSON line per frame on stdout (frame, source_ts, "
                                  "predictions, times_ms); the summary goes to stderr."),
    headless: bool = typer.Option(False, "--headless", help="Never open a window."),
    overlay: str = typer.Option("labels,fps,latency", "--overlay", help="Comma list of labels, fps, latency; "
                                "or all, or none."),
    top_k: int = typer.Option(5, "--top-k", min=1, help="Predictions per frame (the overlay shows up to 5)."),
    score_threshold: float = typer.Option(None, "--score-threshold", help="detect: lowest box score shown "
                                          "[default: the engine manifest's]."),
    nms_iou: float = typer.Option(None, "--nms-iou", help="detect: NMS IoU [default: the engine manifest's]."),
    threads: int = typer.Option(None, "--threads", min=1, help="Inference threads [default: runtime's choice]."),
    decoder: str = typer.Option("auto", "--decoder", help="auto: Jetson hardware decoding when available, else "
                                "FFmpeg; cpu: FFmpeg only; jetson: hardware only."),
    open_timeout: float = typer.Option(10.0, "--open-timeout", min=0.1, help="Seconds to open the source."),
    read_timeout: float = typer.Option(5.0, "--read-timeout", min=0.1, help="Seconds one FFmpeg read may block."),
    stall_timeout: float = typer.Option(20.0, "--stall-timeout", min=0.0, help="Give up when no frame arrives for "
                                        "this long, reconnects included (0: never)."),
    csi_size: str = typer.Option("1280x720", "--csi-size", help="Capture size of a csi:// camera."),
    csi_fps: int = typer.Option(30, "--csi-fps", min=1, help="Frame rate of a csi:// camera."),
) -> None:
    """Classify frames, or detect objects in them, from a camera, file, stream or folder with a pipelined loop;
    print a summary at the end."""
    from edgeres.camera.loop import CameraConfig, LoopConfig, Stopper, run_camera, stop_on_signals
    from edgeres.camera.overlays import OverlayConfig
    from edgeres.camera.sinks import JsonSink, VideoRecorder, Window, gui_available
    from edgeres.camera.sources import SourceConfig
    from edgeres.cli.console import make_console

    err = make_console(stderr=True)
    overlays = OverlayConfig.parse(overlay)
    recorder = VideoRecorder(record, force=force) if record is not None else None  # refuse before any work
    cfg = CameraConfig(
        engine=engine,
        source=SourceConfig(source, decoder=decoder, open_timeout=open_timeout, read_timeout=read_timeout, fps=fps,
                            csi_size=parse_size(csi_size, "--csi-size"), csi_fps=csi_fps),
        loop=LoopConfig(max_frames=max_frames, duration=duration, realtime=realtime, top_k=top_k,
                        score_threshold=score_threshold, nms_iou=nms_iou, stall_timeout=stall_timeout,
                        overlays=overlays),
        threads=threads,
    )
    window = not headless and gui_available()

    def sinks(rate: float) -> list:  # called once the engine and the source are open
        if not headless and not window and recorder is None and not json_out:
            err.print("note: no window (this OpenCV has no GUI support or no display is set); running headless. "
                      "Add --record FILE or --json to see results, or --headless to silence this.", highlight=False)
        out = []
        if recorder is not None:
            recorder.fps = rate
            out.append(recorder)
        if window:
            out.append(Window())
        if json_out:
            out.append(JsonSink())
        return out

    def on_event(level: str, message: str) -> None:
        from rich.markup import escape

        err.print(f"{level}: {escape(message)}", highlight=False)

    stopper = Stopper()
    with stop_on_signals(stopper):
        summary = run_camera(cfg, sinks, stopper, on_event)
    print_summary(summary, make_console(stderr=json_out), recorder)


def print_summary(s: dict, console, recorder=None) -> None:
    """Counts, FPS and per-stage latency p50/p99 as a small table."""
    from rich.table import Table

    fps = f"{s['fps']:.1f}" if s["fps"] else "n/a"
    console.print(f"{s['source']} via {s['opened_with']}: stopped by {s['stopped_by']} after {s['seconds']:.1f} s; "
                  f"frames read {s['frames_read']}, processed {s['frames_processed']}, dropped {s['frames_dropped']}, "
                  f"decode errors {s['decode_errors']}, reconnects {s['reconnects']}; {fps} FPS", highlight=False)
    if recorder is not None and recorder.frames:
        console.print(f"recorded {recorder.frames} frames to {recorder.path} ({recorder.format}, "
                      f"{recorder.fps:g} fps)", highlight=False)
    if not s["latency_ms"]:
        return
    table = Table()
    for col in ("stage", "p50 ms", "p99 ms", "mean ms", "max ms"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for stage, st in s["latency_ms"].items():
        table.add_row(stage.replace("_", " "), f"{st['p50']:.2f}", f"{st['p99']:.2f}", f"{st['mean']:.2f}",
                      f"{st['max']:.2f}")
    console.print(table)
