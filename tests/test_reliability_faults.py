"""Faults injected into real writes, not mocks: a full disk (a small tmpfs), a file size limit (RLIMIT_FSIZE, as
``ulimit -f`` sets it), a read-only disk (a tmpfs mounted ``ro``: the tests run as root, which ignores permission
bits), ``kill -9`` in the middle of build and train, and two writers of one artifact at once.

Afterwards: one line naming the disk or the limit, no half-written artifact where a finished one is expected (and
no empty folder or temporary file left by the failed command), and a rerun (``train --resume``) that works.
Mounting needs root; where the machine refuses ``mount -t tmpfs`` those tests are skipped and the
RLIMIT_FSIZE tests still cover a write failing half-way.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import CLI, assert_user_error, run_cli, subprocess_env

pytest_plugins = ["fixtures_models", "fixtures_camera"]


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


@contextlib.contextmanager
def tmpfs(mount_point: Path, size_mb: int | str, read_only: bool = False):
    """A real tmpfs of ``size_mb`` MB (or a size in mount's words: "512k") at ``mount_point`` (read-only if asked),
    unmounted afterwards."""
    mount_point.mkdir(parents=True, exist_ok=True)
    options = f"size={size_mb if isinstance(size_mb, str) else f'{size_mb}m'}" + (",ro" if read_only else "")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode}); the RLIMIT_FSIZE tests "
            "cover a failing write"
        )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def run_limited(*args, file_limit: int, cwd: Path) -> subprocess.CompletedProcess:
    """The real CLI with RLIMIT_FSIZE set in the child (what ``ulimit -f`` does): writes past it fail with EFBIG
    (Python ignores SIGXFSZ, so the write fails instead of the process being killed)."""

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    return subprocess.run(
        [*CLI, *map(str, args)],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit,
    )


def test_full_disk_during_export_names_the_disk(tmp_path, trained_checkpoint):
    """A 20 MB tmpfs fills up half-way through writing a 45 MB ONNX file."""
    with tmpfs(tmp_path / "small", 20) as disk:
        proc = run_cli("export", "--model", trained_checkpoint, "--out", disk / "out" / "model.onnx", cwd=tmp_path)
        line = assert_user_error(proc, "no space left", str(disk), "tmpfs")
        assert "ran full" in line
        assert files_under(disk) == []  # no half-written file, no temporary file, no empty folder


def test_full_disk_refuses_build_up_front(tmp_path, trained_checkpoint):
    """The free-space check: a build that cannot fit is refused before it starts, naming the disk."""
    with tmpfs(tmp_path / "small", 20) as disk:
        proc = run_cli("build", "--model", trained_checkpoint, "--out", disk / "engines" / "digits", cwd=tmp_path)
        assert_user_error(proc, "not enough free space", str(disk), "tmpfs", "MB free")
        assert files_under(disk) == []


def test_read_only_disk_refuses_calibrate_and_train(tmp_path, trained_checkpoint, digits3):
    with tmpfs(tmp_path / "ro", 20, read_only=True) as disk:
        proc = run_cli(
            "calibrate",
            "--model",
            trained_checkpoint,
            "--data",
            digits3,
            "--out",
            disk / "calib",
            "--num-images",
            "8",
            "--quiet",
            cwd=tmp_path,
        )
        assert_user_error(proc, "read-only", str(disk))
        start = time.perf_counter()
        proc = run_cli(
            "train",
            "--data",
            digits3,
            "--out",
            disk / "run",
            "--epochs",
            "1",
            "--max-steps",
            "3",
            "--img-size",
            "32",
            "--batch-size",
            "8",
            "--quiet",
            cwd=tmp_path,
        )
        assert_user_error(proc, "read-only", str(disk))
        assert time.perf_counter() - start < 60  # refused before training, not after the first epoch


def test_file_size_limit_while_saving_a_checkpoint(tmp_path, digits3):
    """RLIMIT_FSIZE of 8 MB: training's first checkpoint (45 MB) fails half-way through safetensors' own writer."""
    proc = run_limited(
        "train",
        "--data",
        digits3,
        "--out",
        tmp_path / "run",
        "--epochs",
        "1",
        "--max-steps",
        "2",
        "--img-size",
        "32",
        "--batch-size",
        "8",
        "--quiet",
        file_limit=8 << 20,
        cwd=tmp_path,
    )
    assert_user_error(proc, "file size limit", "ulimit -f")
    run = tmp_path / "run"
    leftovers = [p.name for p in run.iterdir()] if run.exists() else []
    assert not [n for n in leftovers if n.endswith(".safetensors") or n.endswith(".tmp")], leftovers


@pytest.mark.slow  # two real runs of the CLI (about 20 s on two cores)
def test_kill_during_train_then_resume_loses_at_most_one_epoch(tmp_path, digits3):
    run = tmp_path / "run"
    args = ["--data", digits3, "--epochs", "4", "--max-steps", "6", "--img-size", "32", "--batch-size", "8", "--quiet"]
    proc = subprocess.Popen(
        [*CLI, "train", "--out", str(run), *map(str, args)],
        cwd=tmp_path,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    history = run / "history.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if history.is_file() and len(json.loads(history.read_text() or "[]")) >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"training ended before it could be killed: {proc.stderr.read()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done = json.loads(history.read_text())
    assert 1 <= len(done) < 4
    # Every file there is complete: the checkpoints load, the history parses (temp files may remain).
    from edgeres.models.checkpoint import load_checkpoint

    for name in ("best.safetensors", "last.safetensors"):
        load_checkpoint(run / name)
    resumed = run_cli("train", "--resume", run, "--out", run, *args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    final = json.loads(history.read_text())
    assert [e["epoch"] for e in final] == [1, 2, 3, 4], final
    assert final[: len(done)] == done  # finished epochs were kept, not trained again


@pytest.mark.slow  # two real runs of the CLI (about 20 s on two cores)
def test_kill_during_build_leaves_no_engine_and_a_rerun_works(tmp_path, trained_checkpoint):
    out = tmp_path / "engines" / "digits"
    proc = subprocess.Popen(
        [*CLI, "build", "--model", str(trained_checkpoint), "--out", str(out)],
        cwd=tmp_path,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        temps = [p for p in out.parent.glob(".digits.*") if p.is_dir()] if out.parent.exists() else []
        if temps and any(temps[0].iterdir()):  # the export has started writing into the temporary folder
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the build ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists()  # no half-built engine where a finished one is expected
    rerun = run_cli("build", "--model", trained_checkpoint, "--out", out, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert files_under(out.parent) == ["digits", "digits/digits.manifest.json", "digits/digits.onnx"]  # swept

    from edgeres.engine import open_engine

    open_engine(out)


@pytest.mark.slow  # two real runs of the CLI (about 20 s on two cores)
def test_two_builds_into_one_out(tmp_path, trained_checkpoint):
    """Started together: one builds, the other is refused in one line; the engine on disk is complete."""
    out = tmp_path / "engines" / "digits"
    procs = [
        subprocess.Popen(
            [*CLI, "build", "--model", str(trained_checkpoint), "--out", str(out)],
            cwd=tmp_path,
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, err in results if code == 1).strip().splitlines()
    assert len(loser) == 1 and "Traceback" not in loser[0], loser
    assert "another edgeres process" in loser[0] or "already exists" in loser[0], loser
    from edgeres.engine import open_engine

    open_engine(out)  # manifest and engine of one build: the hash check passes
    assert files_under(out.parent) == ["digits", "digits/digits.manifest.json", "digits/digits.onnx"]


@pytest.mark.slow  # two real runs of the CLI (about 20 s on two cores)
def test_two_calibrations_into_one_folder(tmp_path, trained_checkpoint, digits3):
    out = tmp_path / "calib"
    args = [
        "calibrate",
        "--model",
        str(trained_checkpoint),
        "--data",
        str(digits3),
        "--out",
        str(out),
        "--num-images",
        "16",
        "--quiet",
    ]
    procs = [
        subprocess.Popen(
            [*CLI, *args, *extra],
            cwd=tmp_path,
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for extra in ([], ["--method", "minmax"])
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert 0 in [code for code, _ in results], results
    for code, err in results:
        if code:
            assert code == 1 and "Traceback" not in err, err
            assert "another edgeres process" in err or "holds a calibration of another" in err, err
    from edgeres.quant.workflow import load_calibration

    load_calibration(out, trained_checkpoint)  # a complete calibration of one of them
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".calib")) == []


def test_build_refuses_a_calibration_being_rewritten(tmp_path, trained_checkpoint):
    """A build reading --calib while another process holds that folder's writer lock is refused, naming it."""
    calib = tmp_path / "calib"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from edgeres.fileio import output_lock\n"
            f"with output_lock({str(calib)!r}, '--out'):\n    print('held', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        from edgeres.build import BuildConfig, build_engine
        from edgeres.errors import EdgeresError

        calib.mkdir()
        with pytest.raises(EdgeresError, match=f"being written by another edgeres process \\(pid {holder.pid}\\)"):
            build_engine(
                BuildConfig(model=trained_checkpoint, out=tmp_path / "engines" / "x", precision="int8", calib=calib),
                progress=False,
            )
        assert not (tmp_path / "engines").exists()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()


def write_video(path: Path, fourcc: str, frames: int = 60) -> Path:
    """A real video of a scikit-image photo panning (OpenCV's FFmpeg writer)."""
    import cv2
    import numpy as np

    from edgeres.data.compose import load_backgrounds

    photo = np.ascontiguousarray(load_backgrounds(["coffee"])[0][..., ::-1])
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*fourcc), 30.0, (160, 120))
    assert writer.isOpened(), f"this OpenCV cannot write {fourcc} to {path.suffix}"
    for i in range(frames):
        writer.write(cv2.resize(np.roll(photo, 7 * i, axis=1), (160, 120)))
    writer.release()
    return path


