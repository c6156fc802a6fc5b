"""``edgeres demo``: the whole product on the bundled real digits, start to finish, on a CPU in minutes.

data -> train ResNet-18 -> export (verified) -> calibrate INT8 with two methods -> short QAT -> build
FP32 and INT8 CPU engines -> comparison report -> camera loop on the digits video, recorded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from edgeres.errors import EdgeresError

CALIBRATION_METHODS = ("mse", "entropy")


@dataclass
class DemoResult:
    folder: Path
    seconds: float = 0.0
    rows: list[dict] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)
    camera: dict | None = None


def run_demo(out: Path, epochs: int = 4, force: bool = False, say=print) -> DemoResult:
    """Run every step into ``out`` and return the report rows and the paths to open.

    Args:
        out: demo folder (refused when it already holds a demo, unless ``force``).
        epochs: training epochs (4 reach about 98 % on the digits).
        force: run again in a folder that holds a demo.
        say: where progress lines go.
    """
    from edgeres.build import BuildConfig, build_engine
    from edgeres.data.digits import write_digits
    from edgeres.onnx_model.export import export_checkpoint
    from edgeres.quant.qat import QatConfig, qat
    from edgeres.quant.workflow import CalibConfig, run_calibration
    from edgeres.report import ReportConfig, build_report, write_report
    from edgeres.train import TrainConfig, train

    out = Path(out)
    if (out / "runs").exists() and not force:
        raise EdgeresError(f"{out} already holds a demo; pass --force to run it again there, or choose another --out")
    start = time.perf_counter()
    result = DemoResult(out)
    data = out / "data" / "digits"
    say(f"1/8 writing the bundled real MNIST digits to {data}")
    write_digits(data, size=32, force=force, progress=False)
    say(f"2/8 training ResNet-18 for {epochs} epochs at 32x32")
    run = out / "runs" / "digits"
    summary = train(TrainConfig(data=data, out=run, epochs=epochs, img_size=32, batch_size=64, force=True))
    ckpt = run / "best.safetensors"
    say(f"    best val top-1 {summary['best_val_top1']:.2f}% in {summary['train_seconds']:.0f} s")
    say("3/8 exporting ONNX and checking it against torch on real images")
    exported = export_checkpoint(ckpt, out / "r18.onnx", force=True)
    say(f"    max abs difference {exported.max_abs_diff:.1e}")
    say(f"4/8 calibrating INT8 ({', '.join(CALIBRATION_METHODS)}) on 512 real training images")
    calibs = {m: run_calibration(CalibConfig(model=ckpt, data=data / "train", out=out / "calibration" / f"r18-{m}",
                                             method=m, num_images=512, force=True))
              for m in CALIBRATION_METHODS}
    say("5/8 quantization-aware training: 1 short epoch from the entropy calibration")
    qat_run = out / "runs" / "qat"
    qat(QatConfig(model=ckpt, data=data, out=qat_run, epochs=1, lr=5e-4, calib=calibs["entropy"].folder,
                  max_steps_per_epoch=40, force=True))
    say("6/8 building CPU engines (ONNX Runtime): FP32, INT8 per calibration, INT8 from QAT")
    engines = out / "engines"
    configs = [BuildConfig(model=ckpt, out=engines / "r18-fp32", backend="onnxruntime", force=True)]
    configs += [BuildConfig(model=ckpt, out=engines / f"r18-int8-{m}", backend="onnxruntime", precision="int8",
                            calib=c.folder, force=True) for m, c in calibs.items()]
    configs.append(BuildConfig(model=qat_run / "best.safetensors", out=engines / "r18-int8-qat", backend="onnxruntime",
                               precision="int8", calib=qat_run / "calibration", force=True))
    for cfg in configs:
        build_engine(cfg, progress=False)
    say("7/8 comparison report: every engine and the torch reference, evaluated and timed the same way")
    report = build_report(ReportConfig(engines=[c.out for c in configs], data=data, out=out / "report", model=ckpt,
                                       duration=2.0, warmup=0.5))
    write_report(report, out / "report", [], force=True)
    result.rows = report["rows"]
    say("8/8 camera loop, headless, on the digits test video, recorded")
    result.camera = _camera_step(out, engines / "r18-int8-mse", say)
    result.seconds = time.perf_counter() - start
    result.paths = {"report": out / "report" / "report.html", "engines": engines, "checkpoint": ckpt,
                    "calibration": out / "calibration", "data": data}
    if result.camera and result.camera.get("recording"):
        result.paths["recording"] = Path(result.camera["recording"])
    return result


def _camera_step(out: Path, engine: Path, say) -> dict:
    """The camera loop, headless, on the digits test video; the annotated recording is kept."""
    from edgeres.camera.loop import CameraConfig, LoopConfig, run_camera
    from edgeres.camera.sinks import VideoRecorder
    from edgeres.camera.sources import SourceConfig
    from edgeres.data.digits_video import write_digits_video

    folder = out / "camera"
    video = write_digits_video(folder / "video", force=True)
    recording = folder / "annotated.mkv"
    if recording.exists():
        recording.unlink()  # the demo's own file from an earlier run (the demo folder was accepted with --force)
    recorder = VideoRecorder(recording)

    def sinks(rate: float) -> list:
        recorder.fps = rate
        return [recorder]

    source = folder / "video" / video["video"]
    summary = run_camera(CameraConfig(engine=engine, source=SourceConfig(str(source)), loop=LoopConfig()), sinks)
    if summary.get("failures"):  # the recording could not be written (disk full, ...): the demo fails, as camera does
        raise EdgeresError(f"demo camera step: {summary['failures'][0]}")
    say(f"    {summary['frames_processed']} frames at {summary['fps']:.1f} FPS, recorded to {recording}")
    return {"frames": summary["frames_processed"], "fps": round(summary["fps"] or 0.0, 1),
            "capture_to_result_p50_ms": round(summary["latency_ms"].get("capture_to_result", {}).get("p50", 0.0), 2),
            "recording": str(recording)}
