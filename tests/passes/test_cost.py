import contextlib
import io
import math
from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper
import onnx.parser
import onnx_ir as ir
import pytest
from support import conv_relu_conv

from onnxprune.model_io import load_model, resolve_input_shapes
from onnxprune.passes import cost
from onnxprune.passes import shapes as shapes_module
from onnxprune.passes.cost import model_cost, node_cost
from onnxprune.passes.shapes import static_shapes

ZOO = Path(__file__).resolve().parents[2] / "models" / "zoo"


def _model(graph_text: str, **weights) -> ir.Model:
    proto = onnx.parser.parse_model('<ir_version: 8, opset_import: ["" : 17]>\n' + graph_text)
    for name, shape in weights.items():
        array = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        proto.graph.initializer.append(onnx.numpy_helper.from_array(array, name))
    return load_model(proto)


def _only(model: ir.Model, op_type: str) -> ir.Node:
    (node,) = [n for n in model.graph if n.op_type == op_type]
    return node


def _shape_of(shapes):
    return lambda v: shapes.get(v.name)


# --------------------------------------------------------------------------- MAC rules

# (graph, weights, op, expected MACs computed by hand from the formula in the docstring)
CASES = {
    "conv": (
        "g (float[2,8,16,16] x) => (y) { y = Conv<pads = [1,1,1,1], strides = [2,2]>(x, w) }",
        {"w": (16, 8, 3, 3)}, "Conv", 2 * 8 * 8 * 8 * 16 * 9,  # N·H·W·C_in·C_out·k², out 8x8
    ),
    "conv-grouped": (
        "g (float[2,8,16,16] x) => (y) { y = Conv<pads = [1,1,1,1], strides = [2,2], group = 4>(x, w) }",
        {"w": (16, 2, 3, 3)}, "Conv", 2 * 8 * 8 * (8 // 4) * 16 * 9,
    ),
    "conv-depthwise": (
        "g (float[2,8,16,16] x) => (y) { y = Conv<pads = [1,1,1,1], group = 8>(x, w, b) }",
        {"w": (8, 1, 3, 3), "b": (8,)}, "Conv", 2 * 16 * 16 * 1 * 8 * 9,  # bias not counted
    ),
    "conv1d": (
        "g (float[1,4,10] x) => (y) { y = Conv(x, w) }",
        {"w": (6, 4, 3)}, "Conv", 1 * 8 * 4 * 6 * 3,
    ),
    "conv3d": (
        "g (float[1,2,5,6,7] x) => (y) { y = Conv(x, w) }",
        {"w": (3, 2, 2, 2, 2)}, "Conv", 1 * (4 * 5 * 6) * 2 * 3 * 8,
    ),
    "conv-transpose": (
        "g (float[1,8,4,4] x) => (y) { y = ConvTranspose<strides = [2,2]>(x, w) }",
        {"w": (8, 4, 3, 3)}, "ConvTranspose", 1 * 4 * 4 * 8 * 4 * 9,  # N·H_in·W_in·C_in·C_out·k²
    ),
    "conv-transpose-grouped": (
        "g (float[1,8,4,4] x) => (y) { y = ConvTranspose<strides = [2,2], group = 2>(x, w) }",
        {"w": (8, 2, 3, 3)}, "ConvTranspose", 1 * 4 * 4 * 8 * (4 // 2) * 9,
    ),
    "gemm-transB": (
        "g (float[3,5] a) => (y) { y = Gemm<transB = 1>(a, w, c) }",
        {"w": (7, 5), "c": (7,)}, "Gemm", 3 * 7 * 5,
    ),
    "gemm-transA": (
        "g (float[5,3] a) => (y) { y = Gemm<transA = 1>(a, w) }",
        {"w": (5, 7)}, "Gemm", 3 * 7 * 5,
    ),
    "matmul-batched-broadcast": (
        "g (float[2,1,4,5] a, float[3,5,6] b) => (y) { y = MatMul(a, b) }",
        {}, "MatMul", (2 * 3) * 4 * 6 * 5,
    ),
    "matmul-1d-left": (
        "g (float[5] a) => (y) { y = MatMul(a, w) }",
        {"w": (5, 6)}, "MatMul", 1 * 6 * 5,
    ),
    "matmul-1d-right": (
        "g (float[2,4,5] a) => (y) { y = MatMul(a, w) }",
        {"w": (5,)}, "MatMul", 2 * 4 * 1 * 5,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_hand_computed_macs(case):
    text, weights, op, expected = CASES[case]
    model = _model(text, **weights)
    node_shapes = static_shapes(model)
    result = node_cost(_only(model, op), _shape_of(node_shapes))
    assert result.macs == expected
    assert result.params == sum(math.prod(s) for s in weights.values())
    assert result.other_ops == 0 and result.note == ""


def test_predicted_shapes_drive_the_count():
    model = _model(CASES["conv"][0], w=(16, 8, 3, 3))
    shapes = static_shapes(model)
    # As if half the output channels were pruned: the callback, not the model, decides.
    predicted = {**shapes, "w": (8, 8, 3, 3), "y": (2, 8, 8, 8)}
    result = node_cost(_only(model, "Conv"), _shape_of(predicted))
    assert result.macs == CASES["conv"][3] // 2
    assert result.params == 8 * 8 * 9


OTHER_OPS = """
g (float[1,4,8,8] x) => (y) {
  b = BatchNormalization(x, s, bias, mean, var)
  r = Relu(b)
  p = MaxPool<kernel_shape = [2,2], strides = [2,2]>(r)
  a = Add(p, p)
  g = GlobalAveragePool(a)
  y = Flatten(g)
}
"""


def test_other_ops_and_zero_cost_ops():
    model = _model(OTHER_OPS, s=(4,), bias=(4,), mean=(4,), var=(4,))
    rows = {row.op_type: row for row in model_cost(model, {"x": (1, 4, 8, 8)}).rows}
    assert rows["BatchNormalization"].other_ops == 2 * 4 * 8 * 8
    assert rows["BatchNormalization"].params == 16
    assert rows["Relu"].other_ops == 4 * 8 * 8
    assert rows["MaxPool"].other_ops == 4 * 4 * 4 * (2 * 2)
    assert rows["Add"].other_ops == 4 * 4 * 4
    assert rows["GlobalAveragePool"].other_ops == 4 * 4 * 4  # input elements
    assert rows["Flatten"].other_ops == 0
    assert all(row.macs == 0 for row in rows.values())


def test_missing_shape_and_unknown_op_are_noted_not_fatal():
    model = _model("g (float[1,4] x) => (y) { h = Relu(x)\n y = Einsum<equation = \"ij->ji\">(h) }")
    relu, einsum = list(model.graph)
    assert node_cost(relu, lambda v: None) == cost.NodeCost(note="shape of 'h' unknown")
    assert node_cost(einsum, lambda v: (1, 4)).note == "no cost rule for Einsum"


PARAMS = """
g (float[1,4] x) => (y) {
  shape = Constant<value = int64[2] {1, 4}>()
  k = Constant<value = float[4] {1, 2, 3, 4}>()
  a = Mul(x, k)
  b = Gemm<transB = 1>(a, w, c)
  d = Gemm<transB = 1>(b, w)
  y = Reshape(d, shape)
}
"""


def test_params_count_float_constants_once():
    model = _model(PARAMS, w=(4, 4), c=(4,), unused=(3, 3))
    report = model_cost(model)
    params = [(row.op_type, row.params) for row in report.rows]
    # Per node: what it consumes; the int64 shape is not a parameter.
    assert params == [("Constant", 0), ("Constant", 0), ("Mul", 4), ("Gemm", 20), ("Gemm", 16), ("Reshape", 0)]
    # Total: w once (shared), c, Constant k, and the unused initializer.
    assert report.total_params == 16 + 4 + 4 + 9
    assert report.to_dict()["total"] == {
        "macs": report.total_macs, "params": 33, "other_ops": report.total_other_ops,
    }


# --------------------------------------------------------------------------- shapes


def test_static_shapes_leaves_model_untouched_and_skips_big_weights(monkeypatch):
    model = load_model(conv_relu_conv(width=64))
    before = ir.serde.serialize_model(model).SerializeToString()
    seen = []
    real = onnx.shape_inference.infer_shapes
    monkeypatch.setattr(
        onnx.shape_inference, "infer_shapes", lambda proto, **kw: seen.append(proto) or real(proto, **kw)
    )
    shapes = static_shapes(model, {"x": (2, 3, 8, 8)})
    assert ir.serde.serialize_model(model).SerializeToString() == before
    (proto,) = seen
    assert {t.name for t in proto.graph.initializer} == {"b1", "b2"}  # 256 and 16 bytes
    assert {i.name for i in proto.graph.input} == {"x", "w1", "w2"}
    assert shapes["h"] == (2, 64, 8, 8) and shapes["y"] == (2, 4, 8, 8)
    assert shapes["w2"] == (4, 64, 3, 3)


def test_static_shapes_does_not_read_external_data(tmp_path):
    proto = conv_relu_conv(width=64)
    path = tmp_path / "m.onnx"
    onnx.save(proto, path, save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    model = load_model(path)
    assert static_shapes(model)["y"] == (1, 4, 8, 8)
    assert all(v.const_value.raw is None for v in model.graph.initializers.values())


COMPUTED_RESHAPE = """
g (float[N,3,4,4] x) => (float[N,48] y) {
  s = Shape(x)
  f = Cast<to = 1>(s)
  one = Constant<value = float[4] {1, 1, 1, 1}>()
  h = Mul(f, one)
  i = Cast<to = 7>(h)
  z = Reshape(x, i)
  k = Constant<value = int64[2] {0, -1}>()
  y = Reshape(z, k)
}
"""


def test_static_shapes_falls_back_to_onnxruntime(monkeypatch):
    # ONNX data propagation stops at the float Mul, so z's shape is unknown to inference.
    model = _model(COMPUTED_RESHAPE)
    asked = []
    real = shapes_module._measured_shapes
    monkeypatch.setattr(shapes_module, "_measured_shapes", lambda m, c, names, feeds=None: asked.append(names) or real(m, c, names, feeds))
    shapes = static_shapes(model, {"x": (2, 3, 4, 4)})
    assert asked == [["z", "y"]]
    assert shapes["z"] == (2, 3, 4, 4) and shapes["y"] == (2, 48)


def test_no_fallback_when_inference_suffices(monkeypatch):
    monkeypatch.setattr(shapes_module, "_measured_shapes", lambda *a: pytest.fail("ran ONNX Runtime"))
    static_shapes(load_model(conv_relu_conv()))


# --------------------------------------------------------------------------- ResNet-56


def cifar_resnet(blocks_per_stage: int = 9) -> onnx.ModelProto:
    """CIFAR ResNet-(6n+2) with 1x1-conv + BN projection shortcuts (the 125.75 M variant)."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    counter = iter(range(10_000))

    def weight(shape):
        name = f"p{next(counter)}"
        inits.append(onnx.numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.1, name))
        return name

    def conv_bn(x, c_in, c_out, k, stride, relu):
        tag = next(counter)
        nodes.append(oh.make_node("Conv", [x, weight((c_out, c_in, k, k))], [f"c{tag}"], name=f"conv{tag}",
                                  kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4))
        bn = [weight((c_out,)) for _ in range(4)]
        nodes.append(oh.make_node("BatchNormalization", [f"c{tag}", *bn], [f"bn{tag}"]))
        if not relu:
            return f"bn{tag}"
        nodes.append(oh.make_node("Relu", [f"bn{tag}"], [f"r{tag}"]))
        return f"r{tag}"

    x = conv_bn("input", 3, 16, 3, 1, relu=True)
    c_in = 16
    for stage, width in enumerate((16, 32, 64)):
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            h = conv_bn(x, c_in, width, 3, stride, relu=True)
            h = conv_bn(h, width, width, 3, 1, relu=False)
            shortcut = x if stride == 1 and c_in == width else conv_bn(x, c_in, width, 1, stride, relu=False)
            tag = next(counter)
            nodes.append(oh.make_node("Add", [h, shortcut], [f"a{tag}"]))
            nodes.append(oh.make_node("Relu", [f"a{tag}"], [f"o{tag}"]))
            x, c_in = f"o{tag}", width
    nodes.append(oh.make_node("GlobalAveragePool", [x], ["pool"]))
    nodes.append(oh.make_node("Flatten", ["pool"], ["features"]))
    nodes.append(oh.make_node("Gemm", ["features", weight((10, 64)), weight((10,))], ["logits"], transB=1, name="fc"))
    graph = oh.make_graph(
        nodes, "cifar_resnet",
        [oh.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [oh.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)], ir_version=8)


@pytest.fixture(scope="module")
def resnet56() -> ir.Model:
    return load_model(cifar_resnet(9))


def test_resnet56_is_125_75_million_macs(resnet56):
    report = model_cost(resnet56)
    assert report.total_macs / 1e6 == pytest.approx(125.75, abs=0.01)
    assert report.total_macs == 125_747_840
    # Every identity block: two 16x16x3x3 convs at 32x32 (or their equivalents) = 4.7186 M.
    first_block = [r.macs for r in report.rows if r.op_type == "Conv"][1:3]
    assert sum(first_block) == 4_718_592


def test_zoo_resnet56_is_125_75_million_macs():
    path = ZOO / "resnet56.onnx"
    if not path.exists():
        pytest.skip(f"{path} not generated yet (models/export_zoo.py)")
    assert model_cost(load_model(path)).total_macs / 1e6 == pytest.approx(125.75, abs=0.01)


# --------------------------------------------------------------------------- onnx-tool


def _onnx_tool_dense_macs(proto: onnx.ModelProto, input_shapes) -> int:
    """Sum of onnx-tool's Conv + Gemm + MatMul rows (its only MAC-like rows; see cost.py)."""
    onnx_tool = pytest.importorskip("onnx_tool")
    with contextlib.redirect_stdout(io.StringIO()):
        graph = onnx_tool.Model(proto, {"verbose": False}).graph
        graph.graph_reorder_nodes()
        graph.shape_infer({name: np.zeros(shape, np.float32) for name, shape in input_shapes.items()})
        graph.profile()
    return int(sum(n.macs[0] for n in graph.nodemap.values() if n.op_type in ("Conv", "Gemm", "MatMul")))


def _bias_adds(model: ir.Model, shapes) -> int:
    """onnx-tool adds one op per output element of a biased Conv/Gemm; we do not."""
    return sum(
        math.prod(shapes[n.outputs[0].name])
        for n in model.graph
        if n.op_type in ("Conv", "Gemm") and len(n.inputs) > 2 and n.inputs[2] is not None
    )


PLAIN_CNNS = ["resnet20.onnx", "resnet56.onnx", "vgg.onnx", "resnet20.dynamo.onnx"]


@pytest.mark.parametrize("source", ["built-resnet56", *PLAIN_CNNS])
def test_macs_agree_with_onnx_tool(source):
    if source == "built-resnet56":
        proto = cifar_resnet(9)
    else:
        path = ZOO / source
        if not path.exists():
            pytest.skip(f"{path} not generated yet")
        proto = onnx.load(path)
    model = load_model(proto)
    inputs = resolve_input_shapes(model)
    shapes = static_shapes(model, inputs)
    ours = model_cost(model, shapes).total_macs
    theirs = _onnx_tool_dense_macs(proto, inputs)
    assert abs(theirs - ours) / ours < 0.01
    assert theirs == ours + _bias_adds(model, shapes)  # the only difference, exactly
