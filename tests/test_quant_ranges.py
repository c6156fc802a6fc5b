"""Range selection (edgeres.quant.ranges) on hand-made histograms and weights with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from edgeres.errors import EdgeresError
from edgeres.quant.ranges import BINS, METHODS, amax_from_histogram, weight_amax


def histogram(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """|values| in BINS equal bins over [0, max], as calibration collects them."""
    a = np.abs(values)
    return np.histogram(a, bins=BINS, range=(0.0, float(a.max())))


@pytest.fixture(scope="module")
def long_tail() -> tuple[np.ndarray, np.ndarray]:
    """Two million N(0, 1) values plus two rare outliers (one in a million, like a hot pixel) at 30-40 sigma.

    Rare matters for MSE: it weighs an outlier by its squared clipping error, so at 1e-5 outliers at 35 sigma,
    keeping them costs less than clipping them and MSE rightly keeps the whole range.
    """
    rng = np.random.default_rng(0)
    return histogram(np.concatenate([rng.standard_normal(2_000_000), rng.uniform(30.0, 40.0, 2)]))


def test_minmax_is_the_top_edge_of_the_last_non_empty_bin():
    edges = np.linspace(0.0, 10.0, BINS + 1)
    hist = np.zeros(BINS, dtype=np.int64)
    hist[:300] = 7
    hist[1234] = 1
    assert amax_from_histogram(hist, edges, "minmax") == edges[1235]
    hist[1234] = 0
    assert amax_from_histogram(hist, edges, "minmax") == edges[300]


@pytest.mark.parametrize("percentile", [50.0, 90.0, 99.0, 99.9])
def test_percentile_of_a_uniform_distribution_is_the_matching_edge(percentile):
    # 1,000 equally full bins: p% of the mass lies below edges[10 * p].
    edges = np.linspace(0.0, 8.0, BINS + 1)
    hist = np.zeros(BINS, dtype=np.int64)
    hist[:1000] = 100
    expected = edges[round(10 * percentile)]
    # p / 100 is not exact in binary (99.9 / 100 > 0.999), so the edge may be the next one up; never further.
    assert expected <= amax_from_histogram(hist, edges, "percentile", percentile) <= expected + edges[1] + 1e-12


def test_percentile_of_a_gaussian_is_the_right_edge_of_the_quantile_bin():
    rng = np.random.default_rng(1)
    x = np.abs(rng.standard_normal(1_000_000))
    hist, edges = histogram(x)
    width = edges[1] - edges[0]
    for p, normal_quantile in ((99.0, 2.5758), (99.9, 3.2905)):  # P(|x| < q) = p for a standard normal
        amax = amax_from_histogram(hist, edges, "percentile", p)
        empirical = np.quantile(x, p / 100)
        assert empirical <= amax <= empirical + width + 1e-9
        assert amax == pytest.approx(normal_quantile, abs=0.03)
    assert amax_from_histogram(hist, edges, "percentile", 100.0) == pytest.approx(edges[-1])


@pytest.mark.parametrize("bad", [0.0, -1.0, 100.5])
def test_percentile_outside_0_100_is_refused(bad):
    edges = np.linspace(0.0, 1.0, BINS + 1)
    with pytest.raises(EdgeresError, match="percentile"):
        amax_from_histogram(np.ones(BINS), edges, "percentile", bad)


@pytest.mark.parametrize("method", ["entropy", "mse"])
def test_entropy_and_mse_clip_rare_outliers_but_keep_the_bulk(long_tail, method):
    hist, edges = long_tail
    amax = amax_from_histogram(hist, edges, method)
    assert edges[-1] > 30.0  # the outliers set the histogram's range...
    assert 2.0 < amax < 6.0, f"{method} chose {amax:.3f} (sigma = 1, max = {edges[-1]:.1f})"  # ...but not the clip
    assert amax_from_histogram(hist, edges, "minmax") == pytest.approx(edges[-1])


def test_entropy_is_not_fooled_by_the_zero_spike_of_a_relu_output():
    # Half the values of a ReLU output are exactly 0: exact in int8 at any scale. Letting that spike drive the
    # KL search clipped real ReLU outputs to about 2 sigma here, and to 1/16 of their range in a trained ResNet.
    rng = np.random.default_rng(2)
    x = np.maximum(np.concatenate([rng.standard_normal(1_000_000), rng.uniform(8.0, 10.0, 20)]), 0.0)
    hist, edges = histogram(x)
    assert hist[0] > 0.45 * hist.sum()
    amax = amax_from_histogram(hist, edges, "entropy")
    assert 3.0 < amax < 6.0, f"entropy chose {amax:.3f} for ReLU(N(0, 1)) with max {edges[-1]:.2f}"


def test_every_method_on_an_empty_histogram_gives_a_positive_range():
    edges = np.linspace(0.0, 1.0, BINS + 1)
    for method in METHODS:
        assert amax_from_histogram(np.zeros(BINS), edges, method) > 0


def test_unknown_method_is_refused_with_the_accepted_ones():
    edges = np.linspace(0.0, 1.0, BINS + 1)
    with pytest.raises(EdgeresError, match="entropy, minmax, percentile, mse"):
        amax_from_histogram(np.ones(BINS), edges, "kl")


def _weight_with_channel_maxima(shape: tuple[int, ...], axis: int, maxima: list[float], seed: int) -> np.ndarray:
    """Small random values, then one entry of +-maxima[c] in channel c along ``axis``."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(-0.25, 0.25, size=shape).astype(np.float32)
    view = np.moveaxis(w, axis, 0)  # a view: writes land in w
    for c, m in enumerate(maxima):
        flat = view[c].reshape(-1)
        flat[(7 * c) % flat.size] = m if c % 2 else -m
        view[c] = flat.reshape(view[c].shape)
    return w


