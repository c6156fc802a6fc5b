"""The camera loop: sources (cameras, files, streams, CSI, GStreamer, image folders), a pipelined loop,
overlays and sinks (window, recording, JSON lines). ``edgeres camera`` is a thin layer over ``run_camera``.
"""

from edgeres.camera.loop import CameraConfig, LoopConfig, run_camera, run_loop
from edgeres.camera.sources import SourceConfig, parse_source

__all__ = ["CameraConfig", "LoopConfig", "SourceConfig", "parse_source", "run_camera", "run_loop"]
