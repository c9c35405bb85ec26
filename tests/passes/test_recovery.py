"""Recovery without training (passes/recovery.py, runtime/statistics.py): the unfolded
input a layer multiplies equals what ONNX Runtime's Conv computes, least squares finds
a removed channel that the kept ones explain, bias compensation moves a constant
channel into the bias, and the refit model keeps its interface."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from test_rules_common import analysis, build, classes_of, only, run

from onnxprune.compiler.pipeline import prune
from onnxprune.compiler.plan import PruningPlan
from onnxprune.model_io import load_model
from onnxprune.passes.recovery import Consumer, Moments, as_matrix, from_matrix, refit
from onnxprune.runtime.calibration import CalibrationData
from onnxprune.runtime.statistics import unfold


@pytest.mark.parametrize(
    "attrs,size",
    [
        ("pads = [1, 1, 1, 1]", (7, 9)),
        ("strides = [2, 2], pads = [0, 1, 1, 0]", (8, 7)),
        ("dilations = [2, 1], pads = [2, 1, 2, 1]", (9, 8)),
        ('auto_pad = "SAME_UPPER", strides = [2, 2]', (7, 8)),
        ('auto_pad = "SAME_LOWER", strides = [2, 1]', (8, 7)),
    ],
)
def test_unfolded_input_times_the_weight_is_the_conv(attrs, size):
    h, w = size
    proto = build(
        f"g (float[2,3,{h},{w}] x) => (float[2,5,?,?] y) {{ y = Conv<{attrs}>(x, w1, b1) }}",
        {"w1": (5, 3, 3, 3), "b1": (5,)},
    )
    model = load_model(proto)
    node = only(model, "Conv")
    x = np.random.default_rng(0).standard_normal((2, 3, h, w)).astype(np.float32)
    y = run(proto, {"x": x})["y"]
    consumer = Consumer(node.name, "Conv", "x", 1, 0, 1, np.ones(3, bool), 9)
    rows = unfold(node, x, consumer)
    weight = as_matrix(onnx.numpy_helper.to_array(proto.graph.initializer[0]), 0, 1)
    bias = onnx.numpy_helper.to_array(proto.graph.initializer[1])
    expected = np.transpose(y, (0, 2, 3, 1)).reshape(-1, 5)
    np.testing.assert_allclose(rows @ weight.T + bias, expected, rtol=1e-4, atol=1e-4)


def test_matrix_round_trip_keeps_the_layout():
    w = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    for out_axis, in_axis in ((0, 1), (1, 0)):
        m = as_matrix(w, out_axis, in_axis)
        np.testing.assert_array_equal(from_matrix(m, w.shape, out_axis, in_axis), w)


def _moments(x: np.ndarray) -> Moments:
    x = x.astype(np.float64)
    return Moments(len(x), x.sum(axis=0), x.T @ x)


def test_least_squares_finds_a_channel_the_others_explain():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 5))
    x = np.concatenate([x, x[:, :2] @ [[0.7], [-1.2]] + 0.5], axis=1)  # channel 5 = 0.7 x0 - 1.2 x1 + 0.5
    w, b = rng.standard_normal((4, 6)), rng.standard_normal(4)
    keep = np.array([True] * 5 + [False])
    new_w, new_b, info = refit(w, b, keep, _moments(x))
    np.testing.assert_allclose(x[:, keep] @ new_w.T + new_b, x @ w.T + b, atol=1e-2)
    assert info["error_before"] > 0.01 and info["error_after"] < 1e-4


def test_bias_compensation_moves_a_constant_channel_into_the_bias():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.standard_normal((200, 3)), np.full((200, 1), 3.0)], axis=1)
    w, b = rng.standard_normal((2, 4)), rng.standard_normal(2)
    keep = np.array([True, True, True, False])
    new_w, new_b, info = refit(w, b, keep, Moments(200, x.sum(axis=0), None))
    assert info["refit"] == "bias"
    np.testing.assert_allclose(x[:, keep] @ new_w.T + new_b, x @ w.T + b, atol=1e-9)


# x -> MatMul(w1) -> h (6 features; the 6th is a combination of the first two plus a
# constant, as correlated channels of a trained network are) -> MatMul(w2) -> y.
DENSE = """
g (float[N,5] x) => (float[N,3] y) {
  h = MatMul(x, w1)
  c = Add(h, b1)
  y = MatMul(c, w2)
}
"""


def _dense():
    rng = np.random.default_rng(2)
    w1 = rng.standard_normal((5, 6)).astype(np.float32)
    w1[:, 5] = 0.7 * w1[:, 0] - 1.2 * w1[:, 1]
    b1 = rng.standard_normal(6).astype(np.float32)
    b1[5] = 0.7 * b1[0] - 1.2 * b1[1] + 0.5
    return build(DENSE, {"w1": w1, "b1": b1, "w2": rng.standard_normal((6, 3)).astype(np.float32)})


def _calibration(n: int = 256, seed: int = 3) -> CalibrationData:
    return CalibrationData({"x": np.random.default_rng(seed).standard_normal((n, 5)).astype(np.float32)})


def test_prune_with_calibration_refits_the_consumer_and_keeps_the_interface():
    proto = _dense()
    plan = PruningPlan.from_removed(analysis(proto), classes_of(analysis(proto), {"w1": [5]}))
    x = np.random.default_rng(9).standard_normal((64, 5)).astype(np.float32)
    want = run(proto, {"x": x})["y"]
    plain = prune(proto, plan=plan)
    fitted = prune(proto, plan=plan, calibration=_calibration())
    assert plain.report["recovery"]["ran"] is None and "calibration" in plain.report["recovery"]["why_not"]
    rec = fitted.report["recovery"]
    assert rec["ran"] == "least squares" and [r["op"] for r in rec["layers"]] == ["MatMul"]
    assert rec["layers"][0]["error_after"] < 1e-4 < rec["layers"][0]["error_before"]
    out = ir_output_names(fitted.model)
    assert out == ["y"]  # the MatMul's new bias Add took the graph output's name
    got_plain = run(plain.model, {"x": x})["y"]
    got = run(fitted.model, {"x": x})["y"]
    assert np.abs(got_plain - want).max() > 0.1
    np.testing.assert_allclose(got, want, atol=2e-3)
    assert fitted.report["verification"]["ok"]
    cost = fitted.report["cost"]  # the new bias (3 values) is in the prediction
    assert cost["predicted"] == cost["after"] and rec["layers"][0]["params_added"] == 3


def test_recover_none_and_bias_do_what_they_say():
    proto = _dense()
    plan = PruningPlan.from_removed(analysis(proto), classes_of(analysis(proto), {"w1": [5]}))
    off = prune(proto, plan=plan, calibration=_calibration(), recover="none")
    assert off.report["recovery"]["ran"] is None and "off" in off.report["recovery"]["why_not"]
    bias = prune(proto, plan=plan, calibration=_calibration(), recover="bias")
    assert bias.report["recovery"]["ran"] == "bias"
    x = _calibration(64, seed=5).arrays["x"]
    want = run(proto, {"x": x})["y"]
    mean_error = {name: np.abs(run(r.model, {"x": x})["y"] - want).mean() for name, r in (("off", off), ("bias", bias))}
    assert mean_error["bias"] < mean_error["off"]
    with pytest.raises(ValueError, match="recover must be"):
        prune(proto, plan=plan, recover="yes")


def ir_output_names(model) -> list[str]:
    return [v.name for v in model.graph.outputs]


def test_overflowing_calibration_leaves_the_plain_cut():
    """Activations that overflow float32 (inf) give no refit: the layer keeps the plain
    cut and the report says why, instead of writing NaN weights."""
    proto = _dense()
    plan = PruningPlan.from_removed(analysis(proto), classes_of(analysis(proto), {"w1": [5]}))
    calib = CalibrationData({"x": np.full((8, 5), 3e38, np.float32)})
    result = prune(proto, plan=plan, calibration=calib)
    (record,) = result.report["recovery"]["layers"]
    assert record["refit"] is None and "not finite" in record["why"]
    assert result.report["recovery"]["ran"] is None and "not finite" in result.report["recovery"]["why_not"]
    plain = prune(proto, plan=plan)
    x = _calibration(16, seed=4).arrays["x"]
    np.testing.assert_array_equal(run(result.model, {"x": x})["y"], run(plain.model, {"x": x})["y"])