def test_weight_amax_of_a_conv_weight_is_per_output_channel_on_axis_0():
    maxima = [1.0, 2.5, 0.75, 4.0]
    w = _weight_with_channel_maxima((4, 3, 3, 3), 0, maxima, seed=0)  # Conv: (out, in, kh, kw)
    np.testing.assert_array_equal(weight_amax(w, 0, "minmax"), np.float32(maxima))
    np.testing.assert_array_equal(weight_amax(w, 0, "entropy"), np.float32(maxima))  # weights: absmax for all but mse


def test_weight_amax_of_a_conv_transpose_weight_is_per_output_channel_on_axis_1():
    maxima = [0.5, 1.5, 3.0, 2.0, 1.25]
    w = _weight_with_channel_maxima((3, 5, 2, 2), 1, maxima, seed=1)  # ConvTranspose: (in, out, kh, kw)
    amax = weight_amax(w, 1, "minmax")
    assert amax.shape == (5,)
    np.testing.assert_array_equal(amax, np.float32(maxima))
    assert weight_amax(w, 0, "minmax").shape == (3,)  # the input-channel axis gives other numbers


def test_weight_amax_mse_clips_an_outlier_weight_but_not_a_regular_channel():
    rng = np.random.default_rng(3)
    w = rng.uniform(-1.0, 1.0, size=(2, 64, 3, 3)).astype(np.float32)
    w[0, 0, 0, 0] = 8.0  # channel 0: one outlier far above the others
    w[1, 0, 0, 0] = 1.0  # channel 1: uniform up to 1
    amax = weight_amax(w, 0, "mse")
    assert 4.0 <= amax[0] < 8.0  # the search spans [absmax / 2, absmax]: clipped, but no lower than half
    assert amax[1] > 0.85


def test_weight_axis_of_each_weighted_op():
    from onnx import helper

    from edgeres.onnx_model.graph import weight_axis

    assert weight_axis(helper.make_node("Conv", ["x", "w"], ["y"])) == 0
    assert weight_axis(helper.make_node("ConvTranspose", ["x", "w"], ["y"])) == 1
    assert weight_axis(helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)) == 0
    assert weight_axis(helper.make_node("Gemm", ["x", "w", "b"], ["y"])) == 1


def _conv_then_conv_transpose_model():
    """input (1x3x8x8) -> Conv (4 out) -> Relu -> ConvTranspose (5 out): an FP32 ONNX model with known weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    conv_w = _weight_with_channel_maxima((4, 3, 3, 3), 0, [0.5, 1.0, 1.5, 2.0], seed=4)
    convt_w = _weight_with_channel_maxima((4, 5, 2, 2), 1, [0.25, 0.5, 0.75, 1.0, 1.25], seed=5)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "conv.weight"], ["c"], name="/conv/Conv", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"], name="/relu/Relu"),
         helper.make_node("ConvTranspose", ["r", "up.weight"], ["output"], name="/up/ConvTranspose", strides=[2, 2])],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, 5, 16, 16])],
        [numpy_helper.from_array(conv_w, "conv.weight"), numpy_helper.from_array(convt_w, "up.weight")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model, conv_w, convt_w


def test_calibration_quantizes_conv_weights_on_axis_0_and_conv_transpose_weights_on_axis_1(tmp_path):
    import onnx
    from onnx import numpy_helper

    from edgeres.onnx_model.graph import producers
    from edgeres.quant.calibrate import calibrate_onnx
    from edgeres.quant.checker import check_qdq_model
    from edgeres.quant.points import find_points
    from edgeres.quant.qdq import write_qdq

    model, _, _ = _conv_then_conv_transpose_model()
    assert find_points(model).weights == {"conv.weight": 0, "up.weight": 1}
    path = tmp_path / "tiny.onnx"
    onnx.save(model, str(path))
    rng = np.random.default_rng(6)
    data = [rng.standard_normal((4, 3, 8, 8)).astype(np.float32) for _ in range(3)]
    scales = calibrate_onnx(path, lambda: iter(data), method="minmax", progress=False)

    assert scales.weights["conv.weight"]["axis"] == 0
    np.testing.assert_allclose(scales.weights["conv.weight"]["amax"], [0.5, 1.0, 1.5, 2.0])
    assert scales.weights["up.weight"]["axis"] == 1
    np.testing.assert_allclose(scales.weights["up.weight"]["amax"], [0.25, 0.5, 0.75, 1.0, 1.25])
    # minmax activation range: the largest |x| seen
    assert scales.activations["input"]["amax"] == pytest.approx(max(float(np.abs(d).max()) for d in data), rel=1e-6)

    qdq = write_qdq(model, scales)
    onnx.checker.check_model(qdq)
    assert check_qdq_model(qdq) == []
    made_by = producers(qdq.graph)
    inits = {i.name: numpy_helper.to_array(i) for i in qdq.graph.initializer}
    for op, channels, axis in (("Conv", 4, 0), ("ConvTranspose", 5, 1)):
        node = next(n for n in qdq.graph.node if n.op_type == op)
        dq = made_by[node.input[1]]
        assert dq.op_type == "DequantizeLinear"
        assert next(a.i for a in dq.attribute if a.name == "axis") == axis
        assert inits[dq.input[1]].shape == (channels,)
