"""Versions of the packages the pipeline uses, and what OpenCV was built with."""

from __future__ import annotations

import platform

from edgeres.device.common import fields_of, import_or_none


def parse_opencv_build(text: str) -> dict:
    """Video and GUI support from ``cv2.getBuildInformation()``.

    Args:
        text: the build information text.

    Returns:
        ``{"ffmpeg": bool, "gstreamer": bool, "gui": bool}``. ``gui`` is true when the ``GUI:``
        line names a backend (e.g. "GTK3", not "NONE"), or, in builds before 4.6 where ``GUI:`` is
        only a heading, when a backend under it says YES. Headless wheels have no GUI.
    """
    lines = text.splitlines()
    fields = fields_of(text)
    gui_value = fields.get("gui", "")
    if gui_value:
        gui = gui_value.upper() not in ("NONE", "NO", "HEADLESS")
    else:
        gui = False
        for i, line in enumerate(lines):
            if line.strip().lower().startswith("gui:"):
                depth = len(line) - len(line.lstrip())
                for sub in lines[i + 1 :]:
                    if sub.strip() and len(sub) - len(sub.lstrip()) <= depth:
                        break
                    key, _, value = sub.partition(":")
                    # VTK is the viz module's renderer, not a highgui window backend.
                    if not key.strip().upper().startswith("VTK"):
                        gui = gui or value.strip().upper().startswith("YES")
                break
    return {
        "ffmpeg": fields.get("ffmpeg", "").upper().startswith("YES"),
        "gstreamer": fields.get("gstreamer", "").upper().startswith("YES"),
        "gui": gui,
    }


def package_versions() -> dict:
    """Versions of Python, edgeres and the packages the pipeline uses; ``None`` means not installed.

    Returns:
        ``{"python", "edgeres", "numpy", "torch", "torchvision", "onnx", "onnxruntime",
        "onnxruntime_providers", "opencv", "opencv_ffmpeg", "opencv_gstreamer", "opencv_gui",
        "tensorrt", "import_errors"}``. ``import_errors`` maps a package that is installed but
        fails to import to its error, e.g. a JetPack torch missing a CUDA library.
    """
    from edgeres import __version__

    errors: dict[str, str] = {}
    out: dict = {"python": platform.python_version(), "edgeres": __version__}
    for name in ("numpy", "torch", "torchvision", "onnx", "onnxruntime"):
        out[name] = getattr(import_or_none(name, errors), "__version__", None)
    ort = import_or_none("onnxruntime", errors) if out["onnxruntime"] else None
    out["onnxruntime_providers"] = list(ort.get_available_providers()) if ort else None

    cv2 = import_or_none("cv2", errors)
    out["opencv"] = getattr(cv2, "__version__", None)
    build = parse_opencv_build(cv2.getBuildInformation()) if cv2 else {}
    for key in ("ffmpeg", "gstreamer", "gui"):
        out[f"opencv_{key}"] = build.get(key)

    trt = import_or_none("tensorrt", errors)  # lazily, here only: importing it initialises CUDA
    out["tensorrt"] = getattr(trt, "__version__", None)
    out["import_errors"] = errors
    return out
