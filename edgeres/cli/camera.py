"""``edgeres camera``: run an engine on one or many cameras, files, streams or image folders; overlays, recordings,
JSON lines, a live view in the browser, re-streaming."""

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
    source: list[str] = typer.Option(
        None,
        "--source",
        help="Camera index or /dev/videoN, video file, rtsp:// "
        "http:// tcp:// udp:// URL, csi://N, a GStreamer pipeline ending in appsink, or "
        "an image folder; NAME=SOURCE names it. Repeat for several streams.",
    ),
    sources: Path = typer.Option(
        None, "--sources", help="A file listing the sources, one per line (SOURCE or NAME=SOURCE; # comments)."
    ),
    realtime: bool = typer.Option(
        False,
        "--realtime",
        help="Pace files and image folders at their frame rate, "
        "dropping frames like a live source (default: process every frame).",
    ),
    fps: float = typer.Option(None, "--fps", min=0.1, help="Frame rate of an image folder [default: 30]."),
    max_frames: int = typer.Option(
        None, "--max-frames", min=1, help="Stop after this many processed frames (all streams together)."
    ),
    duration: float = typer.Option(None, "--duration", min=0.001, help="Stop after this many seconds."),
    max_batch_wait: float = typer.Option(
        10.0,
        "--max-batch-wait",
        min=0.0,
        help="Milliseconds to wait for the "
        "other streams' frames once one is waiting, to fill a batch (0: run what "
        "is there).",
    ),
    max_batch: int = typer.Option(
        None, "--max-batch", min=1, help="Largest batch [default: the engine's, at most the number of streams]."
    ),
    record: Path = typer.Option(
        None,
        "--record",
        help="Write the annotated video (.mkv recommended, .mp4, .avi); "
        "with several streams a folder (one .mkv per stream), or a file with --tile.",
    ),
    tile: bool = typer.Option(False, "--tile", help="Record (and re-stream) all streams tiled in one video."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing --record files."),
    json_out: bool = typer.Option(
        False,
        "--json",
        help="One JSON line per frame on stdout (stream, frame, "
        "source_ts, predictions, times_ms); the summary goes to stderr.",
    ),
    headless: bool = typer.Option(False, "--headless", help="Never open a window."),
    serve: str = typer.Option(
        None,
        "--serve",
        help="Live view in a browser at [HOST:]PORT (127.0.0.1 unless a "
        "host is given): annotated frames, predictions, latency; /results (SSE), /health.",
    ),
    serve_token: str = typer.Option(
        None,
        "--serve-token",
        envvar="EDGERES_SERVE_TOKEN",
        help="Require this token (?token= or Authorization: Bearer) for the live view.",
    ),
    restream: list[str] = typer.Option(
        None,
        "--restream",
        help="Send the annotated video to rtsp://HOST[:PORT]/PATH "
        "(an RTSP server), rtp://HOST:PORT or udp://HOST:PORT; {name} in the URL: one "
        "per stream, else streams are tiled. Repeat for several targets.",
    ),
    restream_sdp: Path = typer.Option(
        None,
        "--restream-sdp",
        help="Where to write an rtp:// re-stream's SDP "
        "(players open it) [default: a file in the temp folder, named on stderr].",
    ),
    overlay: str = typer.Option(
        "labels,fps,latency", "--overlay", help="Comma list of labels, fps, latency; or all, or none."
    ),
    top_k: int = typer.Option(
        None, "--top-k", min=1, help="classify: predictions per frame (the overlay shows up to 5) [default: 5]."
    ),
    score_threshold: float = typer.Option(
        None, "--score-threshold", help="detect: lowest box score shown [default: the engine manifest's]."
    ),
    nms_iou: float = typer.Option(None, "--nms-iou", help="detect: NMS IoU [default: the engine manifest's]."),
    view: str = typer.Option(None, "--view", help="segment: overlay (colours over the image) or mask (the colour "
                             "map alone) [default: overlay]."),
    overlay_alpha: float = typer.Option(None, "--overlay-alpha", help="segment: opacity of the class colours "
                                        "[default: 0.5]."),
    threads: int = typer.Option(None, "--threads", min=1, help="Inference threads [default: runtime's choice]."),
    decoder: str = typer.Option(
        "auto",
        "--decoder",
        help="auto: Jetson hardware decoding when available, else FFmpeg; cpu: FFmpeg only; jetson: hardware only.",
    ),
    open_timeout: float = typer.Option(10.0, "--open-timeout", min=0.1, help="Seconds to open a source."),
    read_timeout: float = typer.Option(5.0, "--read-timeout", min=0.1, help="Seconds one FFmpeg read may block."),
    stall_timeout: float = typer.Option(
        20.0,
        "--stall-timeout",
        min=0.0,
        help="A stream that sends no frame for "
        "this long is reported (reconnects included); the run ends when all are "
        "silent (0: never).",
    ),
    csi_size: str = typer.Option("1280x720", "--csi-size", help="Capture size of a csi:// camera."),
    csi_fps: int = typer.Option(30, "--csi-fps", min=1, help="Frame rate of a csi:// camera."),
) -> None:
    """Classify frames, or detect objects in them, from one or many cameras, files, streams or folders with a
    pipelined, batched loop; show, record, serve or re-stream the results; print a summary at the end."""
    from edgeres.camera.loop import CameraConfig, LoopConfig, Stopper, plan_run, run_camera, stop_on_signals
    from edgeres.camera.overlays import OverlayConfig
    from edgeres.camera.recordings import StreamRecorders, recording_sink
    from edgeres.camera.sinks import JsonSink, Window, gui_available
    from edgeres.camera.sources import SourceConfig, read_sources_file
    from edgeres.cli.console import make_console
    from edgeres.errors import EdgeresError

    err = make_console(stderr=True)

    def on_event(level: str, message: str) -> None:
        from rich.markup import escape

        err.print(f"{level}: {escape(message)}", highlight=False)

    if source and sources is not None:
        raise EdgeresError("give the sources with --source (repeated) or with --sources FILE, not both")
    texts = read_sources_file(sources) if sources is not None else list(source or [])
    overlays = OverlayConfig.parse(overlay)
    cfg = CameraConfig(
        engine=engine,
        source=SourceConfig(
            texts[0] if texts else "",
            decoder=decoder,
            open_timeout=open_timeout,
            read_timeout=read_timeout,
            fps=fps,
            csi_size=parse_size(csi_size, "--csi-size"),
            csi_fps=csi_fps,
        ),
        loop=LoopConfig(
            max_frames=max_frames,
            duration=duration,
            realtime=realtime,
            top_k=top_k,
            score_threshold=score_threshold,
            nms_iou=nms_iou,
            view=view,
            overlay_alpha=overlay_alpha,
            stall_timeout=stall_timeout,
            overlays=overlays,
            max_batch_wait=max_batch_wait / 1e3,
            max_batch=max_batch,
        ),
        threads=threads,
        sources=texts,
    )
    # Everything the user typed is checked before any work: sources, paths, the re-stream target, the port.
    streams = plan_run(cfg)
    names = [s.name for s in streams]
    if tile and record is None:
        raise EdgeresError(
            "--tile records all streams into one file; give --record FILE too (a re-stream of several "
            "streams is tiled unless its URL has {name})"
        )
    recorder = recording_sink(record, names, tile, force) if record is not None else None
    restreamers = []
    if restream:
        from edgeres.camera.restream import Restreamer, check_target

        if len(set(restream)) < len(restream):
            raise EdgeresError("the same --restream target is given twice")
        restreamers = [
            Restreamer(
                check_target(url, open_timeout), names, on_event, sdp_file=str(restream_sdp) if restream_sdp else None
            )
            for url in restream
        ]
    view = None
    if serve is not None:
        from edgeres.camera.serve import LiveView, parse_serve

        address = parse_serve(serve)
        if not address.loopback and not serve_token:
            on_event(
                "warning",
                f"!!! the live view listens on {address.host}, reachable from other machines, "
                "WITHOUT a token: anyone on the network sees the cameras. Add --serve-token TOKEN "
                "(or EDGERES_SERVE_TOKEN) !!!",
            )
        view = LiveView(address, names, token=serve_token).start()
        note = " (add ?token=YOUR_TOKEN)" if serve_token else ""
        on_event("note", f"live view at {address.url(view.port)}{note}; results at /results, health at /health")
    window = not headless and gui_available()

    def sinks(rate) -> list:  # called once the engine and the sources are open
        if not headless and not window and recorder is None and not json_out and view is None and not restreamers:
            err.print(
                "note: no window (this OpenCV has no GUI support or no display is set); running headless. "
                "Add --record, --json, --serve or --restream to see results, or --headless to silence this.",
                highlight=False,
            )
        out = []
        if recorder is not None:
            if isinstance(recorder, StreamRecorders):
                recorder.set_rates(rate.per_stream)
            else:
                recorder.fps = rate
            out.append(recorder)
        for restreamer in restreamers:
            restreamer.fps = float(rate)
            out.append(restreamer)
        if view is not None:
            out.append(view)
        if window:
            out.append(Window(multi=len(names) > 1))
        if json_out:
            out.append(JsonSink())
        return out

    stopper = Stopper()
    try:
        with stop_on_signals(stopper):
            summary = run_camera(cfg, sinks, stopper, on_event)
    finally:
        for sink in (view, *restreamers):
            if sink is not None:
                sink.close()  # idempotent: closed already when the loop ran
    out = make_console(stderr=json_out)
    print_summary(summary, out, recorder)
    for restreamer in restreamers:
        restarts = sum(e.restarts for e in restreamer.encoders.values())
        out.print(
            f"re-streamed {restreamer.frames} frames to {restreamer.url}"
            + (f" ({restarts} encoder restarts)" if restarts else ""),
            highlight=False,
        )
    if summary.get("failures"):  # a recording that could not be written: said in one line, exit 1
        more = len(summary["failures"]) - 1
        raise EdgeresError(summary["failures"][0] + (f" (and {more} more recordings)" if more else ""))


