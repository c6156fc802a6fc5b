"""Soak (not in CI): 4 live streams for 30 minutes, one of them killed and restarted every 5 minutes.

``edgeres camera`` runs as its own process (``--json``) on 4 ffmpeg streams (H.264 as MPEG-TS over TCP on
127.0.0.1, real time) with the 224x224 ResNet-18 FP32 engine of benchmarks/camera_loop.py. Every
``--kill-every`` minutes one stream (in turn) is killed and restarted ``--down`` seconds later. The process's
resident memory (and its anonymous part, from /proc/PID/smaps_rollup) and open file descriptors are sampled
every ``--sample-every`` seconds and printed as a curve; frames lost are found in each stream's JSON lines as
gaps in arrival time (source_ts) longer than ``--gap`` seconds.

Targets (issue: camera loop at deployment scale): memory and descriptors grow <= 5 % from start (after a
warm-up minute) to end; frames are lost only while a stream was down (every gap lies in one of that stream's
down windows). The growth from minute 5 to the end is printed too: allocator growth levels off after
warm-up, a leak does not.

``--env NAME=VALUE`` runs the camera with that environment (e.g. ``MALLOC_ARENA_MAX=2`` to compare glibc's
arenas); ``--tracemalloc FILE`` runs it under tracemalloc and writes the Python allocations that grew most
since the first sample to FILE at every sample (slow: for finding a leak, not for the numbers).

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


def anonymous_mib(pid: int) -> float:
    """Resident anonymous memory (heap, arenas, numpy buffers; not mapped libraries) of a process, MiB."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Anonymous:"):
            return int(line.split()[1]) / 1024
    return 0.0


# Runs the CLI under tracemalloc, writing the top growth since the first sample every ``interval`` seconds.
TRACEMALLOC_RUNNER = r"""
import runpy, sys, threading, time, tracemalloc
out, interval = sys.argv[1], float(sys.argv[2])
sys.argv = ["edgeres", *sys.argv[3:]]
tracemalloc.start(8)
def dump():
    base = None
    while True:
        time.sleep(interval)
        snap = tracemalloc.take_snapshot()
        if base is None:
            base = snap
            continue
        lines = [str(s) for s in snap.compare_to(base, "traceback")[:8]]
        with open(out, "a") as f:
            f.write(f"--- {time.strftime('%H:%M:%S')} traced {tracemalloc.get_traced_memory()[0] / 2**20:.1f} MiB\n")
            for stat in snap.compare_to(base, "traceback")[:6]:
                f.write(f"{stat.size_diff / 2**20:+.2f} MiB {stat.count_diff:+d} blocks\n")
                f.write("\n".join("    " + l for l in stat.traceback.format()[-8:]) + "\n")
threading.Thread(target=dump, daemon=True).start()
runpy.run_module("edgeres.cli.main", run_name="__main__")
"""


class Server:
    def __init__(self, video: Path, lifetime: float):
        self.video, self.lifetime, self.port = video, lifetime, free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            serve_tcp_command("ffmpeg", self.video, self.url, self.lifetime),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

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
    parser.add_argument("--sample-every", type=float, default=60.0, help="seconds between memory samples")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the camera process")
    parser.add_argument("--tracemalloc", type=Path, help="write tracemalloc's top growth here (slow)")
    parser.add_argument("--work", type=Path, help="reuse this folder's engine and video (made if missing)")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="edgeres-camera-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    engine = work / "r18-fp32" if (work / "r18-fp32").is_dir() else build_engine_224(work)
    video = work / "digits_h264.mkv" if (work / "digits_h264.mkv").is_file() else h264_video(work, args.fps, 60)
    total = args.minutes * 60
    servers = [Server(video, total + 120) for _ in range(4)]
    for s in servers:
        s.start()
    time.sleep(1.0)
    env = dict(os.environ, **dict(e.split("=", 1) for e in args.env))
    runner = ["-m", "edgeres.cli.main"]
    if args.tracemalloc is not None:
        runner = ["-c", TRACEMALLOC_RUNNER, str(args.tracemalloc), str(args.sample_every)]
    cmd = [
        sys.executable,
        *runner,
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
    cam = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
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
    samples: list[tuple[float, float, float, int]] = []  # (minute, resident MiB, anonymous MiB, descriptors)

    def sample() -> None:
        rss, fds = proc_facts(cam.pid)
        samples.append(((time.monotonic() - t0) / 60, rss, anonymous_mib(cam.pid), fds))

    next_sample = 60.0  # the first sample after a warm-up minute
    down: dict[str, list[tuple[float, float]]] = {k: [] for k in arrivals}
    turn = 0
    next_kill = args.kill_every * 60
    while time.monotonic() - t0 < total - 30:
        if cam.poll() is not None:
            for s in servers:
                s.kill()
            sys.exit(f"the camera process ended early (exit {cam.returncode}):\n" + "".join(err[-20:]))
        if time.monotonic() - t0 >= next_sample:
            sample()
            next_sample += args.sample_every
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
    sample()
    start_facts, end_facts = (samples[0][1], samples[0][3]), (samples[-1][1], samples[-1][3])
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
    print()
    print_table(
        ["minute", "resident MiB", "anonymous MiB", "descriptors"],
        [[f"{m:.1f}", f"{rss:.1f}", f"{anon:.1f}", fds] for m, rss, anon, fds in samples],
    )
    settled = next((x for x in samples if x[0] >= 5.0), None)
    if settled is not None and settled is not samples[-1]:
        per_10 = 10 * (samples[-1][1] - settled[1]) / (samples[-1][0] - settled[0])
        print(
            f"\nfrom minute {settled[0]:.1f} to the end: resident {settled[1]:.1f} -> {samples[-1][1]:.1f} MiB "
            f"({100 * (samples[-1][1] - settled[1]) / settled[1]:+.1f} %, {per_10:+.1f} MiB per 10 min), anonymous "
            f"{settled[2]:.1f} -> {samples[-1][2]:.1f} MiB"
        )
    if args.env:
        print("camera environment: " + " ".join(args.env))
    rows, stray, strays = [], 0, []
    for name, ts in arrivals.items():
        gaps = [(a, b) for a, b in itertools.pairwise(ts) if b - a > args.gap]
        outside = [g for g in gaps if not any(lo - 1 <= g[0] <= hi for lo, hi in down[name])]
        stray += len(outside)
        strays.extend(f"{name} at {a:.1f} s for {b - a:.1f} s" for a, b in outside)
        rows.append(
            [name, len(ts), len(down[name]), len(gaps), len(outside), f"{max((b - a for a, b in gaps), default=0):.1f}"]
        )
    print()
    print_table(
        ["stream", "results", "times killed", f"gaps > {args.gap:g} s", "gaps outside a down window", "longest gap s"],
        rows,
    )
    if strays:  # on a loaded box these are usually the ffmpeg server or the capture thread starved of CPU
        print("\ngaps outside a down window (stream clock): " + "; ".join(strays))
    summary = [line for line in err if "stopped by" in line]
    print("\n" + (summary[0].strip() if summary else "no summary line (stderr tail: " + "".join(err[-5:]) + ")"))
    ok = rss_growth <= 5 and fd_growth <= 5 and stray == 0
    print(f"targets met: {'yes' if ok else 'no'}")


if __name__ == "__main__":
    main()
