"""Helpers shared by the compiler and CLI tests (no torch).

What lives here:
- the reference models (every zoo entry of MANIFEST.json, plus the bundled digits
  model) as pytest parameters;
- ONNX Runtime runs that do not go through onnxprune (an independent oracle);
- an independent MAC/parameter counter for *emitted* models (ONNX shape inference on
  the saved proto, the papers' convention), to check the cost model's prediction;
- the exactness construction: a copy of a model whose consumer-side weight slices of
  chosen channel classes are zeroed, so removing those channels must not change the
  outputs at all.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import onnx.parser
import onnx.shape_inference
import onnx_ir as ir
import onnxruntime as ort
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
ZOO = MODELS / "zoo"
DIGITS = MODELS / "digits"
DIGITS_MODEL = DIGITS / "digits_resnet.onnx"
MANIFEST = json.loads((ZOO / "MANIFEST.json").read_text())

ZOO_FILES = [e["file"] for e in MANIFEST["files"]]
ALL_MODEL_PATHS = [ZOO / f for f in ZOO_FILES] + [DIGITS_MODEL]
ALL_MODELS = [pytest.param(str(p), id=p.name) for p in ALL_MODEL_PATHS]


def zoo(name: str) -> str:
    """Path of a zoo file by file name (e.g. 'resnet20.onnx')."""
    path = ZOO / name
    assert path.exists(), path
    return str(path)


# --------------------------------------------------------------------------- ORT


def session(model) -> ort.InferenceSession:
    """A single-threaded CPU session from a path, ModelProto or onnx_ir.Model."""
    if isinstance(model, ir.Model):
        model = ir.serde.serialize_model(model)
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    elif isinstance(model, os.PathLike):
        model = os.fspath(model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def input_signature(proto: onnx.ModelProto) -> list[tuple]:
    """(name, elem_type, dims) of every graph input that is not an initializer; dims are
    ints or dim_param strings ('?' for an unnamed dynamic dim)."""
    inits = {i.name for i in proto.graph.initializer}
    return [_sig(v) for v in proto.graph.input if v.name not in inits]


def output_signature(proto: onnx.ModelProto) -> list[tuple]:
    return [_sig(v) for v in proto.graph.output]


def _sig(v: onnx.ValueInfoProto) -> tuple:
    t = v.type.tensor_type
    dims = tuple(
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim
    ) if t.HasField("shape") else None
    return v.name, t.elem_type, dims


def feeds_for(proto: onnx.ModelProto, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float inputs with the declared shape, axis 0 set to `batch`."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, elem, dims in input_signature(proto):
        assert elem == onnx.TensorProto.FLOAT, f"test helper only feeds float inputs, {name} is {elem}"
        shape = [batch] + [int(d) for d in dims[1:]]
        feeds[name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def run(model, feeds) -> dict[str, np.ndarray]:
    sess = session(model)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds)))


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """max|a - b| / max|a| (a is the reference)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(float(np.abs(a).max()), 1e-30))


# --------------------------------------------------------------------------- cost


_FLOAT_TYPES = {
    onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
}


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def measured_cost(proto: onnx.ModelProto, batch: int = 1) -> dict:
    """MACs and parameters of `proto`, counted without onnxprune.

    MACs (papers' convention): Conv N·H_out·W_out·(C_in/g)·C_out·∏k, Gemm M·N·K,
    MatMul batch·M·N·K; everything else 0. Shapes from ONNX shape inference with
    every graph input's axis 0 fixed to `batch`. Params: elements of every
    floating-point initializer and Constant-node tensor.
    """
    p = onnx.ModelProto()
    p.CopyFrom(proto)
    inits = {i.name for i in p.graph.initializer}
    for v in p.graph.input:
        if v.name in inits:
            continue
        dim0 = v.type.tensor_type.shape.dim[0]
        dim0.Clear()
        dim0.dim_value = batch
    inferred = onnx.shape_inference.infer_shapes(p, strict_mode=True, data_prop=True)
    shapes: dict[str, tuple] = {}
    for v in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = v.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[v.name] = tuple(d.dim_value for d in dims)
    for init in p.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    for node in p.graph.node:
        if node.op_type == "Constant":
            t = _attr(node, "value")
            if t is not None:
                shapes[node.output[0]] = tuple(t.dims)

    needed = [
        name for node in p.graph.node if node.op_type in ("Conv", "Gemm", "MatMul")
        for name in (*node.input[:2], node.output[0]) if name not in shapes
    ]
    if needed:  # shapes inference leaves open (data-dependent Slice bounds): run it
        shapes.update(_run_shapes(p, needed, batch))

    def shape(name):
        assert name in shapes, f"no static shape for {name!r}"
        return shapes[name]

    macs = 0
    for node in p.graph.node:
        if node.op_type == "Conv":
            w, y = shape(node.input[1]), shape(node.output[0])
            macs += math.prod(y) * math.prod(w[1:])  # N·C_out·spatial_out · (C_in/g)·∏k
        elif node.op_type == "Gemm":
            a, b = shape(node.input[0]), shape(node.input[1])
            m = a[1] if _attr(node, "transA", 0) else a[0]
            k = a[0] if _attr(node, "transA", 0) else a[1]
            n = b[0] if _attr(node, "transB", 0) else b[1]
            macs += m * n * k
        elif node.op_type == "MatMul":
            a, b, y = shape(node.input[0]), shape(node.input[1]), shape(node.output[0])
            k = a[-1]
            macs += math.prod(y) * k
        elif node.op_type in ("ConvTranspose", "ConvInteger", "QLinearConv", "QLinearMatMul"):
            raise AssertionError(f"measured_cost has no rule for {node.op_type}")
    params = sum(math.prod(i.dims) for i in p.graph.initializer if i.data_type in _FLOAT_TYPES)
    for node in p.graph.node:
        if node.op_type != "Constant":
            continue
        t = _attr(node, "value")
        if t is not None and t.data_type in _FLOAT_TYPES:
            params += math.prod(t.dims)
        elif _attr(node, "value_float") is not None:
            params += 1
        elif _attr(node, "value_floats") is not None:
            params += len(_attr(node, "value_floats"))
    return {"macs": int(macs), "params": int(params)}


