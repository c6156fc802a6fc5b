"""The live view (``edgeres camera --serve``) on real parts: two ffmpeg streams on 127.0.0.1 into one run, the
page opened in headless Chromium (a screenshot must show the annotated frames, and the results must update
without a reload), the token, ``/health`` and the ``/results`` Server-Sent Events."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import urllib.error
import urllib.request

import numpy as np

pytest_plugins = ["fixtures_camera"]

TOKEN = "t0ken-for-tests"
PAGE_STATE = """(() => {
  const cards = [...document.querySelectorAll('section.card')].map(card => {
    const img = card.querySelector('img');
    const r = img.getBoundingClientRect();
    return {id: card.id, frame: card.querySelector('.frame').textContent, fps: card.querySelector('.fps').textContent,
            preds: card.querySelector('.pred tbody').textContent, loaded: img.naturalWidth,
            rect: [r.left, r.top, r.width, r.height]};
  });
  return JSON.stringify({received: Number(document.getElementById('received').textContent), cards,
                         scale: window.devicePixelRatio});
})()"""


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _sse_lines(url: str, seconds: float) -> list[str]:
    lines = []
    with urllib.request.urlopen(url, timeout=10) as r:
        import time

        end = time.monotonic() + seconds
        while time.monotonic() < end:
            lines.append(r.readline().decode().rstrip("\n"))
    return lines


def _overlay_in(crop: np.ndarray) -> dict:
    """Where the loop's overlays show in a screenshot crop of one stream's frame (BGR)."""
    h, w = crop.shape[:2]
    green = np.abs(crop.astype(int) - (80, 220, 80)).max(axis=2) < 60  # the top-1 label's colour
    white = crop.min(axis=2) > 200  # panel text
    return {
        "green_top_left": int(green[: h // 3, : w // 2].sum()),
        "white_top_right": int(white[: h // 4, w // 2 :].sum()),
        "white_bottom_left": int(white[h // 2 :, : w // 2].sum()),
    }


def test_live_view_in_headless_chromium(tmp_path, camera_engine, digits_h264):
    import cv2
    from fixtures_camera import LOOPBACK, CliRun, HeadlessChromium, StreamServers, free_port

    port = free_port()
    base = f"http://{LOOPBACK}:{port}"
    with StreamServers(digits_h264, 2) as servers:
        run = CliRun(
            "camera",
            "--engine",
            camera_engine,
            "--source",
            f"front={servers[0].url}",
            "--source",
            f"back={servers[1].url}",
            "--serve",
            f"{LOOPBACK}:{port}",
            "--serve-token",
            TOKEN,
            "--json",
            "--top-k",
            "3",
            "--duration",
            "120",
            "--stall-timeout",
            "30",
        )
        browser = None
        try:
            run.wait_records(30, timeout=90)
            assert f"note: live view at {base}/ (add ?token=YOUR_TOKEN)" in run.stderr
            status, body = _get(f"{base}/health")
            assert status == 200 and json.loads(body) == {"status": "ok", "streams": 2}
            assert _get(f"{base}/stats")[0] == 401 and _get(f"{base}/stream/front.mjpg")[0] == 401
            stats = json.loads(_get(f"{base}/stats?token={TOKEN}")[1])["streams"]
            assert set(stats) == {"front", "back"} and all(s["fps"] and s["fps"] > 10 for s in stats.values())

            events = _sse_lines(f"{base}/results?token={TOKEN}", 2.0)
            data = [json.loads(line[6:]) for line in events if line.startswith('data: {"stream"')]
            assert len(data) >= 20 and {d["stream"] for d in data} == {"front", "back"}
            assert "event: stats" in events

            browser = HeadlessChromium(tmp_path)

            async def steps(call):
                await call("Page.enable")
                await call("Page.navigate", {"url": f"{base}/?token={TOKEN}"})
                await asyncio.sleep(4.0)
                first = json.loads((await call("Runtime.evaluate", {"expression": PAGE_STATE}))["result"]["value"])
                shot = (await call("Page.captureScreenshot", {"format": "png"}))["data"]
                await asyncio.sleep(2.0)
                second = json.loads((await call("Runtime.evaluate", {"expression": PAGE_STATE}))["result"]["value"])
                return first, second, base64.b64decode(shot)

            first, second, png = browser.session(steps)
            run.proc.send_signal(signal.SIGTERM)
            code = run.finish(timeout=30)
        finally:
            if browser is not None:
                browser.close()
            run.finish(timeout=30)
    assert code == 0, run.stderr
    (tmp_path / "live-view.png").write_bytes(png)
    assert [c["id"] for c in first["cards"]] == ["card-front", "card-back"]
    assert second["received"] > first["received"] >= 20  # results keep coming without a reload
    for a, b in zip(first["cards"], second["cards"], strict=True):
        assert a["loaded"] == 320 and a["fps"] != "--" and a["preds"].strip()  # MJPEG frames shown, numbers in
        assert int(b["frame"]) > int(a["frame"])
    shot = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    scale = first["scale"]
    for card in first["cards"]:  # each stream's frame in the screenshot carries the loop's overlays
        x, y, w, h = (round(v * scale) for v in card["rect"])
        crop = shot[y : y + h, x : x + w]
        assert crop.shape[:2] == (h, w) and h > 100, card
        found = _overlay_in(crop)
        assert found["green_top_left"] > 8 and found["white_top_right"] > 20 and found["white_bottom_left"] > 50, (
            card["id"],
            found,
        )
