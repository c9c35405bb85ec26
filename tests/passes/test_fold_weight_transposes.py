"""FoldWeightTransposesPass: MatMul(x, Transpose(W)) (exports without constant folding)
becomes MatMul(x, Wᵀ) with the same numbers, and only where the Transpose feeds weights."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper

from onnxprune.compiler.pipeline import inspect, prune
from onnxprune.passes.fold_weight_transposes import FoldWeightTransposesPass
from onnxprune.runtime.session import ort_session, run_session

UNFOLDED = os.path.join(os.path.dirname(__file__), "..", "..", "models", "state_dict", "mlp.unfolded.onnx")


def _model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "fc1.weight")  # [out, in]
    w2 = numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "fc2.weight")
    bias = numpy_helper.from_array(rng.standard_normal((8, 1)).astype(np.float32), "offset")
    nodes = [
        helper.make_node("Transpose", ["fc1.weight"], ["w1t"], name="t1"),
        helper.make_node("MatMul", ["x", "w1t"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Transpose", ["fc2.weight"], ["w2t"], name="t2", perm=[1, 0]),
        helper.make_node("MatMul", ["r", "w2t"], ["y0"], name="fc2"),
        # A Transpose of a constant that is not a weight (added to data) stays.
        helper.make_node("Transpose", ["offset"], ["offset_t"], name="t3"),
        helper.make_node("Add", ["y0", "offset_t"], ["y"], name="add"),
        # A Transpose of a graph input is data, never folded.
        helper.make_node("Transpose", ["x"], ["xt"], name="t4"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8]),
         helper.make_tensor_value_info("xt", TensorProto.FLOAT, [8, 2])],
        [w1, w2, bias],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_folds_only_transposes_of_constants_into_weights():
    proto = _model()
    model = ir.serde.deserialize_model(proto)
    x = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
    before = run_session(ort_session(model), {"x": x})
    assert FoldWeightTransposesPass()(model).modified
    ops = {n.name: n.op_type for n in model.graph}
    assert "t1" not in ops and "t2" not in ops and ops["t3"] == "Transpose" and ops["t4"] == "Transpose"
    fc1 = next(n for n in model.graph if n.name == "fc1")
    assert fc1.inputs[1].const_value is not None and fc1.inputs[1].name == "w1t"
    np.testing.assert_array_equal(fc1.inputs[1].const_value.numpy(), numpy_helper.to_array(proto.graph.initializer[0]).T)
    after = run_session(ort_session(model), {"x": x})
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])  # a permutation: bit-identical
    assert not FoldWeightTransposesPass()(model).modified  # nothing left to fold


def test_unfolded_export_prunes_and_verifies():
    """Before the pass, the TorchScript export without constant folding had no prunable
    group at all; now its MLP widths prune, with the values checked exactly."""
    shapes = {"input": (2, 4, 12)}
    groups = inspect(UNFOLDED, input_shapes=shapes)["groups"]
    assert [g["size"] for g in groups if g["prunable"] and g["kind"] == "channels"] == [48, 48]
    result = prune(UNFOLDED, ratio=0.5, input_shapes=shapes, recover="none")
    report = result.report
    assert report["verification"]["ok"] and any(c.startswith("values") for c in report["verification"]["checks"])
    assert report["cost"]["macs_reduction"] > 0.3
    assert not any(n.op_type == "Transpose" and n.inputs[0].const_value is not None for n in result.model.graph)