def test_truncated_videos(tmp_path, trained_engine):
    """An MP4 cut in half has lost its index (moov): refused in one line naming it. A Matroska or AVI file cut in
    half plays the frames it still holds, then says it ended early; one cut to its header reads nothing: an
    error."""
    for name, fourcc in (("cut.mp4", "mp4v"), ("cut.mkv", "MJPG"), ("cut.avi", "MJPG")):
        full = write_video(tmp_path / f"full-{name}", fourcc)
        data = full.read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
        if name == "cut.mkv":
            (tmp_path / "header.mkv").write_bytes(data[:600])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    common = ["--engine", trained_engine, "--headless", "--json", "--max-frames", "100"]
    proc = run_cli("camera", "--source", tmp_path / "cut.mp4", *common, cwd=tmp_path)
    assert_user_error(proc, "cut.mp4", "cannot open video file")
    for name in ("cut.mkv", "cut.avi"):
        proc = run_cli("camera", "--source", tmp_path / name, *common, cwd=tmp_path)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        frames = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        assert 0 < len(frames) < 60, len(frames)
        warning = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
        assert len(warning) == 1 and name in warning[0], proc.stderr
        assert f"ended after {len(frames)} of the 60 frames its header declares: file truncated?" in warning[0]
    proc = run_cli("camera", "--source", tmp_path / "header.mkv", *common, cwd=tmp_path)
    assert_user_error(proc, "header.mkv", "no frame could be read of the 60", "truncated or damaged")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # the user's files untouched


