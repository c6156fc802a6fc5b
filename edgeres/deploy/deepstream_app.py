"""DeepStream app by ``edgeres deploy deepstream``: sources -> nvstreammux -> nvinfer -> probe -> nvdsosd -> sink.

Run it on the DeepStream machine, from the folder ``deploy`` wrote (DeepStream 6.4/7.x with its Python bindings,
pyds, and edgeres installed, ``pip install edgeres`` is enough: the decoder is numpy)::

    python3 deepstream_app.py file:///videos/a.mp4 rtsp://camera/stream --sink display

The probe after nvinfer reads the network's raw output (``output-tensor-meta=1``) and decodes it with edgeres's
own numpy code, the code every edgeres backend and the camera loop use: CenterNet boxes become object metadata
(nvdsosd draws them, later elements such as trackers see them), a classifier's top class becomes a label on
the frame. ``deploy.json`` names the decoder (``"decoder"``) and what is attached (``"attach"``); a new task adds
one entry to ``DECODERS`` and, when it attaches something new, one to ``ATTACHERS``.

This module imports nothing from DeepStream at import time, so its decoding is tested where DeepStream is not.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MUX_WIDTH, MUX_HEIGHT = 1280, 720


def load_settings(folder: Path = HERE) -> dict:
    """``deploy.json``: task, class names, input size, output name, decoder, what to attach, decoding settings."""
    return json.loads((Path(folder) / "deploy.json").read_text())


def _top_probabilities(settings: dict, output: np.ndarray, frame_hw: tuple[int, int], top_k: int):
    """The ONNX ends in Softmax (see deploy.json "output"): the top classes, best first."""
    flat = output.reshape(-1)
    order = np.argsort(-flat, kind="stable")[:top_k]
    return [(int(i), float(flat[i])) for i in order]


def _centernet(settings: dict, output: np.ndarray, frame_hw: tuple[int, int], top_k: int):
    """CenterNet maps -> ``Detections`` in frame pixels, with the manifest's detection settings."""
    from edgeres.tasks.detect.decode import decode_centernet

    det = settings["detection"]
    return decode_centernet(
        np.asarray(output, np.float32)[None],
        len(settings["class_names"]),
        tuple(settings["input_hw"]),
        [tuple(frame_hw)],
        score_threshold=det["score_threshold"],
        nms_iou=det["nms_iou"],
        max_detections=det["max_detections"],
    )[0]


DECODERS = {"softmax": _top_probabilities, "centernet": _centernet}  # deploy.json "decoder" -> function


def decode(settings: dict, output: np.ndarray, frame_hw: tuple[int, int], top_k: int = 1):
    """One frame's network output -> results in frame pixels.

    Args:
        settings: ``load_settings()``.
        output: the output tensor of one frame, without the batch axis.
        frame_hw: the frame's (height, width) where results are drawn (the muxer's resolution).
        top_k: classifiers: how many classes to return.

    Returns:
        "softmax": ``[(class index, probability)]``, best first; "centernet": an ``edgeres`` ``Detections``.
    """
    name = settings["decoder"]
    if name not in DECODERS:
        raise ValueError(f"this app has no decoder '{name}'; it knows: {', '.join(DECODERS)}")
    return DECODERS[name](settings, output, frame_hw, top_k)


def layer_array(pyds, layer) -> np.ndarray:
    """A copy of one output layer of NvDsInferTensorMeta as float32 numpy (host buffer, batch axis excluded)."""
    dims = layer.inferDims
    shape = [dims.d[i] for i in range(dims.numDims)]
    ptr = ctypes.cast(pyds.get_ptr(layer.buffer), ctypes.POINTER(ctypes.c_float))
    return np.ctypeslib.as_array(ptr, shape=shape).copy()


