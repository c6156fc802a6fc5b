"""The camera loop on real network streams on 127.0.0.1: ffmpeg MPEG-TS over TCP (killed and restarted,
then frozen), GStreamer's RTSP server, and a server that accepts connections but never sends video."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time

from helpers import assert_user_error, require_tool, run_cli

pytest_plugins = ["fixtures_camera"]


def test_tcp_stream_killed_and_restarted_is_reconnected(camera_engine, digits_video, digits_h264):
    from fixtures_camera import CliRun, FfmpegTcpServer, digit_order, follows_order, free_port

    port = free_port()
    server = FfmpegTcpServer(digits_h264, port).start()
    run = CliRun(
        "camera",
        "--engine",
        camera_engine,
        "--source",
        server.url,
        "--json",
        "--top-k",
        "1",
        "--duration",
        "90",
        "--stall-timeout",
        "30",
    )
    try:
        run.wait_records(20, timeout=60)
        server.kill()
        at_kill = len(run.out)
        time.sleep(1.5)  # the loop keeps running: backoff against a refused port
        server.start()
        run.wait_records(at_kill + 45, timeout=60)
        run.proc.send_signal(signal.SIGTERM)
        code = run.finish(timeout=30)
    finally:
        server.kill()
        run.finish(timeout=30)
    assert code == 0, run.stderr
    err = run.stderr
    assert "warning: lost stream 'tcp://127.0.0.1:" in err and "reconnecting" in err
    assert "warning: reconnected to stream" in err
    assert "reconnects 1" in err and "stopped by SIGTERM" in err
    rows = run.records()
    assert [r["frame"] for r in rows] == sorted(r["frame"] for r in rows)  # one index space across reconnects
    after = [r["predictions"][0]["label"] for r in rows[at_kill + 2 :]]  # the restarted stream is classified
    # Frames of the old stream still in flight at the kill end the old digit's run: drop that first run.
    first_run = next((i for i, label in enumerate(after) if label != after[0]), len(after))
    after = after[first_run:]
    assert len(after) >= 20
    assert follows_order(after, digit_order(digits_video)) >= 0.9


def test_rtsp_stream_from_gstreamer_rtsp_server_is_read(tmp_path, camera_engine, digits_video, digits_h264):
    from fixtures_camera import digit_order, follows_order, rtsp_server

    with rtsp_server(digits_h264, tmp_path) as url:
        proc = run_cli(
            "camera",
            "--engine",
            camera_engine,
            "--source",
            url,
            "--json",
            "--top-k",
            "1",
            "--max-frames",
            "60",
            "--stall-timeout",
            "20",
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr
    rows = [__import__("json").loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 60 and "stopped by max frames" in proc.stderr
    labels = [r["predictions"][0]["label"] for r in rows]
    assert len(set(labels)) >= 3
    # Newest frame wins on a live stream: with two test workers busy, a run can skip more than two digits now and
    # then (0.85 and 0.87 seen in two full runs on the 2-core EPYC); 0.8 still fails a misread or reordered stream.
    assert follows_order(labels, digit_order(digits_video)) >= 0.8


def test_a_frozen_stream_ends_with_a_clear_error_not_a_hang(camera_engine, digits_h264):
    from fixtures_camera import CliRun, FfmpegTcpServer, free_port

    port = free_port()
    server = FfmpegTcpServer(digits_h264, port).start()
    run = CliRun(
        "camera",
        "--engine",
        camera_engine,
        "--source",
        server.url,
        "--json",
        "--read-timeout",
        "1",
        "--stall-timeout",
        "4",
        "--duration",
        "60",
    )
    try:
        run.wait_records(10, timeout=60)
        server.signal(signal.SIGSTOP)  # the server is alive but sends nothing
        started = time.monotonic()
        code = run.finish(timeout=40)
        took = time.monotonic() - started
    finally:
        server.kill()
        run.finish(timeout=10)
    assert code == 1, run.stderr
    assert took < 30
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no frame from stream 'tcp://127.0.0.1:") and "for 4 s after" in last, run.stderr
    assert "giving up" in last and "Traceback" not in run.stderr


def test_a_server_that_never_sends_video_fails_to_open_within_the_timeout(camera_engine):
    """A source that accepts the connection and then says nothing: a one-line error after --open-timeout."""
    from fixtures_camera import LOOPBACK

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOOPBACK, 0))
    listener.listen(4)
    listener.settimeout(0.2)
    port, held, stop = listener.getsockname()[1], [], threading.Event()

    def accept_and_hold():
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_hold, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        proc = run_cli(
            "camera",
            "--engine",
            camera_engine,
            "--source",
            f"tcp://{LOOPBACK}:{port}",
            "--json",
            "--open-timeout",
            "2",
            timeout=60,
        )
        took = time.monotonic() - started
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()
    line = assert_user_error(
        proc,
        f"cannot open stream 'tcp://{LOOPBACK}:{port}'",
        "tried FFmpeg",
        "accepts connections but no video could be read from it within 2 s",
    )
    assert proc.stdout == "" and line
    assert took < 40


def test_http_and_udp_streams_from_ffmpeg_are_read(camera_engine, digits_h264):
    """ffmpeg serving MPEG-TS over HTTP (as a one-client HTTP server) and sending it to a UDP port, both on
    127.0.0.1."""
    from fixtures_camera import LOOPBACK, free_port, is_listening, wait_until

    ffmpeg = require_tool("ffmpeg")
    base = [
        ffmpeg,
        "-nostdin",
        "-v",
        "error",
        "-re",
        "-stream_loop",
        "-1",
        "-i",
        str(digits_h264),
        "-t",
        "60",
        "-c",
        "copy",
    ]
    http_port, udp_port = free_port(), free_port()
    cases = {
        f"http://{LOOPBACK}:{http_port}/live.ts": [
            *base,
            "-listen",
            "1",
            "-f",
            "mpegts",
            f"http://{LOOPBACK}:{http_port}/live.ts",
        ],
        f"udp://{LOOPBACK}:{udp_port}": [*base, "-f", "mpegts", f"udp://{LOOPBACK}:{udp_port}?pkt_size=1316"],
    }
    for url, cmd in cases.items():
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if url.startswith("http"):
                wait_until(lambda: is_listening(http_port), 15, "ffmpeg's HTTP server")
            proc = run_cli(
                "camera",
                "--engine",
                camera_engine,
                "--source",
                url,
                "--json",
                "--max-frames",
                "20",
                "--stall-timeout",
                "20",
                timeout=90,
            )
        finally:
            server.kill()
            server.wait(timeout=10)
        assert proc.returncode == 0, proc.stderr
        assert len(proc.stdout.splitlines()) == 20 and f"stream '{url}' via FFmpeg" in proc.stderr
