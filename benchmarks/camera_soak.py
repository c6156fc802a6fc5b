"""Soak (not in CI): 4 live streams for 30 minutes, one of them killed and restarted every 5 minutes.

``edgeres camera`` runs as its own process (``--json``) on 4 ffmpeg streams (H.264 as MPEG-TS over TCP on
127.0.0.1, real time) with the 224x224 ResNet-18 FP32 engine of benchmarks/camera_loop.py. Every
``--kill-every`` minutes one stream (in turn) is killed and restarted ``--down`` seconds later. The process's
resident memory and open file descriptors (Linux /proc) are read after a warm-up minute and at the end; frames
lost are found in each stream's JSON lines as gaps in arrival time (source_ts) longer than ``--gap`` seconds.

Targets (issue: camera loop at deployment scale): memory and descriptors grow <= 5 % from start to end; frames
are lost only while a stream was down (every gap lies in one of that stream's down windows).

Run:  python benchmarks/camera_soak.py [--minutes 30] [--kill-every 5] [--down 10]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line, print_table
from camera_loop import build_engine_224
from camera_streams import free_port, h264_video, serve_tcp_command


def proc_facts(pid: int) -> tuple[float, int]:
    """(resident MiB, open file descriptors) of a process."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


class Server:
    def __init__(self, video: Path, lifetime: float):
        self.video, self.lifetime, self.port = video, lifetime, free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(serve_tcp_command("ffmpeg", self.video, self.url, self.lifetime),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--kill-every", type=float, default=5.0, help="minutes between kills")
    parser.add_argument("--down", type=float, default=10.0, help="seconds a killed stream stays down")
    parser.add_argument("--fps", type=float, default=10.0, help="each stream's frame rate")
    parser.add_argument("--gap", type=float, default=1.0, help="a longer silence in a stream counts as frames lost")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="edgeres-camera-soak-"))
    engine = build_engine_224(work)
    video = h264_video(work, args.fps, 60)
    total = args.minutes * 60
    servers = [Server(video, total + 120) for _ in range(4)]
    for s in servers:
        s.start()
    time.sleep(1.0)
    cmd = [
        sys.executable,
        "-m",
        "edgeres.cli.main",
        "camera",
        "--engine",
        str(engine),
        "--json",
        "--top-k",
        "1",
        "--overlay",
        "none",
        "--headless",
        "--duration",
        str(total),
        "--stall-timeout",
        "60",
        *[a for n, s in enumerate(servers) for a in ("--source", f"s{n}={s.url}")],
    ]
    cam = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    arrivals: dict[str, list[float]] = {f"s{n}": [] for n in range(4)}
    err: list[str] = []
    threading.Thread(target=lambda: err.extend(cam.stderr), daemon=True).start()

    def pump() -> None:
        for line in cam.stdout:
            if line.startswith("{"):
                r = json.loads(line)
                arrivals[r["stream"]].append(r["source_ts"])

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    t0 = time.monotonic()
    time.sleep(60)
    start_facts = proc_facts(cam.pid)
    down: dict[str, list[tuple[float, float]]] = {k: [] for k in arrivals}
    turn = 0
    next_kill = args.kill_every * 60
    while time.monotonic() - t0 < total - 30:
        if time.monotonic() - t0 >= next_kill:
            name = f"s{turn % 4}"
            # the stream's own clock: its last arrival when it goes down
            killed_ts = arrivals[name][-1] if arrivals[name] else 0.0
            servers[turn % 4].kill()
            time.sleep(args.down)
            servers[turn % 4].start()
            down[name].append((killed_ts, killed_ts + args.down + 20.0))  # reconnect backoff up to 8 s, then join
            turn += 1
            next_kill += args.kill_every * 60
        time.sleep(1.0)
    end_facts = proc_facts(cam.pid)
    cam.send_signal(signal.SIGTERM)
    cam.wait(60)
    reader.join(10)
    for s in servers:
        s.kill()

    print(machine_line())
    print(
        f"4 streams at {args.fps:g} fps for {args.minutes:g} min, one killed every {args.kill_every:g} min and "
        f"restarted after {args.down:g} s; ResNet-18 224x224 FP32 ONNX Runtime\n"
    )
    rss_growth = 100 * (end_facts[0] - start_facts[0]) / start_facts[0]
    fd_growth = 100 * (end_facts[1] - start_facts[1]) / start_facts[1]
    print_table(
        ["measure", "after 1 min", "at the end", "growth %", "target"],
        [
            ["resident memory MiB", f"{start_facts[0]:.1f}", f"{end_facts[0]:.1f}", f"{rss_growth:+.1f}", "<= 5"],
            ["open file descriptors", start_facts[1], end_facts[1], f"{fd_growth:+.1f}", "<= 5"],
        ],
    )
    rows, stray = [], 0
    for name, ts in arrivals.items():
        gaps = [(a, b) for a, b in itertools.pairwise(ts) if b - a > args.gap]
        outside = [g for g in gaps if not any(lo - 1 <= g[0] <= hi for lo, hi in down[name])]
        stray += len(outside)
        rows.append(
            [name, len(ts), len(down[name]), len(gaps), len(outside), f"{max((b - a for a, b in gaps), default=0):.1f}"]
        )
    print()
    print_table(
        ["stream", "results", "times killed", f"gaps > {args.gap:g} s", "gaps outside a down window", "longest gap s"],
        rows,
    )
    summary = [line for line in err if "stopped by" in line]
    print("\n" + (summary[0].strip() if summary else "no summary line (stderr tail: " + "".join(err[-5:]) + ")"))
    ok = rss_growth <= 5 and fd_growth <= 5 and stray == 0
    print(f"targets met: {'yes' if ok else 'no'}")


if __name__ == "__main__":
    main()