def _attach_objects(pyds, batch_meta, frame_meta, names: list[str], result) -> None:
    """Boxes as NvDsObjectMeta: nvdsosd draws them, trackers and analytics after it see them."""
    for box, score, label in zip(result.boxes, result.scores, result.labels, strict=True):
        obj = pyds.nvds_acquire_obj_meta_from_pool(batch_meta)
        obj.unique_component_id = 1
        obj.class_id = int(label)
        obj.confidence = float(score)
        obj.obj_label = names[int(label)]
        rect = obj.rect_params
        rect.left, rect.top = float(box[0]), float(box[1])
        rect.width, rect.height = float(box[2] - box[0]), float(box[3] - box[1])
        rect.border_width = 2
        rect.border_color.set(0.0, 1.0, 0.0, 1.0)
        text = obj.text_params
        text.display_text = f"{names[int(label)]} {float(score):.2f}"
        text.x_offset, text.y_offset = int(box[0]), max(0, int(box[1]) - 12)
        text.font_params.font_name = "Serif"
        text.font_params.font_size = 10
        text.font_params.font_color.set(1.0, 1.0, 1.0, 1.0)
        text.set_bg_clr = 1
        text.text_bg_clr.set(0.0, 0.0, 0.0, 0.6)
        pyds.nvds_add_obj_meta_to_frame(frame_meta, obj, None)


def _attach_frame_label(pyds, batch_meta, frame_meta, names: list[str], result) -> None:
    """The top class and its probability as a label on the frame."""
    index, prob = result[0]
    display = pyds.nvds_acquire_display_meta_from_pool(batch_meta)
    display.num_labels = 1
    text = display.text_params[0]
    text.display_text = f"{names[index]} {prob:.2f}"
    text.x_offset, text.y_offset = 10, 10
    text.font_params.font_name = "Serif"
    text.font_params.font_size = 14
    text.font_params.font_color.set(1.0, 1.0, 1.0, 1.0)
    text.set_bg_clr = 1
    text.text_bg_clr.set(0.0, 0.0, 0.0, 0.6)
    pyds.nvds_add_display_meta_to_frame(frame_meta, display)


ATTACHERS = {"objects": _attach_objects, "frame_label": _attach_frame_label}  # deploy.json "attach" -> function


def attach(pyds, batch_meta, frame_meta, settings: dict, result) -> None:
    """Put one frame's result into DeepStream metadata, as deploy.json's ``"attach"`` says."""
    name = settings["attach"]
    if name not in ATTACHERS:
        raise ValueError(f"this app cannot attach '{name}'; it knows: {', '.join(ATTACHERS)}")
    ATTACHERS[name](pyds, batch_meta, frame_meta, settings["class_names"], result)


def make_probe(settings: dict, frame_hw: tuple[int, int]):
    """The buffer probe on nvinfer's src pad."""
    import pyds
    from gi.repository import Gst

    def probe(pad, info, _data):
        buffer = info.get_buffer()
        batch_meta = pyds.gst_buffer_get_nvds_batch_meta(hash(buffer))
        l_frame = batch_meta.frame_meta_list
        while l_frame is not None:
            frame_meta = pyds.NvDsFrameMeta.cast(l_frame.data)
            l_user = frame_meta.frame_user_meta_list
            while l_user is not None:
                user_meta = pyds.NvDsUserMeta.cast(l_user.data)
                if user_meta.base_meta.meta_type == pyds.NvDsMetaType.NVDSINFER_TENSOR_OUTPUT_META:
                    tensor_meta = pyds.NvDsInferTensorMeta.cast(user_meta.user_meta_data)
                    for i in range(tensor_meta.num_output_layers):
                        layer = pyds.get_nvds_LayerInfo(tensor_meta, i)
                        if layer.layerName == settings["output_name"]:
                            output = layer_array(pyds, layer)
                            attach(pyds, batch_meta, frame_meta, settings, decode(settings, output, frame_hw))
                l_user = l_user.next
            l_frame = l_frame.next
        return Gst.PadProbeReturn.OK

    return probe


def _element(Gst, factory: str, name: str):
    element = Gst.ElementFactory.make(factory, name)
    if element is None:
        raise SystemExit(f"error: GStreamer element '{factory}' is missing; is DeepStream installed?")
    return element


