"""FoldShapeComputationsPass: replace shape arithmetic on static dims by constants.

PyTorch's TorchScript exporter writes `x.chunk(2, dim=1)` as
``Shape(x) → Gather(1) → Add → Div → Mul → Slice(starts, ends)``: the split point is
recomputed from the channel count at runtime. After pruning that would silently move
the boundary (uneven pruning of the two halves). Folding such values into constants
lets the channel rules see literal bounds and rewrite them exactly.

What it folds: small integer tensors (≤ 64 elements) computed only from constants and
from *static* dims of `Shape` outputs (static = a number under symbolic shape
inference, so batch or sequence dims that follow a symbolic input are never baked in),
and only where every use ends in a shape slot (a Reshape target, Slice bounds, Split
sizes, ...). A channel count that feeds arithmetic on data stays a runtime read, which
the channel rules then freeze with a reason — folding it would silently keep the old
count after pruning.
What it does not do: fold float math, anything reading tensor data, or values that are
graph outputs; it leaves the now-dead nodes for the cleanup pass.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxprune.passes.constants import const_array, is_const, new_initializer

MAX_ELEMENTS = 64
UNKNOWN = None


def _as_partial(arr: np.ndarray) -> list:
    return [int(v) for v in arr.reshape(-1)]


# Each rule: (node, inputs as np arrays or partial lists) -> np.ndarray | partial list
def _binary(fn):
    def rule(node, ins):
        a, b = ins
        if not _full(a) or not _full(b):
            return None
        return fn(np.asarray(a[1]).reshape(a[0]), np.asarray(b[1]).reshape(b[0]))
    return rule


def _full(p) -> bool:
    return p is not None and all(v is not UNKNOWN for v in p[1])


def _div(a, b):
    # ONNX integer Div truncates toward zero.
    return (np.trunc(a / b)).astype(np.int64) if np.all(b != 0) else None


RULES = {
    "Add": _binary(lambda a, b: a + b),
    "Sub": _binary(lambda a, b: a - b),
    "Mul": _binary(lambda a, b: a * b),
    "Div": _binary(_div),
    "Mod": _binary(lambda a, b: np.fmod(a, b) if np.all(b != 0) else None),
    "Max": _binary(np.maximum),
    "Min": _binary(np.minimum),
}


def _shape(node, ins, shapes):
    shape = shapes.get(node.inputs[0].name)
    if shape is None:
        return None
    start = node.attributes.get("start")
    end = node.attributes.get("end")
    dims = list(shape)[slice(start.value if start else None, end.value if end else None)]
    return ((len(dims),), dims)


def _gather(node, ins):
    data, idx = ins
    if data is None or not _full(idx) or len(data[0]) != 1:
        return None
    axis = node.attributes.get("axis")
    if axis is not None and axis.value != 0:
        return None
    picked = [data[1][int(k)] for k in idx[1]]
    return (tuple(idx[0]), picked)


def _concat(node, ins):
    if any(p is None or len(p[0]) != 1 for p in ins):
        return None
    vals = [v for p in ins for v in p[1]]
    return ((len(vals),), vals)


def _unsqueeze_squeeze(node, ins):
    data = ins[0]
    if data is None or len(data[1]) != 1:
        return None
    out_shape = () if node.op_type == "Squeeze" else (1,) * (len(data[0]) + 1)
    return (out_shape, list(data[1]))


def _cast(node, ins):
    to = node.attributes.get("to")
    if to is not None and not ir.DataType(to.value).is_integer():
        return None  # float arithmetic after this point is not shape arithmetic
    return ins[0]


def _slice(node, ins):
    data = ins[0]
    if data is None or len(data[0]) != 1 or not all(_full(p) for p in ins[1:3]):
        return None
    if len(ins) > 3 and ins[3] is not None and (not _full(ins[3]) or ins[3][1] not in ([0], [-1])):
        return None
    step = ins[4][1][0] if len(ins) > 4 and _full(ins[4]) else 1
    vals = data[1][slice(ins[1][1][0], ins[2][1][0], step)]
    return ((len(vals),), vals)


PARTIAL_RULES = {
    "Gather": _gather, "Concat": _concat, "Unsqueeze": _unsqueeze_squeeze,
    "Squeeze": _unsqueeze_squeeze, "Cast": _cast, "Identity": lambda node, ins: ins[0],
    "Slice": _slice,
}


# (op_type, input index) that take a shape, bounds, sizes or axes.
SHAPE_SLOTS = {
    ("Reshape", 1), ("Expand", 1), ("Tile", 1), ("Split", 1), ("ConstantOfShape", 0),
    ("Slice", 1), ("Slice", 2), ("Slice", 3), ("Slice", 4), ("Pad", 1), ("Pad", 3),
    ("Resize", 1), ("Resize", 2), ("Resize", 3), ("Unsqueeze", 1), ("Squeeze", 1),
    ("ReduceMean", 1), ("ReduceSum", 1), ("ReduceMax", 1), ("ReduceMin", 1),
}
FOLDABLE = {"Shape", *PARTIAL_RULES, *RULES}


def _shape_only_values(graph: ir.Graph) -> set:
    """Values whose every use (transitively through foldable ops) is a shape slot."""
    result: set = set()
    for node in reversed(list(graph)):
        for value in node.outputs:
            uses = value.uses()
            if not uses or value.is_graph_output():
                continue
            if all(
                (u.node.op_type, u.idx) in SHAPE_SLOTS
                or (u.node.op_type in FOLDABLE and all(o in result for o in u.node.outputs))
                for u in uses
            ):
                result.add(value)
    return result


class FoldShapeComputationsPass(ir.passes.InPlacePass):
    """See the module docstring. `shapes` are symbolic shapes (None = not static)."""

    def __init__(self, shapes: dict[str, tuple]):
        super().__init__()
        self.shapes = shapes

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        known: dict[ir.Value, tuple] = {}
        shape_only = _shape_only_values(graph)
        folded = 0
        for node in list(graph):
            if node.domain not in ("", "ai.onnx") or len(node.outputs) != 1:
                continue
            ins = [self._partial(v, known) for v in node.inputs]
            out = None
            if node.op_type == "Shape":
                out = _shape(node, ins, self.shapes)
            elif node.op_type in PARTIAL_RULES:
                out = PARTIAL_RULES[node.op_type](node, ins)
            elif node.op_type in RULES:
                arr = RULES[node.op_type](node, ins)
                out = None if arr is None else (tuple(arr.shape), _as_partial(arr))
            if out is None or len(out[1]) > MAX_ELEMENTS:
                continue
            value = node.outputs[0]
            known[value] = out
            if node.op_type != "Shape" and _full(out) and value in shape_only:
                dtype = value.dtype.numpy() if value.dtype is not None else np.int64
                arr = np.asarray(out[1], dtype=dtype).reshape(out[0])
                const = new_initializer(graph, f"{value.name}_folded", arr)
                value.replace_all_uses_with(const)
                known[const] = out
                folded += 1
        return ir.passes.PassResult(model, modified=bool(folded))

    @staticmethod
    def _partial(value, known):
        if value is None:
            return None
        if value in known:
            return known[value]
        if is_const(value):
            arr = const_array(value)
            if arr.dtype.kind in "iu" and arr.size <= MAX_ELEMENTS:
                return (tuple(arr.shape), _as_partial(arr))
        return None

