"""The cost model: multiply-accumulates (MACs) and parameters per node, from shapes.

Counts come only from tensor shapes, through a `shape_of(value)` callback, so the same
rules price a model as it is (`static_shapes`) or as a pruning plan would leave it
(predicted shapes passed in by the caller).

Two numbers per node, kept apart on purpose:

``macs`` -- the convention of the pruning papers ("BN, ReLU, Add ignored"), counted
  only for Conv, ConvTranspose, Gemm, MatMul and fused attention; biases are not counted:
    Conv           N·H_out·W_out·(C_in/g)·C_out·∏k   (any spatial rank)
    ConvTranspose  N·H_in·W_in·C_in·(C_out/g)·∏k
    Gemm           M·N·K
    MatMul         batch·M·N·K, batch dims broadcast, 1-D operands promoted per spec
    Attention      (ONNX, com.microsoft MultiHead/GroupQuery) batch·S·T·(q features +
                   output features): the q·kᵀ and softmax·V products, T = keys incl. cache;
                   com.microsoft Attention adds its packed projection batch·S·hidden·(q+k+v)
  CIFAR ResNet-56 (1x1-conv projection shortcuts) = 125.75 M MACs under it.

``other_ops`` -- everything else that computes, as a per-element count:
    elementwise (Add, Mul, Relu, Sigmoid, Clip, ...)   1 × output elements
    BatchNormalization                                  2 × output elements
        (inference form: a folded scale and shift)
    Instance/Layer/GroupNormalization                   5 × output elements
        (mean, variance, normalise, scale, shift); RMSNormalization 4;
        com.microsoft Skip(Simplified)LayerNormalization 6 (5), EmbedLayerNormalization 7,
        bias-activations (BiasGelu, FastGelu, BiasAdd) 2, QuickGelu/Gelu 1
    Softmax, LogSoftmax                                 3 × output elements (exp, sum, divide)
    MaxPool, AveragePool, LpPool                        output elements × ∏kernel_shape
    GlobalAverage/Max/LpPool, Reduce*                   input elements
    Resize, Upsample                                    output elements
  Data movement (Reshape, Transpose, Concat, Shape, Gather, Slice, ...) costs 0.
  An op without a rule costs 0 and its row says so in `note`.

``params`` -- elements of a node's floating-point constant inputs (initializers and
  Constant outputs). Integer constants (shapes, axes, indices) are not parameters.

Comparison with onnx-tool (1.0.1, `onnx_tool/node.py`): its "MACs" is a total over every
op, with instruction weights (BatchNormalization 31 per element, Div 4, Exp 32, Relu 1,
Add 1, ...), so its model total is neither of our numbers. Its Conv/Gemm/MatMul rows are
out_elements·K plus one add per output element when a bias is present. Our ``macs``
is therefore compared against the sum of onnx-tool's Conv+Gemm+MatMul rows (tests: within
1 % for plain CNNs; the gap is exactly those bias adds). onnx-tool's ConvTranspose row
uses output elements·(C_out/g)·∏k, which is not a MAC count, so it is not compared.

What this module does not do: estimate latency or memory traffic, price control flow,
or count ops inside model-local functions (a call node gets a "no cost rule" note).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping

import numpy as np
import onnx_ir as ir

from onnxprune.passes.shapes import shape_lookup

Shape = tuple[int, ...]
ShapeOf = Callable[[ir.Value], "Shape | None"]

_STANDARD_DOMAINS = frozenset({"", "ai.onnx"})


@dataclasses.dataclass(frozen=True)
class NodeCost:
    macs: int = 0
    params: int = 0
    other_ops: int = 0
    # Why a count is 0 or partial: no rule for the op, or a shape the rule needed is unknown.
    note: str = ""


@dataclasses.dataclass(frozen=True)
class NodeRow:
    name: str
    op_type: str
    macs: int
    params: int
    other_ops: int
    note: str = ""


@dataclasses.dataclass
class CostReport:
    rows: list[NodeRow]
    total_macs: int
    total_params: int
    total_other_ops: int

    def to_dict(self) -> dict:
        return {
            "total": {"macs": self.total_macs, "params": self.total_params, "other_ops": self.total_other_ops},
            "nodes": [dataclasses.asdict(row) for row in self.rows],
        }


class _UnknownShape(Exception):
    """A rule needed the shape of a value that shape_of could not give."""


# --------------------------------------------------------------------------- rules


def _need(shape_of: ShapeOf, value: ir.Value | None) -> Shape:
    shape = shape_of(value) if value is not None else None
    if shape is None:
        raise _UnknownShape(value.name if value is not None else "<missing input>")
    return tuple(shape)


def _input(node: ir.Node, index: int) -> ir.Value | None:
    return node.inputs[index] if index < len(node.inputs) else None


def _conv(node, shape_of):
    # W is [C_out, C_in/g, *k]: every output element costs C_in/g·∏k MACs.
    out = _need(shape_of, node.outputs[0])
    weight = _need(shape_of, node.inputs[1])
    return math.prod(out) * math.prod(weight[1:]), 0


def _conv_transpose(node, shape_of):
    # W is [C_in, C_out/g, *k]: every input element is scattered to C_out/g·∏k outputs.
    x = _need(shape_of, node.inputs[0])
    weight = _need(shape_of, node.inputs[1])
    return math.prod(x) * math.prod(weight[1:]), 0


def _gemm(node, shape_of):
    a = _need(shape_of, node.inputs[0])
    b = _need(shape_of, node.inputs[1])
    m, k = (a[1], a[0]) if node.attributes.get_int("transA", 0) else (a[0], a[1])
    n = b[0] if node.attributes.get_int("transB", 0) else b[1]
    return m * n * k, 0


def _matmul(node, shape_of):
    a = _need(shape_of, node.inputs[0])
    b = _need(shape_of, node.inputs[1])
    # numpy semantics: a 1-D left operand is a row, a 1-D right operand a column.
    a = (1, *a) if len(a) == 1 else a
    b = (*b, 1) if len(b) == 1 else b
    batch = np.broadcast_shapes(a[:-2], b[:-2])
    return math.prod(batch) * a[-2] * b[-1] * a[-1], 0


def _per_output_element(ops_per_element: int):
    def rule(node, shape_of):
        return 0, ops_per_element * math.prod(_need(shape_of, node.outputs[0]))

    return rule


def _per_input_element(node, shape_of):
    return 0, math.prod(_need(shape_of, node.inputs[0]))


def _pool(node, shape_of):
    kernel = node.attributes.get_ints("kernel_shape", ())
    return 0, math.prod(_need(shape_of, node.outputs[0])) * math.prod(kernel)


def _free(node, shape_of):
    return 0, 0


def _past_len(node, shape_of, index: int, axis: int) -> int:
    """Cached positions a fused attention adds to the keys (0 without a cache input)."""
    past = _input(node, index)
    return _need(shape_of, past)[axis] if past is not None else 0


def _scores_and_mix(batch: int, s: int, t: int, q_feats: int, y_feats: int) -> int:
    # q·kᵀ costs S·T·head_size per head (summed over heads: the query features), and
    # the softmax-weighted sum of values S·T·head_size_v per head (the output features).
    return batch * s * t * (q_feats + y_feats)


def _ms_attention(node, shape_of):
    """com.microsoft Attention: the packed QKV projection, then attention per head."""
    x = _need(shape_of, node.inputs[0])
    w = _need(shape_of, node.inputs[1])
    sizes = node.attributes.get_ints("qkv_hidden_sizes", None) or (1, 1, 1)
    q_feats, v_feats = (w[1] * sizes[0] // sum(sizes), w[1] * sizes[2] // sum(sizes))
    batch, s = x[0], x[1]
    t = s + _past_len(node, shape_of, 4, 3)
    return batch * s * x[2] * w[1] + _scores_and_mix(batch, s, t, q_feats, v_feats), 0


def _ms_multi_head_attention(node, shape_of):
    q = _need(shape_of, node.inputs[0])
    y = _need(shape_of, node.outputs[0])
    key = _need(shape_of, node.inputs[1])
    t = (key[1] if len(key) == 3 else key[2]) + _past_len(node, shape_of, 6, 2)
    return _scores_and_mix(q[0], q[1], t, q[2], y[2]), 0


def _ms_group_query_attention(node, shape_of):
    q = _need(shape_of, node.inputs[0])
    y = _need(shape_of, node.outputs[0])
    # With a cache the keys are past + new (a shared buffer over-counts: an upper bound).
    t = q[1] + _past_len(node, shape_of, 3, 2)
    return _scores_and_mix(q[0], q[1], t, y[2], y[2]), 0


def _onnx_attention(node, shape_of):
    q = _need(shape_of, node.inputs[0])
    key = _need(shape_of, node.inputs[1])
    y = _need(shape_of, node.outputs[0])
    if len(q) == 4:  # [batch, heads, seq, head_size]
        t = key[2] + _past_len(node, shape_of, 4, 2)
        return _scores_and_mix(q[0], q[2], t, q[1] * q[3], y[1] * y[3]), 0
    t = key[1] + _past_len(node, shape_of, 4, 2)
    return _scores_and_mix(q[0], q[1], t, q[2], y[2]), 0


_ELEMENTWISE = (
    "Add", "Sub", "Mul", "Div", "Pow", "Mod", "Max", "Min", "Mean", "Sum", "Where",
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "Sigmoid", "HardSigmoid",
    "HardSwish", "Swish", "Mish", "Softplus", "Softsign", "Tanh", "Clip", "ThresholdedRelu",
    "Abs", "Neg", "Reciprocal", "Sqrt", "Exp", "Log", "Erf", "Sin", "Cos", "Tan", "Sign",
    "Floor", "Ceil", "Round", "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual",
    "Not", "And", "Or", "Xor", "IsNaN", "IsInf", "BitShift", "Shrink", "Resize", "Upsample",
)
_REDUCTIONS = (
    "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "ReduceMean", "ReduceSum", "ReduceMax",
    "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
    "ReduceSumSquare", "ArgMax", "ArgMin", "CumSum", "TopK", "NonZero",
)
_DATA_MOVEMENT = (
    "Reshape", "Transpose", "Concat", "Split", "Slice", "Gather", "GatherElements", "GatherND",
    "Squeeze", "Unsqueeze", "Flatten", "Shape", "Size", "Identity", "Constant", "ConstantOfShape",
    "Expand", "Tile", "Pad", "Cast", "CastLike", "Range", "Dropout", "DepthToSpace", "SpaceToDepth",
    "ScatterElements", "ScatterND", "OneHot", "Trilu",
)

COST_RULES: dict[str, Callable[[ir.Node, ShapeOf], tuple[int, int]]] = {
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "BatchNormalization": _per_output_element(2),
    "InstanceNormalization": _per_output_element(5),
    "LayerNormalization": _per_output_element(5),
    "GroupNormalization": _per_output_element(5),
    "Softmax": _per_output_element(3),
    "LogSoftmax": _per_output_element(3),
    "MaxPool": _pool,
    "AveragePool": _pool,
    "LpPool": _pool,
    **{op: _per_output_element(1) for op in _ELEMENTWISE},
    **{op: _per_input_element for op in _REDUCTIONS},
    **{op: _free for op in _DATA_MOVEMENT},
    "Attention": _onnx_attention,
    "RMSNormalization": _per_output_element(4),
}

# Ops outside the standard domain, by (domain, op_type). The fused attention ops count
# their projections (com.microsoft Attention only: the others take projected inputs)
# and the two per-head products as MACs; fused norms and bias-activations as other ops.
DOMAIN_COST_RULES: dict[tuple[str, str], Callable[[ir.Node, ShapeOf], tuple[int, int]]] = {
    ("com.microsoft", "Attention"): _ms_attention,
    ("com.microsoft", "MultiHeadAttention"): _ms_multi_head_attention,
    ("com.microsoft", "GroupQueryAttention"): _ms_group_query_attention,
    ("com.microsoft", "SkipLayerNormalization"): _per_output_element(6),
    ("com.microsoft", "SkipSimplifiedLayerNormalization"): _per_output_element(5),
    ("com.microsoft", "EmbedLayerNormalization"): _per_output_element(7),
    ("com.microsoft", "BiasGelu"): _per_output_element(2),
    ("com.microsoft", "FastGelu"): _per_output_element(2),
    ("com.microsoft", "BiasAdd"): _per_output_element(2),
    ("com.microsoft", "QuickGelu"): _per_output_element(1),
    ("com.microsoft", "Gelu"): _per_output_element(1),
}


def node_cost(node: ir.Node, shape_of: ShapeOf) -> NodeCost:
    """MACs, parameters and other ops of one node, from `shape_of` alone.

    Never raises for a missing shape or an unknown op: the count is 0 (params still
    counted where their shapes are known) and `note` says why.
    """
    params = sum(_numel(v, shape_of) or 0 for v in _unique(node.inputs) if is_parameter(v))
    if node.domain in _STANDARD_DOMAINS:
        rule = COST_RULES.get(node.op_type)
    else:
        rule = DOMAIN_COST_RULES.get((node.domain, node.op_type))
    if rule is None:
        where = f"{node.domain}::" if node.domain else ""
        return NodeCost(params=params, note=f"no cost rule for {where}{node.op_type}")
    try:
        macs, other = rule(node, shape_of)
    except _UnknownShape as missing:
        return NodeCost(params=params, note=f"shape of '{missing}' unknown")
    return NodeCost(macs=int(macs), params=params, other_ops=int(other))


def _unique(values):
    seen = []
    for v in values:
        if v is not None and all(v is not s for s in seen):
            seen.append(v)
    return seen


def _numel(value: ir.Value, shape_of: ShapeOf) -> int | None:
    shape = shape_of(value)
    if shape is None and value.const_value is not None:
        shape = value.const_value.shape
    return None if shape is None else math.prod(shape)


def is_parameter(value: ir.Value) -> bool:
    """A floating-point constant: an initializer or a Constant node's output."""
    producer = value.producer()
    if value.const_value is not None or value.is_initializer():
        dtype = value.const_value.dtype if value.const_value is not None else value.dtype
        return dtype is not None and dtype.is_floating_point()
    if producer is None or producer.op_type != "Constant":
        return False
    tensor = producer.attributes.get_tensor("value")
    if tensor is not None:
        return tensor.dtype.is_floating_point()
    return "value_float" in producer.attributes or "value_floats" in producer.attributes