def build_pipeline(uris: list[str], sink: str, settings: dict):
    """(pipeline, nvinfer) for the sources, with the probe attached."""
    from gi.repository import Gst

    pipeline = Gst.Pipeline()
    mux = _element(Gst, "nvstreammux", "mux")
    mux.set_property("batch-size", len(uris))
    mux.set_property("width", MUX_WIDTH)
    mux.set_property("height", MUX_HEIGHT)
    mux.set_property("batched-push-timeout", 40000)
    mux.set_property("live-source", int(any(u.startswith(("rtsp://", "http://", "https://")) for u in uris)))
    pipeline.add(mux)
    for i, uri in enumerate(uris):
        source = _element(Gst, "uridecodebin", f"source{i}")
        source.set_property("uri", uri)
        source.connect("pad-added", _link_source(Gst, mux, i))
        pipeline.add(source)
    infer = _element(Gst, "nvinfer", "infer")
    infer.set_property("config-file-path", str(HERE / "config_infer_primary.txt"))
    # nvinfer keeps the config's batch-size (the cached engine's name carries it); the muxer batches <= that many
    chain = [infer]
    if len(uris) > 1:
        tiler = _element(Gst, "nvmultistreamtiler", "tiler")
        columns = int(np.ceil(np.sqrt(len(uris))))
        tiler.set_property("rows", int(np.ceil(len(uris) / columns)))
        tiler.set_property("columns", columns)
        tiler.set_property("width", MUX_WIDTH)
        tiler.set_property("height", MUX_HEIGHT)
        chain.append(tiler)
    chain += [_element(Gst, "nvvideoconvert", "convert"), _element(Gst, "nvdsosd", "osd")]
    if sink == "display":
        chain.append(_element(Gst, "nveglglessink", "sink"))
    else:
        fake = _element(Gst, "fakesink", "sink")
        fake.set_property("sync", False)
        chain.append(fake)
    previous = mux
    for element in chain:
        pipeline.add(element)
        if not previous.link(element):
            raise SystemExit(f"error: cannot link {previous.get_name()} to {element.get_name()}")
        previous = element
    infer.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, make_probe(settings, (MUX_HEIGHT, MUX_WIDTH)), 0)
    return pipeline


def _link_source(Gst, mux, index: int):
    def on_pad(_decodebin, pad):
        caps = pad.get_current_caps() or pad.query_caps(None)
        if not caps.get_structure(0).get_name().startswith("video"):
            return
        request = getattr(mux, "request_pad_simple", None) or mux.get_request_pad
        sink_pad = request(f"sink_{index}")
        if pad.link(sink_pad) != Gst.PadLinkReturn.OK:
            sys.stderr.write(f"error: cannot link source {index} to nvstreammux\n")

    return on_pad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("uris", nargs="+", help="file:///..., rtsp://... (one per stream)")
    parser.add_argument("--sink", choices=("fake", "display"), default="fake")
    args = parser.parse_args(argv)
    settings = load_settings()
    if settings["decoder"] not in DECODERS or settings["attach"] not in ATTACHERS:
        parser.error(
            f"deploy.json asks for decoder '{settings['decoder']}' and attach '{settings['attach']}'; this app "
            f"knows decoders {', '.join(DECODERS)} and attach {', '.join(ATTACHERS)}: rerun 'edgeres deploy "
            "deepstream' with the edgeres that wrote it"
        )
    if len(args.uris) > settings["max_batch"]:
        parser.error(
            f"{len(args.uris)} streams but the config's batch-size is {settings['max_batch']}; rerun "
            f"'edgeres deploy deepstream --batch-size {len(args.uris)}'"
        )
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import GLib, Gst

    Gst.init(None)
    pipeline = build_pipeline(args.uris, args.sink, settings)
    loop = GLib.MainLoop()
    bus = pipeline.get_bus()
    bus.add_signal_watch()
    failed = []

    def on_message(_bus, message):
        if message.type == Gst.MessageType.EOS:
            loop.quit()
        elif message.type == Gst.MessageType.ERROR:
            err, debug = message.parse_error()
            failed.append(f"{err}: {debug}")
            loop.quit()

    bus.connect("message", on_message)
    pipeline.set_state(Gst.State.PLAYING)
    try:
        loop.run()
    finally:
        pipeline.set_state(Gst.State.NULL)
    if failed:
        sys.stderr.write(f"error: {failed[0]}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
