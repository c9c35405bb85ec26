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
  An op without a rule costs 0 and its row says so in `note`. Each op's rule is the
  ``cost`` of its record, next to its channel rule in `passes/rules/`.

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

import onnx_ir as ir

from onnxprune.passes.rules import record
from onnxprune.passes.rules.costing import UnknownShape
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


def node_cost(node: ir.Node, shape_of: ShapeOf) -> NodeCost:
    """MACs, parameters and other ops of one node, from `shape_of` alone.

    Never raises for a missing shape or an unknown op: the count is 0 (params still
    counted where their shapes are known) and `note` says why.
    """
    params = sum(_numel(v, shape_of) or 0 for v in _unique(node.inputs) if is_parameter(v))
    rec = record(node)
    rule = None if rec is None else rec.cost
    if rule is None:
        where = f"{node.domain}::" if node.domain else ""
        return NodeCost(params=params, note=f"no cost rule for {where}{node.op_type}")
    try:
        macs, other = rule(node, shape_of)
    except UnknownShape as missing:
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
    """A learned constant: a floating-point initializer or Constant output, or an integer
    one that quantized ops read as weights (a DequantizeLinear's data, a MatMulInteger's
    or ConvInteger's second operand). Other integer constants (shapes, axes, indices) are
    not parameters."""
    producer = value.producer()
    if value.const_value is not None or value.is_initializer():
        dtype = value.const_value.dtype if value.const_value is not None else value.dtype
    elif producer is not None and producer.op_type == "Constant":
        tensor = producer.attributes.get_tensor("value")
        if tensor is None:
            return "value_float" in producer.attributes or "value_floats" in producer.attributes
        dtype = tensor.dtype
    else:
        return False
    if dtype is None:
        return False
    return dtype.is_floating_point() or any((u.node.op_type, u.idx) in _QUANTIZED_WEIGHT_SLOTS for u in value.uses())


_QUANTIZED_WEIGHT_SLOTS = frozenset({("DequantizeLinear", 0), ("MatMulInteger", 1), ("ConvInteger", 1)})


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
