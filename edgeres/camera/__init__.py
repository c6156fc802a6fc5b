"""The camera loop: sources (cameras, files, streams, CSI, GStreamer, image folders), one or many streams in a
pipelined loop with batched inference, overlays and sinks (window, recordings, JSON lines, the live view in a
browser, re-streaming). ``edgeres camera`` is a thin layer over ``run_camera``.
"""

from edgeres.camera.loop import CameraConfig, LoopConfig, run_camera, run_loop, run_streams
from edgeres.camera.sources import SourceConfig, parse_source

__all__ = ["CameraConfig", "LoopConfig", "SourceConfig", "parse_source", "run_camera", "run_loop", "run_streams"]
