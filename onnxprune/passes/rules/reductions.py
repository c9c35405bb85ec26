"""Pooling, reductions and softmax: they keep or collapse axes.

Pooling works per channel (exact). Reducing or normalising *over* a prunable axis
(ReduceMean over channels, Softmax over features) is marked inexact; ArgMax/ArgMin
over one would return different indices, so those axes are frozen.

Costs (other ops): MaxPool/AveragePool/LpPool output elements × ∏kernel_shape;
global pools and reductions (and ArgMax, CumSum, TopK, NonZero) one per input element;
Softmax/LogSoftmax 3 per output element (exp, sum, divide).
"""

from __future__ import annotations

import math

from onnxprune.passes.rules.costing import need, per_input_element, per_output_element
from onnxprune.passes.rules.registry import default_rule, on_input, op, register
from onnxprune.passes.shape_elements import Elem, ShapeVal, attr_int, known_ints

POOLS = ("MaxPool", "AveragePool", "LpPool")
GLOBAL_POOLS = ("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
REDUCTIONS = (
    "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
    "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare",
)
# The axes input of these takes axes (a shape slot: folding stops there).
_AXES_INPUT = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin")


def pool_cost(node, shape_of):
    kernel = node.attributes.get_ints("kernel_shape", ())
    return 0, math.prod(need(shape_of, node.outputs[0])) * math.prod(kernel)


@on_input(min_rank=2)
def pool(ctx, x) -> None:
    if ctx.node.op_type.startswith("Global"):
        for var in x[2:]:  # one value per channel from every position: fewer positions, another value
            ctx.inexact(var, "pools over this axis: removing positions changes the result")
    else:
        for var in x[2:]:
            ctx.freeze(var, "a pooling window slides along this axis")
    out_shape = ctx.out_shape(0) or (None,) * len(x)
    ctx.set_out(0, x[:2] + [ctx.fixed(s) for s in out_shape[2:]])
    idx = ctx.node.outputs[1] if len(ctx.node.outputs) > 1 else None
    # A graph output counts as a use: its dims were never tied to x, so the output
    # check at the end of the walk would not see the channels it exposes.
    if idx is not None and idx.name and (idx.uses() or idx.is_graph_output()):
        ctx.freeze(x[1], "MaxPool indices encode channel positions")


register(*POOLS, cost=pool_cost)(pool)
register(*GLOBAL_POOLS, cost=per_input_element)(pool)


def reduce_axes(ctx, rank: int) -> list[int] | None:
    """The reduced axes (normalised), or None when they are computed at runtime."""
    axes = ctx.attr("axes")
    if axes is None and ctx.n_inputs() > 1 and ctx.input(1) is not None:
        arr = ctx.const(1)
        if arr is None:
            return None
        axes = arr.reshape(-1).tolist()
    if not axes:
        return [] if ctx.attr("noop_with_empty_axes", 0) else list(range(rank))
    return sorted(a + rank if a < 0 else a for a in axes)


@on_input()
def reduce(ctx, x) -> None:
    axes = reduce_axes(ctx, len(x))
    if axes is None:
        return default_rule(ctx, "reduction axes computed at runtime")
    keep = ctx.attr("keepdims", 1)
    out = []
    for a, var in enumerate(x):
        if a in axes:
            ctx.inexact(var, "reduces over this axis: removing channels changes the result")
            ctx.tag(var, "normalized")  # decomposed LayerNorm/RMSNorm: a normalised stream
            if keep:
                out.append(ctx.fixed(1))
        else:
            out.append(var)
    ctx.set_out(0, out)


_COMBINE = {"ReduceProd": math.prod, "ReduceSum": sum, "ReduceMin": min, "ReduceMax": max}


def eval_reduce(node, ins, shape) -> ShapeVal | None:
    """A 1-D shape reduced to one element (TensorFlow's Tensordot multiplies the free
    dims of a shape): one element passes unchanged, several combine into one that
    carries every runtime axis they read."""
    data = ins[0] if ins else None
    axes = node.attributes.get("axes")
    axes = list(axes.value) if axes is not None else (known_ints(ins[1]) if len(ins) > 1 and ins[1] else None)
    if data is None or len(data.shape) > 1 or (axes is not None and axes not in ([], [0], [-1])) or not data.elems:
        return None
    keep = (1,) if attr_int(node, "keepdims", 1) else ()
    if len(data.elems) == 1:
        return ShapeVal(keep, data.elems)
    values = data.values
    value = None if None in values else int(_COMBINE[node.op_type](values))
    return ShapeVal(keep, (Elem(value, None, frozenset().union(*(e.reads for e in data.elems))),))


register(*_COMBINE, cost=per_input_element, shape_inputs=(1,), shape_eval=eval_reduce, shape_moves=(0,))(reduce)
register(*(r for r in _AXES_INPUT if r not in _COMBINE), cost=per_input_element, shape_inputs=(1,))(reduce)
register(*(r for r in REDUCTIONS if r not in _AXES_INPUT and r not in _COMBINE), cost=per_input_element)(reduce)


@register("ArgMax", "ArgMin", cost=per_input_element)
@on_input()
def arg_reduce(ctx, x) -> None:
    axis = ctx.axis_attr("axis", 0, len(x))
    ctx.freeze(x[axis], "returns positions along this axis")
    out = [v for a, v in enumerate(x) if a != axis]
    if ctx.attr("keepdims", 1):
        out.insert(axis, ctx.fixed(1))
    ctx.set_out(0, out)


@on_input()
def softmax(ctx, x) -> None:
    opset = ctx.an.opset
    axis = ctx.axis_attr("axis", -1 if opset >= 13 else 1, len(x))
    # Before opset 13 the op flattens everything from `axis` on into one row.
    over = [axis] if opset >= 13 else list(range(axis, len(x)))
    for a in over:
        if ctx.node.op_type == "Hardmax":
            ctx.freeze(x[a], "Hardmax picks one position along this axis")
        else:
            ctx.inexact(x[a], "normalises over this axis: removing features changes it")
    ctx.set_out(0, x)


register("Softmax", "LogSoftmax", cost=per_output_element(3))(softmax)
register("Hardmax")(softmax)
op("CumSum", "TopK", "NonZero", cost=per_input_element)
