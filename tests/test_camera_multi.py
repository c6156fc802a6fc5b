"""Many streams in one ``edgeres camera`` run, on real parts: ffmpeg streams on 127.0.0.1 (one killed mid-run and
restarted while the others keep their rate), files listed in a ``--sources`` file batched into one engine call,
a small-batch engine that runs the streams in turns, per-stream and tiled recordings."""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import time

from helpers import run_cli

pytest_plugins = ["fixtures_camera"]


def _rate(rows: list[dict], start: float, end: float) -> float:
    """Processed frames per second of one live stream between two of its own arrival times (source_ts)."""
    return sum(start < r["source_ts"] <= end for r in rows) / (end - start)


def test_one_stream_killed_mid_run_the_others_keep_their_rate(tmp_path, camera_engine, digits_video, digits_h264):
    from fixtures_camera import CliRun, StreamServers, digit_order, ffprobe_frames, follows_order, wait_until

    record = tmp_path / "rec"
    with StreamServers(digits_h264, 3) as servers:
        run = CliRun(
            "camera",
            "--engine",
            camera_engine,
            "--json",
            "--top-k",
            "1",
            "--duration",
            "90",
            "--stall-timeout",
            "30",
            "--record",
            record,
            *[arg for name, s in zip("abc", servers, strict=True) for arg in ("--source", f"{name}={s.url}")],
        )
        try:

            def per_stream(name: str) -> list[dict]:
                return [r for r in run.records() if r["stream"] == name]

            wait_until(
                lambda: all(len(per_stream(n)) >= 60 for n in "abc") or run.proc.poll() is not None,
                90,
                f"60 results per stream (stderr: {run.stderr[-2000:]})",
            )
            servers[2].kill()
            killed_at = {n: per_stream(n)[-1]["source_ts"] for n in "ab"}
            at_kill = len(per_stream("c"))
            time.sleep(4.0)  # c is down: reconnect attempts against a refused port
            servers[2].start()
            wait_until(
                lambda: len(per_stream("c")) >= at_kill + 30 or run.proc.poll() is not None,
                60,
                f"the restarted stream c (stderr: {run.stderr[-2000:]})",
            )
            run.proc.send_signal(signal.SIGTERM)
            code = run.finish(timeout=30)
        finally:
            run.finish(timeout=30)
    assert code == 0, run.stderr
    err = run.stderr
    assert "warning: c: lost stream 'tcp://127.0.0.1:" in err and "warning: c: reconnected to stream" in err
    assert "warning: a:" not in err and "warning: b:" not in err
    assert "3 streams: stopped by SIGTERM" in err and "reconnects 1" in err
    rows = run.records()
    for name in "ab":  # the others kept their rate while c was down (the server sends 30 fps)
        mine = [r for r in rows if r["stream"] == name]
        t = killed_at[name]
        before, during = _rate(mine, t - 3.0, t), _rate(mine, t + 0.5, t + 3.5)
        assert during >= 0.75 * before and during >= 15, (name, before, during)
        gaps = [b["source_ts"] - a["source_ts"] for a, b in itertools.pairwise(mine) if t - 1 < a["source_ts"] < t + 4]
        assert max(gaps) < 0.5, (name, max(gaps))  # never held up by the dead stream
        assert follows_order([r["predictions"][0]["label"] for r in mine], digit_order(digits_video)) >= 0.9
        assert [r["frame"] for r in mine] == sorted(r["frame"] for r in mine)
    c_rows = [r for r in rows if r["stream"] == "c"]
    assert len(c_rows) >= at_kill + 30
    assert {r["batch"] for r in rows} <= {1, 2, 3}
    for name in "abc":  # one recording per stream, every processed frame of that stream in it
        assert ffprobe_frames(record / f"{name}.mkv") == ("mpeg4", sum(r["stream"] == name for r in rows))


def test_sources_file_streams_batched_together_and_a_small_engine_takes_turns(
    tmp_path, camera_engine, digits_video, digits_h264
):
    """Files (every frame processed) named in a --sources file: one batch holds a frame of each; an engine built for
    batches of one serves both streams in turns; the tiled recording has both side by side."""
    from fixtures_camera import VIDEO_SIZE, ffprobe_frames, labels_of

    listing = tmp_path / "cams.txt"
    listing.write_text(f"# two views of the digits\nleft={digits_video / 'digits.mkv'}\n\nright={digits_h264}\n")
    tiled = tmp_path / "tiled.mkv"
    proc = run_cli(
        "camera",
        "--engine",
        camera_engine,
        "--sources",
        listing,
        "--json",
        "--top-k",
        "1",
        "--max-frames",
        "120",
        "--record",
        tiled,
        "--tile",
        "--max-batch-wait",
        "50",
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    truth = labels_of(digits_video)
    assert len(rows) == 120 and "2 streams: stopped by max frames" in proc.stderr
    for name in ("left", "right"):
        mine = [r for r in rows if r["stream"] == name]
        assert [r["frame"] for r in mine] == list(range(60))  # files: every frame, in order, both streams alike
        assert sum(r["predictions"][0]["label"] == truth[r["frame"]] for r in mine) / len(mine) >= 0.95
    assert all(r["batch"] == 2 for r in rows)  # files always have a frame waiting: full batches
    assert "mean size 2.00 (largest 2" in proc.stderr
    codec, frames = ffprobe_frames(tiled)
    assert codec == "mpeg4" and frames == 60  # one tiled frame per batch
    import cv2

    cap = cv2.VideoCapture(str(tiled))
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (
        2 * VIDEO_SIZE[0],
        VIDEO_SIZE[1],
    )
    cap.release()

    small = shutil.copytree(camera_engine, tmp_path / "batch1")
    manifest_file = next(small.glob("*.manifest.json"))
    manifest = json.loads(manifest_file.read_text())
    manifest["input"]["max_batch"] = 1  # as if built with --max-batch 1
    manifest_file.write_text(json.dumps(manifest))
    proc = run_cli(
        "camera", "--engine", small, "--sources", listing, "--json", "--top-k", "1", "--max-frames", "40", timeout=180
    )
    assert proc.returncode == 0, proc.stderr
    assert "note: 2 streams and batches of at most 1" in proc.stderr and "streams taking turns" in proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert all(r["batch"] == 1 for r in rows)
    order = [r["stream"] for r in rows]
    assert abs(order.count("left") - order.count("right")) <= 2  # turns: both served alike
    # Mostly alternating: a stream serves twice in a row only when the other's next frame is not decoded yet,
    # which a loaded machine does now and then (a run of three was seen), so judge the whole order.
    switches = sum(a != b for a, b in itertools.pairwise(order))
    assert switches >= len(order) // 2, order