# --------------------------------------------------------------------------- model


def model_cost(
    model: ir.Model, shapes: Mapping[str, Shape] | ShapeOf | None = None
) -> CostReport:
    """Per-node costs and totals for the top-level graph of `model`.

    `shapes` is a `shape_of` callback, or a mapping of value name -> shape (e.g. from
    `static_shapes`, or predicted), or a mapping that names only graph inputs (or None),
    in which case `static_shapes` is run on it first. Total params counts every
    floating-point initializer and Constant output once, used by a costed op or not.
    Does not modify `model`.
    """
    shape_of = shape_lookup(model, shapes)
    rows = []
    for node in model.graph:
        cost = node_cost(node, shape_of)
        rows.append(NodeRow(node.name or "", node.op_type, cost.macs, cost.params, cost.other_ops, cost.note))
    constants = [v for v in model.graph.initializers.values()]
    constants += [n.outputs[0] for n in model.graph if n.op_type == "Constant" and n.domain in _STANDARD_DOMAINS]
    total_params = sum(_numel(v, shape_of) or 0 for v in constants if is_parameter(v))
    return CostReport(
        rows=rows,
        total_macs=sum(r.macs for r in rows),
        total_params=total_params,
        total_other_ops=sum(r.other_ops for r in rows),
    )