def test_recording_past_the_file_size_limit(tmp_path, trained_engine, digits_video):
    """``ulimit -f`` (RLIMIT_FSIZE, real) of 100 KB hit while recording: one line naming the limit and the file,
    exit 1, and neither the recording nor its hidden part file is left."""
    out = tmp_path / "rec"
    out.mkdir()
    proc = run_limited(
        "camera", "--engine", trained_engine, "--source", digits_video / "digits.mkv", "--headless",
        "--record", out / "run.mkv", file_limit=100_000, cwd=tmp_path,
    )  # fmt: skip
    assert_user_error(proc, "recording to", "run.mkv", "file size limit", "ulimit -f", "removed")
    assert "stopped by recording failed" in proc.stdout
    assert files_under(out) == []


def test_recording_into_a_read_only_or_full_disk(tmp_path, trained_engine, digits_video):
    """A read-only disk is refused before any work; a disk that fills up stops the recording (its unfinished
    file removed) while the JSON lines go on to the end, and the run exits 1 naming the disk."""
    source = ["--engine", trained_engine, "--source", digits_video / "digits.mkv", "--headless"]
    with tmpfs(tmp_path / "ro", 4, read_only=True) as disk:
        proc = run_cli("camera", *source, "--record", disk / "run.mkv", cwd=tmp_path)
        assert_user_error(proc, "cannot record to", "run.mkv", "read-only", str(disk))
        two = ["--source", f"a={digits_video / 'digits.mkv'}", "--source", f"b={digits_video / 'frames'}"]
        proc = run_cli(
            "camera", "--engine", trained_engine, *two, "--headless", "--record", disk / "recs", cwd=tmp_path
        )
        assert_user_error(proc, "cannot record to", "recs", "read-only", str(disk))  # one file per stream
    # The 300 annotated 320x240 frames need about 630 KB, written in Matroska clusters of 5 s (about 310 KB): the
    # first cluster does not fit, so the disk fills in the middle of the run.
    with tmpfs(tmp_path / "small", "256k") as disk:
        proc = run_cli("camera", *source, "--record", disk / "run.mkv", "--json", cwd=tmp_path)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert len([line for line in proc.stdout.splitlines() if line.startswith("{")]) == 300  # JSON went on
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert "the other outputs go on" in errors[0] and str(disk) in errors[-1] and "is full" in errors[-1]
        assert files_under(disk) == []
