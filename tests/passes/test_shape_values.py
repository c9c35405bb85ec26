"""The shape-value analysis (passes/shape_values.py): element values, provenance and
readers, checked against ONNX Runtime where it computes numbers; and the node naming
and op registry it relies on."""
from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import pytest
from support import run

from onnxprune.model_io import load_model
from onnxprune.passes.fold_shapes import FoldShapeComputationsPass
from onnxprune.passes.name_nodes import NameNodesPass
from onnxprune.passes.rules import OPS, record
from onnxprune.passes.rules.registry import op
from onnxprune.passes.shape_elements import ConstEntry, ShapeEntry
from onnxprune.passes.shape_values import ShapeValues
from onnxprune.passes.shapes import symbolic_shapes

ARITH = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N,6,4,4] x) => (int64[4] s) {
  sh = Shape(x)
  c = Gather<axis = 0>(sh, one)
  m = Mod(minus7, three)
  f = Mod<fmod = 1>(minus7, three)
  d = Div(minus7, two)
  mx = Max(c, m, f)
  s = Concat<axis = 0>(m, f, d, mx)
}
"""


def _model(text: str, consts: dict) -> onnx.ModelProto:
    proto = onnx.parser.parse_model(text)
    for name, value in consts.items():
        proto.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(value, np.int64), name))
    return proto


def _values(model):
    shapes = symbolic_shapes(model)
    return ShapeValues(lambda v: shapes.get(v.name))


def test_integer_arithmetic_matches_onnx_runtime():
    """Mod follows its fmod attribute, Div truncates toward zero, Max takes three inputs;
    the static channel count (6) is known, the symbolic batch is not read."""
    proto = _model(ARITH, {"one": [1], "minus7": [-7], "three": [3], "two": [2]})
    model = load_model(proto)
    val = _values(model).of_value(model.graph.outputs[0])
    expected = run(proto, {"x": np.zeros((2, 6, 4, 4), np.float32)})["s"]
    assert val.values == expected.tolist() == [2, -1, -3, 6]


def test_shape_entries_and_literals_are_located():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N,6,4,4] x) => (float[N,6,16] y) {
      sh = Shape(x)
      b = Slice(sh, zero, one)
      t = Concat<axis = 0>(b, six, minus1)
      r = Reshape(t, flat)
      y = Reshape(x, r)
    }
    """
    proto = _model(text, {"zero": [0], "one": [1], "six": [6], "minus1": [-1], "flat": [-1]})
    model = load_model(proto)
    reshape = model.graph.outputs[0].producer()
    entries = ShapeValues().entries(reshape, 1)
    assert isinstance(entries[0], ShapeEntry) and entries[0].axis == 0
    assert isinstance(entries[1], ConstEntry) and entries[1].value == 6
    assert isinstance(entries[2], ConstEntry) and entries[2].value == -1


def test_readers_follow_moves_and_stop_at_arithmetic():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N,6,4,4] x) => (float[N,6,4,4] y, int64[1] k) {
      sh = Shape(x)
      c = Gather(sh, one)
      k = Mul(c, two)
      t = Concat<axis = 0>(sh)
      y = Reshape(x, t)
    }
    """
    proto = _model(text, {"one": [1], "two": [2]})
    model = load_model(proto)
    shape_node = next(n for n in model.graph if n.op_type == "Shape")
    found = ShapeValues().unchecked_reads(shape_node)
    # The Reshape target traces every axis back to Shape(x): checked. The Mul is a reader.
    assert found == [(frozenset({1}), f"Mul '{next(n.name for n in model.graph if n.op_type == 'Mul')}'")]


def test_fold_stops_at_symbolic_dims_and_keeps_shape_outputs():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N,6,4,4] x) => (float[N,2,3,4,4] y) {
      sh = Shape(x)
      n = Gather(sh, zero)
      c = Gather(sh, one)
      h = Div(c, two)
      t = Concat<axis = 0>(n, two, h, four, four)
      y = Reshape(x, t)
    }
    """
    proto = _model(text, {"zero": [0], "one": [1], "two": [2], "four": [4]})
    model = load_model(proto)
    FoldShapeComputationsPass(symbolic_shapes(model))(model)
    reshape = model.graph.outputs[0].producer()
    entries = ShapeValues().entries(reshape, 1)
    # The batch stays a runtime read; the channel arithmetic became a literal (3).
    assert isinstance(entries[0], ShapeEntry)
    assert [e.value for e in entries[1:]] == [2, 3, 4, 4]
    assert run(model, {"x": np.ones((2, 6, 4, 4), np.float32)})["y"].shape == (2, 2, 3, 4, 4)


def test_name_nodes_keeps_names_and_fills_the_rest():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1,2] x) => (float[1,2] y) {
      a = Relu(x)
      b = Relu(a)
      y = Relu(b)
    }
    """
    proto = onnx.parser.parse_model(text)
    proto.graph.node[0].name = "Relu_1"  # collides with the second node's default name
    proto.graph.node[1].name = ""
    proto.graph.node[2].name = "Relu_1"  # a duplicate
    model = load_model(proto)
    names = [n.name for n in model.graph]
    assert names[0] == "Relu_1" and len(set(names)) == 3 and all(names)
    before = list(names)
    assert not NameNodesPass()(model).modified  # stable: a second run changes nothing
    assert [n.name for n in model.graph] == before


def test_one_record_per_op():
    conv = record(onnx.helper.make_node("Conv", ["x", "w"], ["y"]))
    assert conv.analyze is not None and conv.cost is not None and conv.weighted
    assert conv.weights(conv).get(1).in_axis == 1
    with pytest.raises(ValueError, match="registered twice"):
        op("Conv")
    assert ("", "Conv") in OPS


def test_tensordot_reads_the_channel_count_through_reduce_prod():
    """tf2onnx writes Dense on a 3-D tensor as a Tensordot whose Reshape target is
    [ReduceProd(free dims), ReduceProd(feature dim)] read from Shape(x) at runtime: the
    product of one element is that element, so the feature axis stays prunable."""
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N,6,5] x) => (float[N,6,4] y) {
      h = MatMul(x, w0)
      s = Shape(h)
      free = Gather(s, free_axes)
      nf = ReduceProd<keepdims = 0>(free)
      feat = Gather(s, feat_axis)
      nc = ReduceProd<keepdims = 0>(feat)
      nf_1 = Unsqueeze(nf, zero)
      nc_1 = Unsqueeze(nc, zero)
      t = Concat<axis = 0>(nf_1, nc_1)
      r = Reshape(h, t)
      m = MatMul(r, w1)
      back = Concat<axis = 0>(free, four)
      y = Reshape(m, back)
    }
    """
    proto = _model(text, {"free_axes": [0, 1], "feat_axis": [2], "zero": [0], "four": [4]})
    rng = np.random.default_rng(0)
    for name, shape in (("w0", (5, 8)), ("w1", (8, 4))):
        proto.graph.initializer.append(onnx.numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name))
    from onnxprune.compiler.pipeline import prune

    result = prune(proto, ratio=0.5)
    assert result.report["groups"]["channels_removed"] == 4 and result.report["verification"]["ok"]
