"""FoldShapeComputationsPass: replace shape arithmetic on static dims by constants.

PyTorch's TorchScript exporter writes `x.chunk(2, dim=1)` as
``Shape(x) → Gather(1) → Add → Div → Mul → Slice(starts, ends)``: the split point is
recomputed from the channel count at runtime. After pruning that would silently move
the boundary (uneven pruning of the two halves). Folding such values into constants
lets the channel rules see literal bounds and rewrite them exactly.

What it folds: small integer tensors (≤ 64 elements) the shape-value analysis
(`passes/shape_values.py`) knows completely — computed only from constants and from
*static* dims of `Shape` outputs (static = a number under symbolic shape inference, so
batch or sequence dims that follow a symbolic input are never baked in) — and only
where every use ends in a shape slot (an op record's `shape_inputs`: a Reshape target,
Slice bounds, Split sizes, ...). A channel count that feeds arithmetic on data stays a
runtime read, which the channel rules then freeze with a reason — folding it would
silently keep the old count after pruning.
What it does not do: fold float math, anything reading tensor data, `Shape` outputs
themselves (a target read straight from ``Shape(x)`` follows x's pruning), or values
that are graph outputs; it leaves the now-dead nodes for the cleanup pass.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxprune.passes.constants import new_initializer
from onnxprune.passes.rules import record
from onnxprune.passes.shape_values import ShapeValues


def shape_only_values(graph: ir.Graph) -> set:
    """Values whose every use (transitively through ops with a shape evaluator) is a
    shape slot."""
    result: set = set()
    for node in reversed(list(graph)):
        for value in node.outputs:
            uses = value.uses()
            if not uses or value.is_graph_output():
                continue
            if all(_feeds_shapes(u, result) for u in uses):
                result.add(value)
    return result


def _feeds_shapes(use, shape_only: set) -> bool:
    rec = record(use.node)
    if rec is None:
        return False
    if use.idx in rec.shape_inputs:
        return True
    return rec.shape_eval is not None and all(o in shape_only for o in use.node.outputs)


class FoldShapeComputationsPass(ir.passes.InPlacePass):
    """See the module docstring. `shapes` are symbolic shapes (None = not static);
    `dtypes` the inferred element types, for values the IR does not type (a folded
    constant must keep its value's type, or a Concat of it and an int32 part breaks)."""

    def __init__(self, shapes: dict[str, tuple], dtypes: dict | None = None):
        super().__init__()
        self.shapes = shapes
        self.dtypes = dtypes or {}

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        values = ShapeValues(lambda value: self.shapes.get(value.name))
        shape_only = shape_only_values(graph)
        folded = 0
        for node in list(graph):
            if node.op_type == "Shape" or len(node.outputs) != 1:
                continue
            value = node.outputs[0]
            if value not in shape_only:
                continue
            val = values.produced(value)
            if val is None or not val.known:
                continue
            dtype = (value.dtype or self.dtypes.get(value.name) or ir.DataType.INT64).numpy()
            arr = np.asarray(val.values, dtype=dtype).reshape(val.shape)
            const = new_initializer(graph, f"{value.name}_folded", arr)
            value.replace_all_uses_with(const)
            folded += 1
        return ir.passes.PassResult(model, modified=bool(folded))