def print_summary(s: dict, console, recorder=None) -> None:
    """Counts, FPS and per-stage latency p50/p99 as a small table; with several streams, a row per stream."""
    from rich.table import Table

    fps = f"{s['fps']:.1f}" if s["fps"] else "n/a"
    via = f" via {s['opened_with']}" if len(s["streams"]) == 1 else ""
    console.print(
        f"{s['source']}{via}: stopped by {s['stopped_by']} after {s['seconds']:.1f} s; "
        f"frames read {s['frames_read']}, processed {s['frames_processed']}, dropped {s['frames_dropped']}, "
        f"decode errors {s['decode_errors']}, reconnects {s['reconnects']}; {fps} FPS",
        highlight=False,
    )
    batching = s.get("batching") or {}
    if len(s["streams"]) > 1 and batching.get("batches"):
        console.print(
            f"batches {batching['batches']}, mean size {batching['mean_batch']:.2f} (largest "
            f"{batching['max_batch']}{', fixed' if batching['fixed'] else ''}; waited up to "
            f"{batching['max_wait_ms']:g} ms to fill one)",
            highlight=False,
        )
    if recorder is not None and recorder.frames and not s.get("failures"):
        if hasattr(recorder, "folder"):
            console.print(
                f"recorded {recorder.frames} frames to {recorder.folder} (one file per stream)", highlight=False
            )
        else:
            console.print(
                f"recorded {recorder.frames} frames to {recorder.path} ({recorder.format}, {recorder.fps:g} fps)",
                highlight=False,
            )
    if len(s["streams"]) > 1:
        table = Table(title="per stream")
        for col in (
            "stream",
            "read",
            "processed",
            "dropped",
            "decode errors",
            "reconnects",
            "FPS",
            "capture to result p50 ms",
            "p99 ms",
        ):
            table.add_column(col, justify="left" if col == "stream" else "right")
        for row in s["streams"]:
            c2r = row["latency_ms"].get("capture_to_result")
            table.add_row(
                f"{row['name']} ({row['source']})",
                str(row["frames_read"]),
                str(row["frames_processed"]),
                str(row["frames_dropped"]),
                str(row["decode_errors"]),
                str(row["reconnects"]),
                f"{row['fps']:.1f}" if row["fps"] else "n/a",
                f"{c2r['p50']:.2f}" if c2r else "n/a",
                f"{c2r['p99']:.2f}" if c2r else "n/a",
            )
        console.print(table)
    if not s["latency_ms"]:
        return
    table = Table(title="all streams" if len(s["streams"]) > 1 else None)
    for col in ("stage", "p50 ms", "p99 ms", "mean ms", "max ms"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for stage, st in s["latency_ms"].items():
        table.add_row(
            stage.replace("_", " "), f"{st['p50']:.2f}", f"{st['p99']:.2f}", f"{st['mean']:.2f}", f"{st['max']:.2f}"
        )
    console.print(table)
