"""Time and accuracy of `edgeres data digits` + `edgeres train` as a new user runs them, on the plain
digits (goal: >= 97 % top-1 in <= 5 minutes on 2 CPU cores) and on the clutter set with a comparable budget.

Runs the real CLI in subprocesses and reads the accuracy back from the checkpoint's metadata.

Run:  python benchmarks/train_digits.py [--workdir DIR] [--skip-clutter]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line, print_table

RUNS = {  # name: (data command args, train args)
    "digits": (["--out", "{work}/digits"], ["--img-size", "32", "--epochs", "4", "--batch-size", "64"]),
    # The clutter set starts from the digits model (transfer learning, as users start from ImageNet weights);
    # 14 epochs fit the budget the 6 FP32 epochs of the first release took (about 4 minutes).
    "clutter": (["--clutter", "--out", "{work}/clutter"], ["--img-size", "64", "--epochs", "14", "--batch-size", "64",
                                                          "--lr", "0.02", "--init-from",
                                                          "{work}/run-digits/best.safetensors"]),
}


def edgeres(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "edgeres.cli.main", *args], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--skip-clutter", action="store_true")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp())
    from edgeres.models.checkpoint import load_checkpoint

    rows = []
    for name, (data_args, train_args) in RUNS.items():
        if name == "clutter" and args.skip_clutter:
            continue
        data_s = edgeres("data", "digits", *[a.format(work=work) for a in data_args], "--force")
        data_dir = data_args[-1].format(work=work)
        out = work / f"run-{name}"
        train_args = [a.format(work=work) for a in train_args]
        train_s = edgeres("train", "--data", data_dir, *train_args, "--out", str(out), "--force", "--quiet")
        summary = load_checkpoint(out / "best.safetensors").summary
        shown = " ".join(a if not a.startswith(str(work)) else Path(a).parent.name for a in train_args)
        rows.append([name, shown, f"{data_s:.1f}", f"{train_s:.0f}",
                     f"{summary['best_val_top1']:.2f}", summary["val_images"]])
    print(machine_line())
    print_table(["set", "train options (resnet18)", "data s", "train s (wall, incl. start-up)", "val top-1 %",
                 "val images"], rows)


if __name__ == "__main__":
    main()
