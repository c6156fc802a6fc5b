"""The OpenVINO INT8 engine's graph forms, side by side in one run on this CPU: the stem's weights on -64..64 read
whole (what edgeres builds now, exact everywhere), and, from the same calibration written with the stem's weights on
-127..127 (the form before): the stem split (what `auto` built where int8 products sum in 16-bit pairs), the stem
whole (not exact there), two float stems (the quantized input run
through an FP32 conv, and the integer-valued form conv(q, w_q) * s * s_w + b), the form before each ReLU was folded
into its Clip at 127 steps, and (timing only, not exact) the form without those caps. For each: top-1 and largest
|logit difference| against the Q/DQ artifact run as written (ONNX Runtime, optimizations off), OpenVINO's kernel for
the stem, interleaved timing rounds with per-round ratios to the split form, and OpenVINO's per-layer counters.

Run:  python benchmarks/openvino_int8_forms.py --model r18/best.safetensors --data digits --size 224
(the recorded runs: docs/benchmarks.md, "Native AVX2")
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import calibration_images_at_size, interleaved, machine_line, model_at_size
from cpu_int8_speed import openvino_kernels


def float_stem(model, integer_valued: bool):
    """The stem conv in float: x -> round(x/s) clipped -> conv; integer_valued: conv(q, wq) * (s*sw) + b."""
    from onnx import helper, numpy_helper

    from edgeres.onnx_model.graph import initializers, producers, topological_sort

    g = model.graph
    inits, made_by = initializers(g), producers(g)
    conv = next(n for n in g.node if n.op_type == "Conv")
    x_dq, w_dq = made_by[conv.input[0]], made_by[conv.input[1]]
    q = made_by[x_dq.input[0]]
    x, s_name = q.input[0], x_dq.input[1]
    clip = made_by.get(x)  # the OpenVINO form quantizes the input as Clip(Round(x / s)) at scale 1: start from x
    if clip is not None and clip.op_type == "Clip" and made_by.get(clip.input[0]) is not None:
        x = made_by[made_by[clip.input[0]].input[0]].input[0]
    s = numpy_helper.to_array(inits[s_name]).astype(np.float32)
    wq = numpy_helper.to_array(inits[w_dq.input[0]]).astype(np.float32)
    sw = numpy_helper.to_array(inits[w_dq.input[1]]).astype(np.float32)

    def const(name, arr):
        g.initializer.append(numpy_helper.from_array(np.asarray(arr, np.float32), name))
        return name

    nodes = [helper.make_node("Div", [x, const("stem_s", s)], ["stem_div"]),
             helper.make_node("Round", ["stem_div"], ["stem_round"]),
             helper.make_node("Clip", ["stem_round", const("stem_lo", -128.0), const("stem_hi", 127.0)],
                              ["stem_q"])]
    if integer_valued:
        bias = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float32) if len(conv.input) > 2 else 0
        out = conv.output[0]
        conv.output[0] = "stem_int_sum"
        nodes += [helper.make_node("Mul", ["stem_int_sum", const("stem_scale", (s * sw).reshape(1, -1, 1, 1))],
                                   ["stem_scaled"]),
                  helper.make_node("Add", ["stem_scaled", const("stem_bias", np.reshape(bias, (1, -1, 1, 1)))],
                                   [out])]
        conv.input[0], conv.input[1] = "stem_q", const("stem_wq", wq)
        del conv.input[2:]
    else:
        nodes.append(helper.make_node("Mul", ["stem_q", "stem_s"], ["stem_fq"]))
        conv.input[0], conv.input[1] = "stem_fq", const("stem_wf", wq * sw.reshape(-1, 1, 1, 1))
    g.node.extend(nodes)
    g.node.remove(x_dq)
    g.node.remove(w_dq)
    if not any(n.input and x_dq.input[0] in n.input for n in g.node):
        g.node.remove(q)
    topological_sort(g)
    return model


def without_caps(model):
    """Timing only (not exact): every float Clip(x, 0, 127 s) before a quantizer taken out."""
    from edgeres.onnx_model.graph import producers

    g = model.graph
    made = producers(g)
    for clip in [n for n in g.node if n.op_type == "Clip" and n.name.endswith("_cap") and made.get(n.input[0])
                 is not None and made[n.input[0]].op_type in ("Relu", "Add", "Conv")]:
        for node in g.node:
            for i, x in enumerate(node.input):
                if x == clip.output[0]:
                    node.input[i] = clip.input[0]
        g.node.remove(clip)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="ImageFolder with train/ (calibration) and val/")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--num-images", type=int, default=256)
    parser.add_argument("--val-images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--per-round", type=int, default=20)
    args = parser.parse_args()

    import onnx
    import onnxruntime as ort
    import openvino as ov

    import edgeres.quant.cpu as cpu
    from edgeres.data.imagefolder import load_eval_split
    from edgeres.quant.qdq import write_qdq
    from edgeres.quant.workflow import CalibConfig, run_calibration
    from edgeres.tasks.classify.data import EvalImages

    work = Path(tempfile.mkdtemp())
    model_file, pre, _ = model_at_size(args.model, args.size, work)
    _, calib_dir = calibration_images_at_size(args.data / "train", args.size, args.num_images, work)
    calib = run_calibration(CalibConfig(model=model_file, data=calib_dir, out=work / "calib", method="entropy",
                                        num_images=args.num_images, progress=False))
    narrow = onnx.load(str(calib.qdq_onnx))  # what edgeres writes: the stem's weights on -64..64
    qdq = write_qdq(onnx.load(str(calib.fp32_onnx)), calib.scales, signed_input_qmax=127)  # the form before
    wide_file = work / "wide.qdq.onnx"
    onnx.save(qdq, str(wide_file))

    fold = cpu._relus_into_caps
    cpu._relus_into_caps = lambda graph: None  # the form before the fold
    before_fold = cpu.rewrite_for_openvino(qdq, True)
    cpu._relus_into_caps = fold
    forms = {
        "stem weights to 64, whole (auto now)": cpu.rewrite_for_openvino(narrow, True),
        "stem split (auto here)": cpu.rewrite_for_openvino(qdq, True),
        "stem whole": cpu.rewrite_for_openvino(qdq, False),
        "float stem": float_stem(cpu.rewrite_for_openvino(qdq, False), False),
        "float stem, integer-valued": float_stem(cpu.rewrite_for_openvino(qdq, False), True),
        "split, ReLU not folded (before)": before_fold,
        "split, no caps (timing only)": without_caps(cpu.rewrite_for_openvino(qdq, True)),
    }
    core = ov.Core()
    cfg = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32",
           "INFERENCE_NUM_THREADS": args.threads, "PERF_COUNT": True}
    compiled = {}
    for i, (name, m) in enumerate(forms.items()):
        path = work / f"form{i}.onnx"
        onnx.save(m, str(path))
        om = core.read_model(str(path))
        om.reshape([1, 3, args.size, args.size])
        compiled[name] = core.compile_model(om, "CPU", cfg)

    val = EvalImages(load_eval_split(args.data), pre)
    step = max(1, len(val.images.paths) // args.val_images)
    val = EvalImages(replace(val.images, paths=val.images.paths[::step], labels=val.images.labels[::step]), pre)
    ref_so = ort.SessionOptions()
    ref_so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    xs = [x[i:i + 1] for x in val.batches(32) for i in range(len(x))]
    references = {}
    for tag, path in (("narrow", calib.qdq_onnx), ("wide", wide_file)):
        ref = ort.InferenceSession(str(path), ref_so, providers=["CPUExecutionProvider"])
        references[tag] = np.concatenate([ref.run(None, {"input": x})[0] for x in xs])
    requests = {k: c.create_infer_request() for k, c in compiled.items()}
    print(machine_line())
    print("every form but the first reads the artifact with the stem's weights on -127..127, and is compared with it")
    for name, r in requests.items():
        ref_logits = references["narrow" if name.startswith("stem weights to 64") else "wide"]
        out = np.concatenate([r.infer({0: x})[0].copy() for x in xs])
        print(f"{name}: top-1 differs from the Q/DQ reference on {(out.argmax(1) != ref_logits.argmax(1)).sum()} of "
              f"{len(xs)}, max |dlogit| / spread {np.abs(out - ref_logits).max() / ref_logits.std():.4f}; "
              f"{openvino_kernels(compiled[name])}")
    med = interleaved({k: (lambda r=r: r.infer({0: xs[0]})) for k, r in requests.items()}, rounds=args.rounds,
                      per_round=args.per_round)
    base = np.asarray(med["stem split (auto here)"])
    for k, v in med.items():
        ratio = np.asarray(v) / base
        print(f"{k:34s} median {np.median(v):6.2f} ms; per round vs split {np.median(ratio):.3f}x "
              f"({ratio.min():.3f}-{ratio.max():.3f})")
    for k, r in requests.items():
        by = collections.Counter()
        for p in r.profiling_info:
            by[f"{p.node_type}:{p.exec_type}"] += p.real_time.total_seconds() * 1e3
        stem = next((p for p in r.profiling_info if p.node_type == "Convolution"), None)
        print(f"{k}: first conv {stem.real_time.total_seconds() * 1e3:.2f} ms [{stem.exec_type}]; "
              + ", ".join(f"{a} {b:.2f}" for a, b in by.most_common(4)))


if __name__ == "__main__":
    main()
