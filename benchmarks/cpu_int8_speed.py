"""CPU INT8 speed and accuracy, side by side on the same trained model and calibration images:
the edgeres INT8 engines (OpenVINO and ONNX Runtime, both from the same Q/DQ artifact) vs ONNX Runtime's
`quantize_static` (its fastest settings) vs OpenVINO with NNCF post-training quantization, plus the
edgeres FP32 engine and PyTorch eager FP32.

Exactness: every row's logits are compared with the Q/DQ artifact's own arithmetic (the Q/DQ ONNX run
by ONNX Runtime with graph optimizations off: each QuantizeLinear/DequantizeLinear evaluated as
written, TensorRT's semantics) on the val images: top-1 agreement and the largest |logit difference|.

ResNet-18 at 224x224, batch 1, the same thread count everywhere; timing rounds are interleaved, each round in a
new random order, after a pause and two untimed calls (`_common.interleaved`: a runtime's threads that still spin after
its calls would otherwise slow whichever row comes next).
The model is the clutter-set ResNet-18 (trained at 64x64), run at 224x224 on the same images
upscaled: every variant sees identical inputs, so accuracies compare (they are lower than at 64x64).

Also printed: the CPU's ISA, the kernels each engine ran (ONNX Runtime: the integer op types of its optimized
graph and whether any u8 x s8 pair sum can leave int16; OpenVINO: the execution graph's kernel names, e.g.
`brgconv_avx512_amx_I8`, `jit_avx2_I8`), and a roofline column: each row's achieved GOP/s against the nominal
peak of this ISA for the cores used (int8 for INT8 rows, FP32 FMA for FP32 rows; see `nominal_peak_gops`).
On an AVX-512/AMX machine, `ONEDNN_MAX_CPU_ISA=AVX2` caps oneDNN (the OpenVINO rows) at AVX2 kernels; ONNX
Runtime has no such cap (MLAS picks kernels from CPUID), so its rows stay this CPU's.

The edgeres engines are built as `edgeres build --int8-cpu auto` builds them on this CPU (their stem weights on
-64..64, read whole); `--both-forms` adds, for each, a row for the engine of the same calibration written with the
stem weights on -127..127 (as before `quant.signs`) and built `--int8-cpu portable` (the stem split), to measure
what the split cost in the same run.

Needs the `bench` extra (openvino, nncf) for the OpenVINO rows. `--static-peer` adds a row for the NNCF
model compiled for the fixed input shape (the edgeres OpenVINO engine compiles static shapes).
Run:  python benchmarks/cpu_int8_speed.py --model runs/clutter/best.safetensors --data data/digits-clutter
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import calibration_images_at_size, interleaved, machine_line, model_at_size, print_table

RESNET18_GMACS_224 = 1.8186  # multiply-accumulates of one 224x224 ResNet-18 inference (conv + fc), in billions

# Nominal multiply-accumulates per cycle and core: (int8, fp32). x86 without VNNI: vpmaddubsw on two 256/512-bit
# ports (its vpmaddwd/vpaddd companions ignored: an upper bound); VNNI: vpdpbusd, the same width; AMX: one TMUL
# tile multiply (16x16x64 int8) per 16 cycles; FP32: two FMA ports.
MACS_PER_CYCLE = {"avx2": (64, 16), "avx2-vnni": (64, 16), "avx512": (128, 32), "avx512-vnni": (128, 32),
                  "amx": (1024, 32)}


def nominal_peak_gops(cores: int) -> dict[str, float | None]:
    """This CPU's nominal int8 and FP32 peaks in GOP/s (2 ops per multiply-accumulate) for ``cores`` cores, from its
    ISA and current clock (/proc/cpuinfo "cpu MHz"); None where either is unknown. ``ONEDNN_MAX_CPU_ISA=AVX2``
    lowers the ISA used for the OpenVINO rows' peak."""
    from edgeres.device.cpu import cpu_facts

    isa = cpu_facts()["isa"]
    tags = isa.split("-")[1:]
    key = "amx" if "amx" in tags else "-".join(tags[:2]) if len(tags) > 1 else (tags[0] if tags else "")
    try:
        text = Path("/proc/cpuinfo").read_text()
        mhz = max(float(line.split(":")[1]) for line in text.splitlines() if line.startswith("cpu MHz"))
    except (OSError, ValueError):
        mhz = None
    if key not in MACS_PER_CYCLE or not mhz:
        return {"int8": None, "fp32": None, "isa": isa, "ghz": mhz and mhz / 1e3}
    int8, fp32 = MACS_PER_CYCLE[key]
    capped = os.environ.get("ONEDNN_MAX_CPU_ISA", "").lower()
    onednn_names = {"avx2": "avx2", "avx2_vnni": "avx2-vnni", "avx512_core": "avx512",
                    "avx512_core_vnni": "avx512-vnni"}
    ov_int8 = MACS_PER_CYCLE[onednn_names[capped]][0] if capped in onednn_names else int8
    scale = 2 * cores * mhz / 1e3
    return {"int8": int8 * scale, "fp32": fp32 * scale, "openvino_int8": ov_int8 * scale, "isa": isa,
            "ghz": mhz / 1e3}


