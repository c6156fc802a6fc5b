"""``edgeres camera`` as a library call: plan the streams, check the options, open the engine and the sources,
then run the pipelined loop (``edgeres.camera.pipelined.run_streams``); Ctrl-C/SIGTERM stop it cleanly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgeres.camera.capture import EventFn, Frame
from edgeres.camera.inference import StallError, batching_for
from edgeres.camera.memory import limit_malloc_arenas
from edgeres.camera.pipelined import LoopConfig, Rates, run_streams
from edgeres.camera.readers import make_reader
from edgeres.camera.results import STAGES, make_postprocess
from edgeres.camera.slots import FrameSlot, SlotClosed, Stopper
from edgeres.camera.sources import SourceConfig, SourceOpenError, Stream, plan_streams
from edgeres.errors import EdgeresError

__all__ = [
    "STAGES",
    "CameraConfig",
    "EventFn",
    "Frame",
    "FrameSlot",
    "LoopConfig",
    "Rates",
    "SlotClosed",
    "StallError",
    "Stopper",
    "make_postprocess",
    "run_camera",
    "run_loop",
    "run_streams",
    "stop_on_signals",
]


def run_loop(
    engine, reader, spec, sinks: list, cfg: LoopConfig, stopper: Stopper | None = None, on_event: EventFn | None = None
) -> dict:
    """``run_streams`` for one opened source (named cam0)."""
    return run_streams(engine, [(Stream("cam0", spec), reader)], sinks, cfg, stopper, on_event)


@dataclass
class CameraConfig:
    """Everything ``edgeres camera`` needs; the CLI only fills this in.

    ``source`` holds the options every source is opened with; ``sources`` lists the run's sources
    (``SOURCE`` or ``NAME=SOURCE``); without it the run reads ``source.source`` alone.
    """

    engine: Path
    source: SourceConfig
    loop: LoopConfig = field(default_factory=LoopConfig)
    threads: int | None = None
    spinning: bool = False  # idle ONNX Runtime threads would take the cores capture and rendering need
    sources: list[str] | None = None


def check_options(spec, cfg: CameraConfig) -> None:
    """Reject option combinations that do not apply to this source (never silently ignore them).

    Raises:
        EdgeresError: ``--realtime`` or ``--fps`` with a live source, or non-positive limits.
    """
    if spec.live and cfg.loop.realtime:
        raise EdgeresError(
            f"--realtime paces files and image folders; {spec.describe()} is live and already drops old frames"
        )
    if spec.live and cfg.source.fps is not None:
        raise EdgeresError(f"--fps sets the rate of image folders; {spec.describe()} has its own")
    if spec.kind == "file" and cfg.source.fps is not None:
        raise EdgeresError("--fps sets the rate of image folders; a video file plays at its own")
    for name, value in (("--max-frames", cfg.loop.max_frames), ("--duration", cfg.loop.duration)):
        if value is not None and value <= 0:
            raise EdgeresError(f"{name} must be positive, got {value}")
    if cfg.loop.max_batch_wait < 0:
        raise EdgeresError(f"--max-batch-wait must be 0 or more milliseconds, got {cfg.loop.max_batch_wait * 1e3:g}")


def plan_run(cfg: CameraConfig) -> list[Stream]:
    """The run's streams, parsed, named and checked against the options.

    Raises:
        EdgeresError: a bad or repeated source, or an option that does not apply to one of them.
    """
    streams = plan_streams(cfg.sources if cfg.sources is not None else [cfg.source.source])
    for stream in streams:
        check_options(stream.spec, cfg)
    return streams


def open_streams(streams: list[Stream], cfg: SourceConfig, on_event: EventFn) -> list[tuple[Stream, object]]:
    """Open every stream at once (each open has its own deadline, so N dead cameras cost one timeout).

    With several streams, a live stream that can reconnect (camera, network stream, CSI) and fails to open
    is reported and started reconnecting: the others run. Anything else that fails to open stops the run.

    Raises:
        SourceOpenError: a source failed to open (the only one, or one that cannot reconnect).
    """
    readers = [make_reader(s.spec, dataclasses.replace(cfg, source=s.spec.text)) for s in streams]
    errors: list[BaseException | None] = [None] * len(streams)

    def open_one(n: int) -> None:
        try:
            readers[n].open()
        except BaseException as exc:
            errors[n] = exc

    threads = [
        threading.Thread(target=open_one, args=(n,), name="edgeres-open-all", daemon=True) for n in range(len(streams))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failed = [(s, e) for s, e in zip(streams, errors, strict=True) if e is not None]
    fatal = [
        (s, e) for s, e in failed if len(streams) == 1 or not isinstance(e, SourceOpenError) or not s.spec.reconnects
    ]
    if fatal:
        for reader, error in zip(readers, errors, strict=True):
            if error is None:
                reader.close()
        stream, exc = fatal[0]
        if len(streams) > 1 and isinstance(exc, EdgeresError):
            raise type(exc)(f"stream '{stream.name}': {exc}") from None
        raise exc
    for stream, exc in failed:
        on_event("warning", f"{stream.name}: {exc}; the other streams start, this one keeps reconnecting")
    for reader, error in zip(readers, errors, strict=True):
        reader.is_open = error is None
    return list(zip(streams, readers, strict=True))


def run_camera(
    cfg: CameraConfig,
    sinks_factory: Callable[[float], list],
    stopper: Stopper | None = None,
    on_event: EventFn | None = None,
) -> dict:
    """Parse and check the sources, open the engine and the sources, then ``run_streams``. Caps glibc's malloc
    arenas first (``edgeres.camera.memory``) so a long run's resident memory stays flat.

    Args:
        cfg: engine, sources and loop settings.
        sinks_factory: called once the sources are open with the recording frame rate (a ``Rates``: the
            fastest stream's rate, or 30; each stream's in ``per_stream``); returns the sinks. Sinks that check
            paths should be built (and checked) before, by the caller.
        stopper: stop from outside (signals).
        on_event: warnings.

    Returns:
        ``run_streams``'s summary.
    """
    from edgeres.engine import open_engine

    on_event = on_event or (lambda level, message: None)
    streams = plan_run(cfg)
    limit_malloc_arenas()  # before the engine's and the loop's threads: see edgeres.camera.memory
    engine = open_engine(cfg.engine, threads=cfg.threads, spinning=cfg.spinning)
    make_postprocess(engine, cfg.loop)  # refuse an unknown task or bad detection settings before opening a source
    batching = batching_for(engine, len(streams), cfg.loop.max_batch_wait, cfg.loop.max_batch)
    if len(streams) > batching.max_batch:
        on_event(
            "note",
            f"{len(streams)} streams and batches of at most {batching.max_batch} for {engine.name}: "
            f"each round runs {-(-len(streams) // batching.max_batch)} batches, streams taking turns",
        )
    opened = open_streams(streams, cfg.source, on_event)
    try:
        rates = {s.name: cfg.source.fps or getattr(r, "fps", None) or 30.0 for s, r in opened}
        sinks = sinks_factory(Rates(rates))
    except BaseException:
        for _, reader in opened:
            reader.close()
        raise
    return run_streams(engine, opened, sinks, cfg.loop, stopper, on_event, batching)


@contextlib.contextmanager
def stop_on_signals(stopper: Stopper):
    """While inside, SIGINT and SIGTERM stop the loop cleanly (a second Ctrl-C interrupts at once).

    Only usable from the main thread (Python delivers signals there).
    """

    def handler(signum, frame):
        if signum == signal.SIGINT and stopper.is_set():
            raise KeyboardInterrupt
        stopper.request(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopper
    finally:
        for s, h in old.items():
            signal.signal(s, h)
