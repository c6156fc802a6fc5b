"""Many streams into one batched engine: 4 live streams vs 1 vs ``edgeres bench`` on the same engine, same run.

A 224x224 ResNet-18 FP32 ONNX Runtime engine (random weights: speed does not depend on them). Each stream is
``ffmpeg`` serving the 640x480 digits test video in H.264 as MPEG-TS over TCP on 127.0.0.1 in real time (a
camera's behaviour: frames come at their rate whether or not anyone keeps up). Every stream runs faster than its
share of the engine, so the engine is the limit and the newest frame of each stream wins.

Per round, interleaved so machine noise hits all alike: ``bench_engine`` (what ``edgeres bench`` runs:
pre-process + inference + post-process of 640x480 frames) at batch 4 and at batch 1, with and without spinning
ONNX Runtime threads (the faster counts, as in benchmarks/camera_loop.py); the camera loop on 4 streams (batches
of up to 4); the camera loop on 1 stream.

Targets (issue: camera loop at deployment scale): 4-stream total FPS >= 0.8x bench batch-4 throughput; every
stream's FPS within 20 % of the streams' mean. The 1-stream run is compared with bench batch 1.

Run:  python benchmarks/camera_streams.py [--rounds 3] [--duration 20]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line, print_table
from camera_loop import build_engine_224, spread


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_tcp_command(ffmpeg: str, video: Path, url: str, lifetime: float) -> list[str]:
    """ffmpeg serving ``video`` looped in real time as MPEG-TS on ``url`` (tcp://HOST:PORT, one client)."""
    return [
        ffmpeg,
        "-nostdin",
        "-v",
        "error",
        "-re",
        "-stream_loop",
        "-1",
        "-i",
        str(video),
        "-t",
        str(lifetime),
        "-c",
        "copy",
        "-f",
        "mpegts",
        f"{url}?listen=1",
    ]


@contextlib.contextmanager
def ffmpeg_streams(video: Path, count: int, lifetime: float):
    """``count`` ffmpeg processes serving ``video`` (looped, real time) on tcp://127.0.0.1:PORT; yields the URLs."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        sys.exit("ffmpeg is not on PATH (apt-get install ffmpeg)")
    procs, urls = [], []
    try:
        for _ in range(count):
            port = free_port()
            url = f"tcp://127.0.0.1:{port}"
            command = serve_tcp_command(ffmpeg, video, url, lifetime)
            procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            urls.append(url)
        time.sleep(1.0)  # listening
        yield urls
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait(10)


def h264_video(work: Path, fps: float, seconds: float) -> Path:
    from edgeres.data.digits_video import write_digits_video

    write_digits_video(work / "video", frames=int(fps * seconds), fps=fps, size=(640, 480))
    out = work / "digits_h264.mkv"
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-i",
            str(work / "video" / "digits.mkv"),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            str(round(fps)),
            "-pix_fmt",
            "yuv420p",
            str(out),
        ],
        check=True,
        timeout=600,
    )
    return out


def run_streams_once(engine: Path, video: Path, count: int, duration: float, threads: int | None) -> dict:
    from edgeres.camera.loop import CameraConfig, LoopConfig, run_camera
    from edgeres.camera.overlays import OverlayConfig
    from edgeres.camera.sources import SourceConfig

    with ffmpeg_streams(video, count, duration + 60) as urls:
        cfg = CameraConfig(
            engine=engine,
            source=SourceConfig(urls[0]),
            threads=threads,
            sources=[f"s{n}={u}" for n, u in enumerate(urls)],
            loop=LoopConfig(duration=duration, overlays=OverlayConfig(False, False, False), stall_timeout=30),
        )
        return run_camera(cfg, lambda rate: [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured per camera run")
    parser.add_argument("--bench-duration", type=float, default=8.0, help="seconds per bench measurement")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None, help="inference threads (default: the runtime's)")
    args = parser.parse_args()

    from edgeres.bench import BenchConfig, bench_engine

    work = Path(tempfile.mkdtemp(prefix="edgeres-camera-streams-"))
    engine = build_engine_224(work)
    n = args.streams

    def bench(batch: int) -> dict:
        best = None
        for spin in (True, False):
            r = bench_engine(
                engine,
                BenchConfig(
                    batches=[batch], threads=args.threads, duration=args.bench_duration, warmup=2.0, spinning=spin
                ),
            )["results"][0]
            if best is None or r["throughput_ips"] > best["throughput_ips"]:
                best = r
        return best

    probe = bench(n)["throughput_ips"]
    # Every stream faster than its share of the engine (x1.5), at least 15 fps: the engine is the limit.
    fps = float(min(60, max(15, round(1.5 * probe / n))))
    fps_single = float(min(60, max(30, round(1.5 * bench(1)["throughput_ips"]))))
    video = h264_video(work, fps, 30)
    video_single = h264_video(work / "single", fps_single, 30) if fps_single != fps else video

    rows = {
        k: []
        for k in (
            "bench_n",
            "bench_1",
            "multi_fps",
            "single_fps",
            "spread",
            "mean_batch",
            "c2r_p50",
            "c2r_p99",
            "single_c2r_p50",
            "dropped",
        )
    }
    per_stream_last: list[dict] = []
    for _ in range(args.rounds):
        rows["bench_n"].append(bench(n)["throughput_ips"])
        multi = run_streams_once(engine, video, n, args.duration, args.threads)
        rows["bench_1"].append(bench(1)["throughput_ips"])
        single = run_streams_once(engine, video_single, 1, args.duration, args.threads)
        fpss = [s["fps"] or 0.0 for s in multi["streams"]]
        mean = float(np.mean(fpss))
        rows["multi_fps"].append(multi["fps"] or 0.0)
        rows["spread"].append(100.0 * max(abs(f - mean) for f in fpss) / mean if mean else float("nan"))
        rows["mean_batch"].append(multi["batching"]["mean_batch"] or 0.0)
        rows["c2r_p50"].append(multi["latency_ms"]["capture_to_result"]["p50"])
        rows["c2r_p99"].append(multi["latency_ms"]["capture_to_result"]["p99"])
        rows["dropped"].append(100.0 * multi["frames_dropped"] / max(multi["frames_read"], 1))
        rows["single_fps"].append(single["fps"] or 0.0)
        rows["single_c2r_p50"].append(single["latency_ms"]["capture_to_result"]["p50"])
        per_stream_last = multi["streams"]

    ratio_n = [m / b for m, b in zip(rows["multi_fps"], rows["bench_n"], strict=True)]
    ratio_1 = [s / b for s, b in zip(rows["single_fps"], rows["bench_1"], strict=True)]
    print(machine_line())
    print(
        f"ResNet-18 224x224 FP32 ONNX Runtime, threads {args.threads or 'default'}; streams: ffmpeg serving the "
        f"640x480 digits video (H.264, MPEG-TS over TCP on 127.0.0.1) at {fps:g} fps each ({n} streams) and "
        f"{fps_single:g} fps (1 stream); no overlays, no outputs; {args.rounds} interleaved rounds of "
        f"{args.duration:g} s; median (min-max across rounds)\n"
    )
    print_table(
        ["measure", f"{n} streams", "1 stream", "target"],
        [
            [
                f"edgeres bench throughput, img/s (batch {n} / batch 1)",
                spread(rows["bench_n"]),
                spread(rows["bench_1"]),
                "",
            ],
            ["camera loop processed FPS (all streams)", spread(rows["multi_fps"]), spread(rows["single_fps"]), ""],
            ["loop / bench", spread(ratio_n, "{:.2f}"), spread(ratio_1, "{:.2f}"), ">= 0.80 (streams)"],
            ["largest deviation of a stream's FPS from the mean (%)", spread(rows["spread"]), "", "<= 20"],
            ["mean batch", spread(rows["mean_batch"], "{:.2f}"), "1", ""],
            ["capture-to-result p50 ms", spread(rows["c2r_p50"]), spread(rows["single_c2r_p50"]), ""],
            ["capture-to-result p99 ms", spread(rows["c2r_p99"]), "", ""],
            ["frames dropped (%)", spread(rows["dropped"]), "", ""],
        ],
    )
    print("\nPer stream, last round:\n")
    print_table(
        ["stream", "read", "processed", "dropped", "FPS", "capture-to-result p50 / p90 / p99 ms", "inference p50 ms"],
        [
            [
                s["name"],
                s["frames_read"],
                s["frames_processed"],
                s["frames_dropped"],
                f"{s['fps'] or 0:.1f}",
                " / ".join(f"{s['latency_ms']['capture_to_result'][k]:.1f}" for k in ("p50", "p90", "p99")),
                f"{s['latency_ms']['inference']['p50']:.1f}",
            ]
            for s in per_stream_last
        ],
    )
    ok = min(ratio_n) >= 0.8 and max(rows["spread"]) <= 20
    print(f"\ntargets met in every round: {'yes' if ok else 'no'}")


if __name__ == "__main__":
    main()