def ort_kernels(model_path: Path, session_config: dict | None = None) -> str:
    """The integer kernels of ONNX Runtime's optimized graph for a model, with their largest u8 x s8 pair sum."""
    import collections

    import onnx

    from edgeres.backends.onnxrt.loader import write_optimized_model
    from edgeres.quant.cpu import INTEGER_KERNEL_INPUTS, integer_kernel_bounds

    out = model_path.with_suffix(".optimized.onnx")
    write_optimized_model(model_path, out, "all", session_config=session_config)
    model = onnx.load(str(out))
    ops = collections.Counter(n.op_type for n in model.graph.node if n.op_type in INTEGER_KERNEL_INPUTS)
    bounds = integer_kernel_bounds(model)
    worst = max((b.pair_max for b in bounds), default=0)
    return (", ".join(f"{k} x{v}" for k, v in sorted(ops.items())) + (
        f"; largest u8 x s8 pair sum {worst} ({'fits' if worst <= 32767 else 'can saturate'} int16 without VNNI)"
        if bounds else "; u8 x u8 weights (precision mode)"))


def openvino_kernels(compiled) -> str:
    """The execution graph's Convolution / FullyConnected kernels (name x count, runtime precision)."""
    import collections

    from edgeres.backends.openvino.loader import COMPUTE_LAYERS, runtime_kernels

    counts = collections.Counter(f"{kernel} ({precision})" for kind, kernel, precision in runtime_kernels(compiled)
                                 if kind in COMPUTE_LAYERS)
    return ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))


