"""The live view for headless devices (``--serve [HOST:]PORT``): an HTTP server, on its own thread and event
loop (aiohttp), with a page that shows every stream's annotated frames and its latest results.

Endpoints (all but ``/health`` need the token when ``--serve-token`` is set: ``?token=T`` or
``Authorization: Bearer T``):

- ``/``: the page. One card per stream: the annotated frames (MJPEG), the latest predictions, FPS and the
  per-stage latency medians, updated by ``/results`` without reloading.
- ``/stream/NAME.mjpg``: the stream's annotated frames as MJPEG (multipart/x-mixed-replace).
- ``/snapshot/NAME.jpg``: the newest annotated frame.
- ``/results``: Server-Sent Events: every JSON line the loop writes (``data:``) and, once a second, an
  ``event: stats`` with each stream's FPS, latency medians and counts.
- ``/stats``: the same stats as one JSON object.
- ``/health``: 200 ``{"status": "ok"}`` while every stream produced a result in the last ``HEALTHY_WITHIN_S``
  seconds, else 503 with ``starting``/``degraded``/``down`` and the streams concerned (for monitors).

Frames are JPEG-encoded on the loop's result thread only while someone watches (or asked for a snapshot in
the last seconds), at most ``max_fps`` per stream, so an unwatched live view costs nothing per frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import re
import threading
import time
from dataclasses import dataclass

import numpy as np

from edgeres.camera.overlays import PANEL_STAGES, Hud
from edgeres.errors import EdgeresError, require

HEALTHY_WITHIN_S = 5.0
SNAPSHOT_KEEPALIVE_S = 5.0  # keep encoding this long after the last snapshot request
ACCEPTED_SERVE = "[HOST:]PORT, e.g. 8080, 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080"


@dataclass(frozen=True)
class ServeAddress:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def url(self, port: int | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port if port is not None else self.port}/"


def parse_serve(text: str) -> ServeAddress:
    """``--serve [HOST:]PORT`` -> where to listen; the host is 127.0.0.1 unless given (port 0: any free port).

    Raises:
        EdgeresError: not [HOST:]PORT, or a port outside 0-65535.
    """
    text = str(text).strip()
    match = re.fullmatch(r"(?:\[([0-9A-Fa-f:.]+)\]:|([^:\[\]]+):)?(\d{1,5})", text)
    if not match:
        raise EdgeresError(f"--serve '{text}' is not {ACCEPTED_SERVE}")
    host = match.group(1) or match.group(2) or "127.0.0.1"
    port = int(match.group(3))
    if port > 65535:
        raise EdgeresError(f"--serve '{text}': port {port} is above 65535")
    return ServeAddress(host, port)


class StreamFeed:
    """One stream's state shared between the result thread (writer) and the server's event loop (readers)."""

    def __init__(self, name: str):
        self.name = name
        self.jpeg: bytes | None = None
        self.seq = 0
        self.encoded_at = 0.0
        self.viewers = 0
        self.snapshot_wanted_until = 0.0
        self.hud = Hud()
        self.record: dict | None = None
        self.results = 0
        self.last_result: float | None = None


class LiveView:
    """The live-view sink and its HTTP server. ``start()`` binds (or raises), ``close()`` stops it."""

    needs_image = True

    def __init__(
        self,
        address: ServeAddress,
        names: list[str],
        token: str | None = None,
        task: str | None = None,
        max_fps: float = 15.0,
        jpeg_quality: int = 80,
    ):
        require("aiohttp", "desktop")
        self.address, self.names, self.token, self.task = address, list(names), token or None, task
        self.max_fps, self.jpeg_quality = max_fps, jpeg_quality
        self.feeds = {name: StreamFeed(name) for name in names}
        self.port: int | None = None  # the bound port (differs from address.port when that is 0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner = None
        self._subscribers: set[asyncio.Queue] = set()
        self._frame_events: dict[str, asyncio.Event] = {}
        self._stopping: asyncio.Event | None = None
        self._started = time.perf_counter()

    # ----- the loop's side (result thread) -----

    def start(self) -> LiveView:
        """Start the server thread and bind; returns once it listens.

        Raises:
            EdgeresError: the address is in use or cannot be bound.
        """
        box: dict = {}
        bound = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._bind())
            except OSError as exc:
                box["error"] = exc
                bound.set()
                loop.close()
                return
            bound.set()
            try:
                loop.run_until_complete(self._stopping.wait())
                loop.run_until_complete(self._runner.cleanup())
            finally:
                loop.close()

        self._thread = threading.Thread(target=main, name="edgeres-serve", daemon=True)
        self._thread.start()
        bound.wait(30)
        if "error" in box:
            exc = box["error"]
            where = f"{self.address.host}:{self.address.port}"
            if getattr(exc, "errno", None) == 98:
                raise EdgeresError(
                    f"--serve {where}: the port is in use; choose another port (or stop what listens there)"
                )
            raise EdgeresError(f"--serve {where}: cannot listen there ({exc.strerror or exc})")
        return self

    def write(self, record: dict, image: np.ndarray | None) -> None:
        feed = self.feeds.get(record.get("stream"))
        if feed is None or image is None or self._loop is None:
            return
        now = time.perf_counter()
        if feed.viewers <= 0 and now > feed.snapshot_wanted_until and feed.jpeg is not None:
            return
        if now - feed.encoded_at < 1.0 / self.max_fps:
            return
        cv2 = require("cv2", "desktop")
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            return
        feed.jpeg, feed.encoded_at = buf.tobytes(), now
        feed.seq += 1
        self._loop.call_soon_threadsafe(self._frame_ready, feed.name)

    def record_done(self, record: dict) -> None:
        feed = self.feeds.get(record.get("stream"))
        if feed is None or self._loop is None:
            return
        now = time.perf_counter()
        self.task = record.get("schema") or record.get("task") or self.task  # shown on the page, never branched on
        feed.hud.update(record.get("times_ms", {}), now)
        feed.record, feed.results, feed.last_result = record, feed.results + 1, now
        if self._subscribers:
            self._loop.call_soon_threadsafe(self._fanout, f"data: {json.dumps(record)}\n\n")

    def close(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop already closed
                self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(10)

    # ----- numbers -----

    def stats(self) -> dict:
        """Per stream: FPS, latency medians (ms) per stage, results so far, seconds since the last, the latest
        predictions."""
        now = time.perf_counter()
        out = {}
        for name, feed in self.feeds.items():
            out[name] = {
                "fps": feed.hud.fps,
                "results": feed.results,
                "age_s": None if feed.last_result is None else round(now - feed.last_result, 3),
                "latency_ms": {stage: feed.hud.median_ms(stage) for stage, _ in PANEL_STAGES},
                "frame": feed.record["frame"] if feed.record else None,
                "predictions": feed.record["predictions"] if feed.record else [],
            }
        return {"schema": self.task, "streams": out}

    def health(self) -> tuple[int, dict]:
        now = time.perf_counter()
        silent = [n for n, f in self.feeds.items() if f.last_result is None or now - f.last_result > HEALTHY_WITHIN_S]
        if not silent:
            return 200, {"status": "ok", "streams": len(self.feeds)}
        if all(f.last_result is None for f in self.feeds.values()):
            status = "starting" if now - self._started < 2 * HEALTHY_WITHIN_S else "down"
        else:
            status = "down" if len(silent) == len(self.feeds) else "degraded"
        return 503, {"status": status, "streams": len(self.feeds), "silent": silent}

    # ----- the server's side (its event loop) -----

    def _frame_ready(self, name: str) -> None:
        event = self._frame_events.get(name)
        self._frame_events[name] = asyncio.Event()
        if event is not None:
            event.set()

    def _fanout(self, message: str) -> None:
        for queue in list(self._subscribers):
            if not queue.full():  # a slow client misses lines instead of growing a queue
                queue.put_nowait(message)

    async def _bind(self) -> None:
        from aiohttp import web

        self._stopping = asyncio.Event()

        @web.middleware
        async def guard(request, handler):
            if self.token and request.path != "/health" and not self._authorized(request):
                return web.json_response(
                    {"error": "missing or wrong token (?token=... or Authorization: Bearer)"}, status=401
                )
            return await handler(request)

        app = web.Application(middlewares=[guard])
        app.add_routes(
            [
                web.get("/", self._page),
                web.get("/health", self._health),
                web.get("/stats", self._stats),
                web.get("/results", self._results),
                web.get("/stream/{name}.mjpg", self._mjpeg),
                web.get("/snapshot/{name}.jpg", self._snapshot),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.address.host, self.address.port)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            raise
        addresses = self._runner.addresses  # the bound port (for port 0)
        self.port = addresses[0][1] if addresses else self.address.port

    def _authorized(self, request) -> bool:
        given = request.query.get("token")
        header = request.headers.get("Authorization", "")
        if given is None and header.lower().startswith("bearer "):
            given = header[7:].strip()
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def _feed(self, request) -> StreamFeed:
        from aiohttp import web

        feed = self.feeds.get(request.match_info["name"])
        if feed is None:
            raise web.HTTPNotFound(text=f"no stream '{request.match_info['name']}'; streams: {', '.join(self.names)}")
        return feed

    async def _page(self, request):
        from aiohttp import web

        from edgeres.camera.live_page import render_page

        return web.Response(text=render_page(self.names, self.task), content_type="text/html")

    async def _health(self, request):
        from aiohttp import web

        status, body = self.health()
        return web.json_response(body, status=status)

    async def _stats(self, request):
        from aiohttp import web

        return web.json_response(self.stats())

    async def _snapshot(self, request):
        from aiohttp import web

        feed = self._feed(request)
        feed.snapshot_wanted_until = time.perf_counter() + SNAPSHOT_KEEPALIVE_S
        if feed.jpeg is None:
            return web.json_response({"error": f"no frame from '{feed.name}' yet"}, status=503)
        return web.Response(body=feed.jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def _mjpeg(self, request):
        from aiohttp import web

        feed = self._feed(request)
        response = web.StreamResponse(
            headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        feed.viewers += 1
        last = -1
        try:
            while not self._stopping.is_set():
                if feed.jpeg is None or feed.seq == last:
                    event = self._frame_events.setdefault(feed.name, asyncio.Event())
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(event.wait(), 1.0)
                    continue
                jpeg, last = feed.jpeg, feed.seq
                await response.write(
                    b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                    + str(len(jpeg)).encode()
                    + b"\r\n\r\n"
                    + jpeg
                    + b"\r\n"
                )
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            feed.viewers -= 1
        return response

    async def _results(self, request):
        from aiohttp import web

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await response.prepare(request)
        queue: asyncio.Queue = asyncio.Queue(maxsize=256)
        self._subscribers.add(queue)
        next_stats = 0.0
        try:
            await response.write(b"retry: 1000\n\n")
            while not self._stopping.is_set():
                now = time.perf_counter()
                if now >= next_stats:
                    await response.write(f"event: stats\ndata: {json.dumps(self.stats())}\n\n".encode())
                    next_stats = now + 1.0
                with contextlib.suppress(asyncio.TimeoutError):
                    message = await asyncio.wait_for(queue.get(), max(0.05, next_stats - time.perf_counter()))
                    await response.write(message.encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._subscribers.discard(queue)
        return response
