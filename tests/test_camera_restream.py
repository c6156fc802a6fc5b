"""Re-streaming (``edgeres camera --restream``) on real parts, all on 127.0.0.1: two streams tiled and pushed to
GStreamer's RTSP server in RECORD mode (read back by ffprobe), sent as RTP (received by ffmpeg through the SDP
the loop wrote, read back by ffprobe) and as MPEG-TS over UDP (read by OpenCV while the run goes on)."""

from __future__ import annotations

import subprocess
import threading
import time

import numpy as np
from helpers import require_tool

pytest_plugins = ["fixtures_camera"]


def _probe(path) -> tuple[str, int, int, int]:
    """(codec, width, height, decodable frames) of a file, by decoding it with ffprobe."""
    proc = subprocess.run(
        [
            require_tool("ffprobe"),
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
            "-of",
            "csv=p=0",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    codec, width, height, frames = proc.stdout.strip().split(",")[:4]
    return codec, int(width), int(height), int(frames)


def test_restream_to_rtsp_rtp_and_udp_is_read_back(tmp_path, camera_engine, digits_video, digits_h264):
    import cv2
    from fixtures_camera import LOOPBACK, VIDEO_SIZE, CliRun, free_port, rtsp_record_server, wait_until

    ffmpeg = require_tool("ffmpeg")
    pushed, sdp, received = tmp_path / "pushed.h264", tmp_path / "stream.sdp", tmp_path / "rtp.mkv"
    rtp_port, udp_port = free_port(), free_port()
    tiled = (2 * VIDEO_SIZE[0], VIDEO_SIZE[1])  # two streams side by side
    udp_frames: list[np.ndarray] = []

    def read_udp() -> None:
        cap = cv2.VideoCapture(
            f"udp://{LOOPBACK}:{udp_port}",
            cv2.CAP_FFMPEG,
            [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 30000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000],
        )
        end = time.monotonic() + 30
        while cap.isOpened() and len(udp_frames) < 45 and time.monotonic() < end:
            ok, image = cap.read()
            if ok:
                udp_frames.append(image)
        cap.release()

    with rtsp_record_server(pushed, tmp_path) as rtsp_url:
        run = CliRun(
            "camera",
            "--engine",
            camera_engine,
            "--source",
            f"left={digits_video / 'digits.mkv'}",
            "--source",
            f"right={digits_h264}",
            "--realtime",
            "--headless",
            "--json",
            "--duration",
            "60",
            "--restream",
            rtsp_url,
            "--restream",
            f"rtp://{LOOPBACK}:{rtp_port}",
            "--restream-sdp",
            sdp,
            "--restream",
            f"udp://{LOOPBACK}:{udp_port}",
        )
        udp_reader = threading.Thread(target=read_udp, daemon=True)
        receiver = None
        try:
            udp_reader.start()
            wait_until(lambda: sdp.exists() or run.proc.poll() is not None, 60, f"the SDP ({run.stderr[-1500:]})")
            receiver = subprocess.Popen(
                [
                    ffmpeg,
                    "-nostdin",
                    "-v",
                    "error",
                    "-protocol_whitelist",
                    "file,udp,rtp",
                    "-i",
                    str(sdp),
                    "-frames:v",
                    "45",
                    "-c",
                    "copy",
                    "-y",
                    str(received),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            receiver.wait(timeout=60)
            udp_reader.join(40)
            run.proc.terminate()
            code = run.finish(timeout=30)
        finally:
            if receiver is not None and receiver.poll() is None:
                receiver.kill()
            run.finish(timeout=30)
    assert code == 0, run.stderr
    err = run.stderr
    assert f"note: re-stream to rtp://{LOOPBACK}:{rtp_port}: session description in {sdp}" in err
    assert "stopped (" not in err and "encoder restarts" not in err  # no encoder failed
    for url in (rtsp_url, f"rtp://{LOOPBACK}:{rtp_port}", f"udp://{LOOPBACK}:{udp_port}"):
        assert f"frames to {url}" in err
    assert receiver.returncode == 0, receiver.stderr.read()
    assert _probe(received)[:3] == ("h264", *tiled) and _probe(received)[3] >= 40
    codec, width, height, frames = _probe(pushed)
    assert (codec, width, height) == ("h264", *tiled) and frames >= 60
    assert len(udp_frames) >= 30 and udp_frames[-1].shape == (tiled[1], tiled[0], 3)
    left = udp_frames[-1][:, : VIDEO_SIZE[0]].astype(int)  # the left stream's tile carries the overlays
    green = np.abs(left - (80, 220, 80)).max(axis=2) < 60
    assert green[: VIDEO_SIZE[1] // 3, : VIDEO_SIZE[0] // 2].sum() > 8