def wide_stem_calibration(calib, work: Path) -> Path:
    """A copy of the calibration folder whose Q/DQ artifact has the stem's weights on -127..127 (the form before
    ``quant.signs``): its engines split the stem where int8 products sum in 16-bit pairs."""
    import shutil

    import onnx

    from edgeres.quant.qdq import write_qdq

    folder = work / "calib-wide-stem"
    if not folder.is_dir():
        shutil.copytree(calib.folder, folder)
        onnx.save(write_qdq(onnx.load(str(calib.fp32_onnx)), calib.scales, signed_input_qmax=127),
                  str(folder / calib.qdq_onnx.name))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="ImageFolder with train/ (calibration) and val/")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--method", default="entropy", help="edgeres calibration method")
    parser.add_argument("--num-images", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=20)
    parser.add_argument("--static-peer", action="store_true", help="also time NNCF's model compiled static")
    parser.add_argument("--val-images", type=int, default=None, help="judge accuracy on about N val images only")
    parser.add_argument("--no-eager", action="store_true",
                        help="leave out the PyTorch eager row (the slowest: most of a run's time on a loaded machine)")
    parser.add_argument("--both-forms", action="store_true",
                        help="also time each edgeres engine from stem weights to 127, split (--int8-cpu portable)")
    args = parser.parse_args()

    import onnxruntime as ort
    import torch

    from edgeres.build import BuildConfig, build_engine
    from edgeres.data.imagefolder import load_eval_split
    from edgeres.engine import open_engine
    from edgeres.errors import MissingDependencyError
    from edgeres.processing import preprocess, read_image
    from edgeres.quant.workflow import CalibConfig, run_calibration
    from edgeres.tasks.classify.data import EvalImages

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp())
    model_file, pre, model = model_at_size(args.model, args.size, work)
    # The same calibration images for everyone, resized to the network size as the val images are.
    calib_paths, calib_dir = calibration_images_at_size(args.data / "train", args.size, args.num_images, work)
    calib_batches = [preprocess([read_image(p)], pre) for p in calib_paths]
    val = EvalImages(load_eval_split(args.data), pre)
    if args.val_images:  # every k-th image of the (class-sorted) split: a quicker run, every class still judged
        split, step = val.images, max(1, len(val.images) // args.val_images)
        val = EvalImages(replace(split, paths=split.paths[::step], labels=split.labels[::step]), pre)

    # edgeres: FP32 engine, then calibrate + INT8 engine.
    build_engine(BuildConfig(model=model_file, out=work / "fp32", backend="onnxruntime"), progress=False)
    calib = run_calibration(CalibConfig(model=model_file, data=calib_dir, out=work / "calib",
                                        method=args.method, num_images=args.num_images, progress=False))
    forms = {}  # engine folder -> (row name, backend, --int8-cpu)
    for backend, label in (("openvino", "OpenVINO"), ("onnxruntime", "ONNX Runtime")):
        try:
            _, manifest = build_engine(BuildConfig(model=model_file, out=work / f"int8-{backend}", backend=backend,
                                                   precision="int8", calib=calib.folder), progress=False)
        except MissingDependencyError:
            print(f"{backend} not installed: the edgeres {label} engine row is skipped")
            continue
        forms[f"int8-{backend}"] = f"edgeres INT8 engine ({label})", manifest
        if args.both_forms and not manifest["backend"]["stem_split"]:
            _, split = build_engine(BuildConfig(model=model_file, out=work / f"int8-{backend}-split", backend=backend,
                                                precision="int8", calib=wide_stem_calibration(calib, work),
                                                int8_cpu="portable"), progress=False)
            forms[f"int8-{backend}-split"] = f"edgeres INT8 engine ({label}, stem weights to 127, split)", split
    fp32_onnx = calib.fp32_onnx

    # ONNX Runtime's own flow: pre-process, quantize_static (QDQ, u8 asymmetric activations, s8 per-channel
    # weights: the fastest of its settings on x86 per DESIGN.md's measurements).
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter({"input": b} for b in calib_batches)

        def get_next(self):
            return next(self.it, None)

    ort_pre, ort_q = work / "ort_pre.onnx", work / "ort_int8.onnx"
    quant_pre_process(str(fp32_onnx), str(ort_pre))
    quantize_static(str(ort_pre), str(ort_q), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.log_severity_level = 3
    ort_session = ort.InferenceSession(str(ort_q), so, providers=["CPUExecutionProvider"])


    # The Q/DQ artifact's own arithmetic: the reference every INT8 row is compared with.
    ref_so = ort.SessionOptions()
    ref_so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref_so.intra_op_num_threads = args.threads
    ref_so.log_severity_level = 3
    reference = ort.InferenceSession(str(calib.qdq_onnx), ref_so, providers=["CPUExecutionProvider"])

    predictors = {}
    runners = []
    kernels = {}
    engines = {name: open_engine(work / name, threads=args.threads) for name in (*forms, "fp32")}
    runners += [e.runner for e in engines.values()]
    for r in runners:
        r.activate()
    for folder, (row, manifest) in forms.items():
        engine = engines[folder]
        predictors[row] = lambda x, e=engine: e.runner.infer(x)["logits"]
        form = (f"--int8-cpu {manifest['backend']['int8_cpu']} (stem "
                f"{'split' if manifest['backend']['stem_split'] else 'whole'})")
        if manifest["backend"]["name"] == "openvino":
            kernels[row] = openvino_kernels(engine.runner.loader.compile((1, 3, args.size, args.size))) + "; " + form
        else:
            int8_config = engine.runner.loader.session_config
            kernels[row] = ort_kernels(engine.engine_file, int8_config) + "; session.x64quantprecision " + (
                "on" if "session.x64quantprecision" in int8_config else "off") + "; " + form
    predictors["ONNX Runtime quantize_static INT8"] = lambda x: ort_session.run(None, {"input": x})[0]
    kernels["ONNX Runtime quantize_static INT8"] = ort_kernels(ort_q)
    try:
        import nncf
        import openvino as ov

        core = ov.Core()
        ov_fp32 = core.read_model(str(fp32_onnx))
        ov_int8 = nncf.quantize(ov_fp32, nncf.Dataset(calib_batches), subset_size=len(calib_batches))
        compiled = core.compile_model(ov_int8, "CPU", {"INFERENCE_NUM_THREADS": args.threads,
                                                        "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        predictors["OpenVINO + NNCF PTQ INT8"] = lambda x: request.infer({0: x})[0].copy()
        kernels["OpenVINO + NNCF PTQ INT8"] = openvino_kernels(compiled)
        if args.static_peer:
            static = ov_int8.clone()
            static.reshape([1, 3, args.size, args.size])
            static_request = core.compile_model(static, "CPU", {"INFERENCE_NUM_THREADS": args.threads,
                                                                "PERFORMANCE_HINT": "LATENCY"}).create_infer_request()
            predictors["OpenVINO + NNCF PTQ INT8, static shape"] = lambda x: static_request.infer({0: x})[0].copy()
    except ImportError:
        print("openvino/nncf not installed (pip install 'edgeres[bench]'): the OpenVINO row is skipped")
    predictors["edgeres FP32 engine (ONNX Runtime)"] = lambda x: engines["fp32"].runner.infer(x)["logits"]

    def eager(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    if not args.no_eager:
        predictors["PyTorch eager FP32"] = eager

    # Accuracy on the val split, then interleaved timing on one real image.
    logits = {}
    for name, f in predictors.items():
        logits[name] = np.concatenate([f(x[i:i + 1]) for x in val.batches(64) for i in range(len(x))])
    ref_logits = np.concatenate([reference.run(None, {"input": x})[0] for x in val.batches(64)])
    preds = {name: v.argmax(1) for name, v in logits.items()}
    x = next(val.batches(1))
    medians = interleaved({k: (lambda f=f: f(x)) for k, f in predictors.items()}, rounds=args.rounds,
                          per_round=args.per_round, warmup=5)
    fp32_name = "edgeres FP32 engine (ONNX Runtime)"
    labels, ref = val.labels, preds["PyTorch eager FP32" if not args.no_eager else fp32_name]
    fp32_engine = np.median(medians[fp32_name])
    eager_ms = np.median(medians["PyTorch eager FP32"]) if not args.no_eager else None
    print(machine_line())
    print(f"ResNet-18 {args.size}x{args.size} batch 1, {args.threads} threads, {args.rounds} interleaved rounds of "
          f"{args.per_round}; {len(calib_paths)} calibration images from {args.data}/train; accuracy on "
          f"{len(labels)} val images; edgeres method {args.method}\n")
    peak = nominal_peak_gops(args.threads)
    gop = 2 * RESNET18_GMACS_224 * (args.size / 224) ** 2  # ResNet-18's work scales with the pixels
    rows = []
    for name, v in medians.items():
        med = np.median(v)
        top = peak["fp32"] if "FP32" in name else peak.get("openvino_int8") if "OpenVINO" in name else peak["int8"]
        achieved = gop / (med / 1e3)
        rows.append([name, f"{med:.2f}", f"{min(v):.2f}-{max(v):.2f}", f"{fp32_engine / med:.2f}x",
                     f"{eager_ms / med:.2f}x" if eager_ms else "-",
                     f"{achieved:.0f}" + (f" ({100 * achieved / top:.0f} %)" if top else ""),
                     f"{100 * (preds[name] == labels).mean():.1f}",
                     f"{100 * (preds[name] == ref).mean():.1f}",
                     f"{100 * (preds[name] == ref_logits.argmax(1)).mean():.1f}",
                     f"{np.abs(logits[name] - ref_logits).max():.3f}"])
    print_table(["runtime", "median ms", "range", "vs edgeres FP32", "vs eager", "GOP/s (% of peak)", "top-1 %",
                 "agree w/ FP32 %", "agree w/ Q/DQ ref %", "max |dlogit| vs Q/DQ ref"], rows)
    ghz = f"{peak['ghz']:.2f} GHz" if peak.get("ghz") else "clock unknown"
    print(f"\nRoofline: {gop:.2f} GOP per image; nominal peaks for {args.threads} cores of {peak['isa']} at {ghz}: "
          + (f"int8 {peak['int8']:.0f} GOP/s (OpenVINO rows: {peak['openvino_int8']:.0f} under "
             f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', 'unset')}), FP32 {peak['fp32']:.0f} GOP/s"
             if peak["int8"] else "unknown for this ISA"))
    print("Kernels:")
    for name, text in kernels.items():
        print(f"- {name}: {text}")
    ours = "edgeres INT8 engine (OpenVINO)"
    if ours in medians:  # per-round speed-ups: machine noise hits both sides of each ratio alike
        for name, v in medians.items():
            if name != ours and "INT8" in name:
                ratios = np.asarray(v) / np.asarray(medians[ours])
                print(f"{name} / {ours}, per round: median {np.median(ratios):.2f}x, "
                      f"min {ratios.min():.2f}x, max {ratios.max():.2f}x")
    print(f"Q/DQ reference: top-1 {100 * (ref_logits.argmax(1) == labels).mean():.1f} %; load average "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    for r in runners:
        r.deactivate()


if __name__ == "__main__":
    main()
