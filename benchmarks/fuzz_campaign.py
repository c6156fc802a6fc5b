"""The long fuzz campaign behind docs/reliability.md: every reader, seeded mutations of real files.

    python benchmarks/fuzz_campaign.py --seed 0 --per-reader 200

Seeds: a random-init resnet18 checkpoint (3 classes, 32x32; reader fuzzing needs real file formats, not a
trained model), its ONNX Runtime engine folder, a calibration of it on real photo crops, real images
(scikit-image photos) in every format, COCO and YOLO folders made from them. Each case runs in this process
exactly as the commands read files (see tests/fuzz_cases.py); the table counts outcomes per reader. Any
"problem" row (a traceback, a refusal that is not one line naming the file, a file changed or created) is
listed in full and makes the script exit 1. The same cases, fewer of them, run in CI
(tests/test_fuzz_readers.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fuzz_cases as fz
from _common import machine_line, print_table


def make_seeds(root: Path) -> dict[str, Path]:
    """A checkpoint, its engine and a calibration folder, all made here in seconds."""
    import cv2
    import numpy as np
    import torch
    from helpers import mnist_digits

    from edgeres.build import BuildConfig, build_engine
    from edgeres.config import ModelConfig, PreprocessConfig
    from edgeres.data.compose import load_backgrounds, random_crop
    from edgeres.models.checkpoint import save_checkpoint
    from edgeres.models.registry import get_model
    from edgeres.quant.workflow import CalibConfig, run_calibration

    torch.manual_seed(0)
    ckpt = root / "model" / "r18.safetensors"
    cfg = ModelConfig("resnet18", ["cup", "plate", "coin"], preprocess=PreprocessConfig(input_size=(32, 32)))
    save_checkpoint(ckpt, get_model("resnet18", num_classes=3), cfg)
    engine = root / "engines" / "r18"
    build_engine(BuildConfig(model=ckpt, out=engine, backend="onnxruntime", max_batch=2), progress=False)
    photos = root / "calib-images"
    photos.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, bg in enumerate(load_backgrounds() * 4):
        crop = random_crop(bg, (48, 48), rng)
        cv2.imwrite(str(photos / f"{i:02d}.png"), np.ascontiguousarray(crop[..., ::-1]))
    calib = root / "calibration" / "r18"
    run_calibration(CalibConfig(model=ckpt, data=photos, out=calib, num_images=16, progress=False))
    digits = root / "digits"
    images, labels = mnist_digits()
    for d in (0, 1, 2):
        (digits / str(d)).mkdir(parents=True)
        for n, i in enumerate(np.flatnonzero(labels == d)[:20]):
            cv2.imwrite(str(digits / str(d) / f"{n}.png"), cv2.resize(images[i], (32, 32)))
    return {
        "checkpoint": ckpt,
        "engine": engine,
        "calib": calib,
        "onnx": next(engine.glob("*.onnx")),
        "calib_images": photos,
        "digits": digits,
    }


def campaign(root: Path, seeds: dict[str, Path], seed: int, per_reader: int) -> list[fz.Outcome]:
    rng = random.Random(seed)
    runs = [
        fz.fuzz_images(root / "img", rng, per_reader),
        fz.fuzz_safetensors(root / "st", seeds["checkpoint"], rng, per_reader),
        fz.fuzz_pth(root / "pth", seeds["checkpoint"], rng, per_reader),
        fz.fuzz_onnx(root / "onnx", seeds["onnx"], rng, per_reader),
        fz.fuzz_manifests(root / "man", seeds["engine"], rng, per_reader),
        fz.fuzz_calibration(root / "cal", seeds["calib"], seeds["checkpoint"], rng, per_reader),
        fz.fuzz_annotations(root / "ann", rng, per_reader),
    ]
    outcomes = []
    for run in runs:
        for outcome in run:
            outcomes.append(outcome)
    return outcomes


# ------------------------------------------------------------------------------------------- injected faults

CLI = [sys.executable, "-m", "edgeres.cli.main"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1"}


def cli(args: list, cwd: Path, file_limit: int | None = None) -> subprocess.CompletedProcess:
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    return subprocess.run(
        [*CLI, *map(str, args)],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=900,
        preexec_fn=limit if file_limit else None,
    )


def one_line(proc: subprocess.CompletedProcess) -> str:
    """The refusal line, or why the outcome is not one ("traceback", "exit 0", "2 lines")."""
    lines = proc.stderr.strip().splitlines()
    if "Traceback" in proc.stderr:
        return "TRACEBACK"
    if proc.returncode == 0:
        return "exit 0"
    lines = [ln for ln in lines if "Warning" not in ln and not ln.startswith("  ")]  # Python warnings
    return lines[0] if len(lines) == 1 and lines[0].startswith("error: ") else f"{len(lines)} lines: {lines[:2]}"


@contextlib.contextmanager
def mounted(point: Path, size_mb: int, read_only: bool = False):
    point.mkdir(parents=True, exist_ok=True)
    opts = f"size={size_mb}m" + (",ro" if read_only else "")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(point)], capture_output=True).returncode:
        yield None
        return
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def faults(root: Path, seeds: dict[str, Path]) -> list[list]:
    """Each command under each fault, with the outcome: the line it printed, what it left, whether a rerun works."""
    ckpt, calib_data = seeds["checkpoint"], seeds["calib_images"]
    digits = seeds["digits"]
    commands = {
        "export": lambda out: ["export", "--model", ckpt, "--out", out / "m.onnx"],
        "build": lambda out: ["build", "--model", ckpt, "--out", out / "engines" / "e"],
        "calibrate": lambda out: [
            "calibrate",
            "--model",
            ckpt,
            "--data",
            calib_data,
            "--out",
            out / "calib",
            "--num-images",
            "16",
            "--quiet",
        ],
        "train": lambda out: [
            "train",
            "--data",
            digits,
            "--out",
            out / "run",
            "--epochs",
            "1",
            "--max-steps",
            "2",
            "--img-size",
            "32",
            "--batch-size",
            "8",
            "--quiet",
        ],
    }
    rows = []
    for name, make in commands.items():
        for fault in ("full disk (20 MB tmpfs)", "file size limit (RLIMIT_FSIZE 8 MB)", "read-only disk (ro tmpfs)"):
            point = root / f"{name}-{fault.split()[0]}"
            if fault.startswith("file size"):
                point.mkdir(parents=True)
                proc = cli(make(point), root, file_limit=8 << 20)
                left = leftovers(point)
            else:
                with mounted(point, 20, read_only=fault.startswith("read-only")) as disk:
                    if disk is None:
                        rows.append([name, fault, "not run: mount refused", "", ""])
                        continue
                    proc = cli(make(disk), root)
                    left = leftovers(disk)
            rerun = cli(make(root / f"{name}-rerun-{len(rows)}"), root)
            rows.append(
                [
                    name,
                    fault,
                    one_line(proc)[:400],
                    ", ".join(left) or "nothing",
                    "works" if rerun.returncode == 0 else one_line(rerun)[:80],
                ]
            )
    rows += kill_rows(root, commands)
    rows += concurrency_rows(root, commands)
    return [[str(cell).replace(str(root), "<tmp>") for cell in row] for row in rows]


def kill_rows(root: Path, commands: dict) -> list[list]:
    """kill -9 once the command has started writing, then the same command again (train: --resume)."""
    rows = []
    for name in ("build", "calibrate", "train"):
        out = root / f"kill-{name}"
        args = commands[name](out)
        if name == "train":
            args = [*args[:-9], "--epochs", "4", "--max-steps", "6", "--img-size", "32", "--batch-size", "8", "--quiet"]
        proc = subprocess.Popen(
            [*CLI, *map(str, args)], cwd=root, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 600
        while proc.poll() is None and time.monotonic() < deadline:
            started = [p for p in out.rglob(".*") if p.is_dir() or p.suffix == ".tmp"] if out.exists() else []
            if name == "train":
                history = out / "run" / "history.json"
                started = history.is_file() and len(json.loads(history.read_text() or "[]")) >= 1
            if started:
                break
            time.sleep(0.02)
        if proc.poll() is not None:
            rows.append([name, "kill -9 mid-run", "not run: finished before the kill", "", ""])
            continue
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        left = leftovers(out)
        again = [*args, "--resume", out / "run"] if name == "train" else args
        rerun = cli(again, root)
        what = "works" if rerun.returncode == 0 else one_line(rerun)[:80]
        if name == "train" and rerun.returncode == 0:
            epochs = [e["epoch"] for e in json.loads((out / "run" / "history.json").read_text())]
            what += f" (--resume; epochs {epochs})"
        rows.append([name, "kill -9 mid-run", "killed", ", ".join(left)[:150] or "nothing", what])
    return rows


def concurrency_rows(root: Path, commands: dict) -> list[list]:
    rows = []
    for name in ("build", "calibrate"):
        out = root / f"twice-{name}"
        procs = [
            subprocess.Popen(
                [*CLI, *map(str, commands[name](out))],
                cwd=root,
                env=ENV,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        results = [subprocess.CompletedProcess(p.args, p.wait(), p.stdout.read(), p.stderr.read()) for p in procs]
        outcome = "; ".join(
            sorted(f"exit {r.returncode}" + ("" if r.returncode == 0 else f": {one_line(r)[:160]}") for r in results)
        )
        rows.append([name, "two at once into one --out", outcome, ", ".join(leftovers(out))[:150], ""])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-reader", type=int, default=200, help="random mutations per reader")
    parser.add_argument("--no-faults", action="store_true", help="skip the injected faults (minutes of real runs)")
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeres-fuzz-") as d:
        root = Path(d)
        seeds = make_seeds(root / "seeds")
        outcomes = campaign(root / "cases", seeds, args.seed, args.per_reader)
        fault_rows = [] if args.no_faults else faults(root / "faults", seeds)
    seconds = time.perf_counter() - start
    readers = list(dict.fromkeys(o.reader for o in outcomes))
    counts = Counter((o.reader, o.kind) for o in outcomes)
    rows = [
        [
            r,
            sum(counts[(r, k)] for k in ("accepted", "refused", "problem")),
            counts[(r, "accepted")],
            counts[(r, "refused")],
            counts[(r, "problem")],
        ]
        for r in readers
    ]
    rows.append(
        ["all", len(outcomes), *(sum(counts[(r, k)] for r in readers) for k in ("accepted", "refused", "problem"))]
    )
    print(
        f"# fuzz campaign, seed {args.seed}, {args.per_reader} random mutations per reader: {machine_line()}, "
        f"{seconds:.0f} s"
    )
    print_table(["reader", "cases", "accepted", "refused (one line naming the file)", "problems"], rows)
    problems = [o for o in outcomes if o.kind == "problem"]
    for o in problems:
        print(f"PROBLEM {o.reader} | {o.case} | {o.message}")
    if fault_rows:
        print()
        print_table(["command", "fault", "outcome (stderr)", "left in the output folder", "rerun"], fault_rows)
    bad = [r for r in fault_rows if "TRACEBACK" in r[2] or "lines:" in r[2]]
    return 1 if problems or bad else 0


if __name__ == "__main__":
    sys.exit(main())