def _run_shapes(proto: onnx.ModelProto, names: list[str], batch: int) -> dict[str, tuple]:
    """Shapes of intermediate values, by running ONNX Runtime with them as outputs."""
    p = onnx.ModelProto()
    p.CopyFrom(proto)
    del p.graph.value_info[:]
    for name in names:
        p.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    out = run(p, feeds_for(proto, batch=batch))
    return {name: tuple(out[name].shape) for name in names}


# --------------------------------------------------------------------------- exactness


def _constant_producer(value: ir.Value) -> ir.Node | None:
    prod = value.producer()
    if prod is not None and prod.op_type == "Constant" and prod.domain in ("", "ai.onnx"):
        return prod
    return None


def read_const(value: ir.Value) -> np.ndarray:
    """The array behind an initializer or a Constant node's output (a copy)."""
    prod = _constant_producer(value)
    if prod is None:
        assert value.const_value is not None and not value.is_graph_input(), f"{value.name} is not a constant"
        return np.array(value.const_value.numpy(), copy=True)
    attr = prod.attributes.get("value")
    assert attr is not None, f"Constant {prod.name} has no tensor 'value' attribute"
    return np.array(attr.value.numpy(), copy=True)


def write_const(value: ir.Value, array: np.ndarray) -> None:
    """Replace the data of an initializer or a Constant node (every reader sees it)."""
    tensor = ir.tensor(array, name=value.name)
    prod = _constant_producer(value)
    if prod is not None:  # a Constant node: its attribute is what gets serialised
        prod.attributes["value"] = ir.AttrTensor("value", tensor)
        for key in ("value_float", "value_floats", "value_int", "value_ints"):
            prod.attributes.pop(key, None)
        if value.const_value is not None:
            value.const_value = tensor
        return
    assert value.const_value is not None and not value.is_graph_input(), f"{value.name} is not a constant"
    value.const_value = tensor


def zero_consumer_slices(an, removed: set[int]) -> int:
    """In the model `an` was computed on, zero every consumer-side ("in") weight slice
    whose channel class is in `removed`; return how many positions were zeroed.

    After this, removing those classes cannot change what the model computes when the
    analysis is right: nothing downstream reads the removed channels any more.
    """
    zeroed = 0
    for m in an.const_members:
        if m.role != "in":
            continue
        cls = an.classes_of(m.var)
        if cls is None:
            continue
        kill = np.isin(cls, sorted(removed))
        if not kill.any():
            continue
        value = an.nodes[m.node_index].inputs[m.input_index]
        arr = read_const(value)
        assert arr.shape[m.axis] == len(cls), (value.name, arr.shape, m.axis, len(cls))
        index = [slice(None)] * arr.ndim
        index[m.axis] = kill
        arr[tuple(index)] = 0
        write_const(value, arr)
        zeroed += int(kill.sum())
    return zeroed


def model_from_text(body: str, inputs: str, outputs: str, weights: dict, opset: int = 17) -> onnx.ModelProto:
    """A model from ONNX text; `weights` maps initializer names to arrays, or to shapes
    for standard-normal float32 weights (seeded, so the model is always the same)."""
    text = f'<ir_version: 8, opset_import: ["" : {opset}]>\ng ({inputs}) => ({outputs}) {{\n{body}\n}}'
    proto = onnx.parser.parse_model(text)
    rng = np.random.default_rng(0)
    for name, array in weights.items():
        if isinstance(array, tuple):
            array = rng.standard_normal(array).astype(np.float32)
        proto.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(array), name))
    onnx.checker.check_model(proto, full_check=True)
    return proto


# --------------------------------------------------------------------------- small models

CONV_RELU_CONV = """
<ir_version: 8, opset_import: ["" : 17]>
conv_relu_conv (float[N,3,8,8] x) => (float[N,4,8,8] y) {
  h = Conv<pads = [1, 1, 1, 1]>(x, w1, b1)
  r = Relu(h)
  y = Conv<pads = [1, 1, 1, 1]>(r, w2, b2)
}
"""


def conv_relu_conv(width: int = 8, seed: int = 0) -> onnx.ModelProto:
    """x[N,3,8,8] -> Conv3x3(width) -> Relu -> Conv3x3(4) -> y, with random weights."""
    rng = np.random.default_rng(seed)
    proto = onnx.parser.parse_model(CONV_RELU_CONV)
    weights = {
        "w1": rng.standard_normal((width, 3, 3, 3)),
        "b1": rng.standard_normal(width),
        "w2": rng.standard_normal((4, width, 3, 3)),
        "b2": rng.standard_normal(4),
    }
    for name, array in weights.items():
        proto.graph.initializer.append(onnx.numpy_helper.from_array(array.astype(np.float32), name))
    return proto
