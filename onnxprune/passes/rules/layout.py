"""Ops that move, cut or join axes without arithmetic: Concat, Split, Slice, Transpose,
Squeeze, Unsqueeze, Pad, Tile, Gather (Reshape, Flatten, Expand and Resize are in
`reshape.py`, Shape and Size in `shape_ops.py`).

Concat/Split/Slice map positions by offset, Transpose by permutation. Their rewrites fix
the shape constants that slicing weights cannot: Split sizes and Slice bounds. They cost
nothing. On small integer tensors (shapes) Concat, Gather, Slice, Squeeze and Unsqueeze
move elements for the shape-value analysis.
"""

from __future__ import annotations

import numpy as np

from onnxprune.passes.rules.costing import free
from onnxprune.passes.rules.registry import (
    ALL_INPUTS,
    default_rule,
    on_input,
    op,
    register,
)
from onnxprune.passes.shape_elements import ShapeVal, attr_int, known_ints

BIG = 2**62  # Slice bounds at or beyond this mean "to the end"
RUNTIME = "runtime"  # NodeContext.list_arg: the list is computed at runtime


def norm_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


# -- Concat ---------------------------------------------------------------------
def eval_concat(node, ins, shape) -> ShapeVal | None:
    if not ins or any(v is None or not v.is_vector() for v in ins):
        return None
    elems = tuple(e for v in ins for e in v.elems)
    return ShapeVal((len(elems),), elems)


@register("Concat", cost=free, shape_eval=eval_concat, shape_moves=ALL_INPUTS)
def concat(ctx) -> None:
    ins = [ctx.in_dims(i) for i in range(ctx.n_inputs())]
    if any(d is None for d in ins) or len({len(d) for d in ins}) != 1:
        return default_rule(ctx, "operand ranks unknown")
    rank = len(ins[0])
    axis = ctx.axis_attr("axis", 0, rank)
    out = []
    for a in range(rank):
        if a == axis:
            parts = [ctx.dims.array(d[a]) for d in ins]
            if any(p is None for p in parts):
                for d in ins:
                    ctx.freeze(d[a], "concatenates a part of unknown size")
                out.append(ctx.fixed(None))
            else:
                out.append(ctx.derived(np.concatenate(parts)))
        else:
            var = ins[0][a]
            for d in ins[1:]:
                var = ctx.tie(var, d[a], "concatenated operands")
            out.append(var)
    ctx.set_out(0, out)


# -- Split ------------------------------------------------------------------------
def _split_sizes(ctx, size: int) -> list[int] | None:
    sizes = ctx.list_arg("split", 1)
    if sizes == RUNTIME:
        return None
    if sizes is None:
        n = ctx.attr("num_outputs", len(ctx.node.outputs))
        chunk = -(-size // n)  # opset 18: the last chunk may be smaller
        sizes = [min(chunk, size - k * chunk) for k in range(n)]
    return [int(s) for s in sizes]


def rewrite_split(rc) -> None:
    rank = len(rc.in_shape(0))
    axis = norm_axis(rc.attr("axis", 0), rank)
    keep = rc.in_keep(0, axis)
    if keep is None:
        return
    old = [rc.out_size(j, axis) for j in range(len(rc.node.outputs))]
    new, off = [], 0
    for s in old:
        new.append(int(keep[off:off + s].sum()))
        off += s
    if rc.node.attributes.get("split") is not None:
        rc.set_attr_ints("split", new)
    elif rc.node.inputs[1:] and rc.node.inputs[1] is not None:
        rc.set_const_input(1, np.asarray(new, dtype=np.int64))
    elif new != old:
        # Equal split made unequal: spell the sizes out.
        rc.node.attributes.pop("num_outputs", None)
        if rc.opset >= 13:
            rc.add_const_input(1, np.asarray(new, dtype=np.int64))
        else:
            rc.set_attr_ints("split", new)


@register("Split", rewrite=rewrite_split, cost=free, shape_inputs=(1,))
@on_input()
def split(ctx, x) -> None:
    axis = ctx.axis_attr("axis", 0, len(x))
    arr = ctx.dims.array(x[axis])
    sizes = None if arr is None else _split_sizes(ctx, len(arr))
    if sizes is None:
        ctx.freeze(x[axis], "split sizes unknown")
    off = 0
    for j in range(len(ctx.node.outputs)):
        dims = list(x)
        if sizes is None:
            dims[axis] = ctx.fixed(None)
        else:
            dims[axis] = ctx.derived(arr[off:off + sizes[j]])
            off += sizes[j]
        ctx.set_out(j, dims)


# -- Slice ------------------------------------------------------------------------
def _slice_params(ctx_or_rc, rank: int):
    """(starts, ends, axes, steps) as lists, or None if any is computed at runtime."""
    node = ctx_or_rc.node
    if ctx_or_rc.opset < 10:
        starts, ends = ctx_or_rc.attr("starts"), ctx_or_rc.attr("ends")
        axes = ctx_or_rc.attr("axes", list(range(len(starts))))
        return list(starts), list(ends), list(axes), [1] * len(starts)
    vals = []
    for i in range(1, 5):
        if i >= len(node.inputs) or node.inputs[i] is None:
            vals.append(None)
            continue
        arr = ctx_or_rc.const(i)
        if arr is None:
            return None
        vals.append(arr.reshape(-1).tolist())
    starts, ends, axes, steps = vals
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    return starts, ends, [norm_axis(a, rank) for a in axes], steps


def rewrite_slice(rc) -> None:
    rank = len(rc.in_shape(0))
    params = _slice_params(rc, rank)
    if params is None:
        return  # runtime bounds: the analysis froze every axis
    starts, ends, axes, steps = params
    new_starts, new_ends, changed = list(starts), list(ends), False
    for k, a in enumerate(axes):
        keep = rc.in_keep(0, a)
        if keep is None:
            continue
        s, e, _ = slice(starts[k], ends[k], steps[k]).indices(len(keep))
        new_starts[k] = int(keep[:s].sum())
        if ends[k] < BIG:
            new_ends[k] = int(new_starts[k] + keep[s:e].sum())
        changed = True
    if not changed:
        return
    if rc.opset < 10:
        rc.set_attr_ints("starts", new_starts)
        rc.set_attr_ints("ends", new_ends)
    else:
        rc.set_const_input(1, np.asarray(new_starts, dtype=rc.const(1).dtype))
        rc.set_const_input(2, np.asarray(new_ends, dtype=rc.const(2).dtype))


def eval_slice(node, ins, shape) -> ShapeVal | None:
    """A 1-D tensor cut along its axis by known bounds (opset >= 10 inputs)."""
    data = ins[0] if ins else None
    if data is None or not data.is_vector() or len(ins) < 3:
        return None
    starts, ends = known_ints(ins[1]), known_ints(ins[2])
    axes = known_ints(ins[3]) if len(ins) > 3 and ins[3] is not None else [0]
    steps = known_ints(ins[4]) if len(ins) > 4 and ins[4] is not None else [1]
    if None in (starts, ends, axes, steps) or not len(starts) == len(ends) == len(steps) == 1 or axes not in ([0], [-1]):
        return None
    if steps[0] == 0:
        return None
    elems = data.elems[slice(starts[0], ends[0], steps[0])]
    return ShapeVal((len(elems),), elems)


@register("Slice", rewrite=rewrite_slice, cost=free, shape_inputs=(1, 2, 3, 4), shape_eval=eval_slice,
          shape_moves=(0,))
@on_input()
def slice_(ctx, x) -> None:
    params = _slice_params(ctx, len(x))
    if params is None:
        for v in x:
            ctx.freeze(v, "slice bounds computed at runtime")
        ctx.set_out(0, [ctx.fixed(s) for s in (ctx.out_shape(0) or [None] * len(x))])
        return
    starts, ends, axes, steps = params
    out = list(x)
    for k, a in enumerate(axes):
        arr = ctx.dims.array(x[a])
        if arr is None:
            out[a] = ctx.fixed(None)
            continue
        if steps[k] != 1 and (arr >= 0).any():
            ctx.freeze(x[a], f"slices with step {steps[k]}")
            out[a] = ctx.fixed(len(range(*slice(starts[k], ends[k], steps[k]).indices(len(arr)))))
            continue
        out[a] = ctx.derived(arr[slice(starts[k], ends[k], steps[k])])
    ctx.set_out(0, out)


# -- Transpose, Squeeze, Unsqueeze --------------------------------------------------
@register("Transpose", cost=free)
@on_input()
def transpose(ctx, x) -> None:
    perm = ctx.attr("perm", list(range(len(x)))[::-1])
    ctx.set_out(0, [x[p] for p in perm])


def _axes_arg(ctx, rank: int):
    axes = ctx.list_arg("axes", 1)
    return axes if axes in (None, RUNTIME) else [norm_axis(a, rank) for a in axes]


def _eval_axes(node, ins) -> list[int] | None | str:
    a = node.attributes.get("axes")
    if a is not None:
        return list(a.value)
    if len(ins) > 1 and ins[1] is not None:
        axes = known_ints(ins[1])
        return RUNTIME if axes is None else axes
    return None


def eval_squeeze(node, ins, shape) -> ShapeVal | None:
    data = ins[0] if ins else None
    axes = _eval_axes(node, ins)
    if data is None or axes == RUNTIME:
        return None
    rank = len(data.shape)
    gone = [a for a, s in enumerate(data.shape) if s == 1] if axes is None else [norm_axis(a, rank) for a in axes]
    return ShapeVal(tuple(s for a, s in enumerate(data.shape) if a not in gone), data.elems)


def eval_unsqueeze(node, ins, shape) -> ShapeVal | None:
    data = ins[0] if ins else None
    axes = _eval_axes(node, ins)
    if data is None or axes in (None, RUNTIME):
        return None
    rank = len(data.shape) + len(axes)
    new = {norm_axis(a, rank) for a in axes}
    dims = iter(data.shape)
    return ShapeVal(tuple(1 if a in new else next(dims) for a in range(rank)), data.elems)


@register("Squeeze", cost=free, shape_inputs=(1,), shape_eval=eval_squeeze, shape_moves=(0,))
@on_input()
def squeeze(ctx, x) -> None:
    axes = _axes_arg(ctx, len(x))
    if axes == RUNTIME:
        return default_rule(ctx, "axes computed at runtime")
    if axes is None:
        axes = [a for a, v in enumerate(x) if ctx.dims.get_size(v) == 1]
    ctx.set_out(0, [v for a, v in enumerate(x) if a not in axes])


@register("Unsqueeze", cost=free, shape_inputs=(1,), shape_eval=eval_unsqueeze, shape_moves=(0,))
@on_input()
def unsqueeze(ctx, x) -> None:
    rank = len(x) + len(ctx.attr("axes") or (ctx.const(1).reshape(-1) if ctx.const(1) is not None else []))
    axes = _axes_arg(ctx, rank)
    if axes in (RUNTIME, None):
        return default_rule(ctx, "axes computed at runtime")
    it = iter(x)
    ctx.set_out(0, [ctx.fixed(1) if a in axes else next(it) for a in range(rank)])


# -- Pad, Tile --------------------------------------------------------------------------
@register("Pad", cost=free, shape_inputs=(1, 3))
@on_input()
def pad(ctx, x) -> None:
    pads = ctx.list_arg("pads", 1)
    if pads in (None, RUNTIME):
        return default_rule(ctx, "pads computed at runtime")
    axes = list(range(len(x)))
    if ctx.n_inputs() > 3 and ctx.input(3) is not None:
        arr = ctx.const(3)
        if arr is None:
            return default_rule(ctx, "pad axes computed at runtime")
        axes = [norm_axis(a, len(x)) for a in arr.reshape(-1).tolist()]
    n = len(axes)
    out = list(x)
    out_shape = ctx.out_shape(0) or (None,) * len(x)
    for k, a in enumerate(axes):
        if pads[k] or pads[k + n]:
            ctx.freeze(x[a], "padded along this axis")
            out[a] = ctx.fixed(out_shape[a])
    ctx.set_out(0, out)


@register("Tile", cost=free, shape_inputs=(1,))
def tile(ctx) -> None:
    x = ctx.in_dims(0)
    reps = ctx.const(1)
    if x is None or reps is None:
        return default_rule(ctx, "repeats computed at runtime")
    out = []
    for a, var in enumerate(x):
        if int(reps.reshape(-1)[a]) == 1:
            out.append(var)
        else:
            ctx.freeze(var, "tiled along this axis")
            out.append(ctx.fixed(None))
    ctx.set_out(0, out)


# -- Gather -----------------------------------------------------------------------------
def eval_gather(node, ins, shape) -> ShapeVal | None:
    """Elements of a 1-D tensor picked by known indices."""
    data, idx = (ins + [None, None])[:2]
    picks = known_ints(idx)
    if data is None or not data.is_vector() or picks is None or norm_axis(attr_int(node, "axis"), 1) != 0:
        return None
    n = len(data.elems)
    if not all(-n <= k < n for k in picks):
        return None
    return ShapeVal(idx.shape, tuple(data.elems[k] for k in picks))


@register("Gather", cost=free, shape_eval=eval_gather, shape_moves=(0,))
def gather(ctx) -> None:
    data, idx = ctx.in_dims(0), ctx.in_dims(1)
    if data is None or idx is None:
        return default_rule(ctx, "ranks unknown")
    axis = ctx.axis_attr("axis", 0, len(data))
    if not ctx.is_const(0):
        ctx.freeze(data[axis], "gathers positions along this axis")
    ctx.set_out(0, data[:axis] + idx + data[axis + 1:])


# Data movement without a channel rule (their channels freeze): cost nothing.
op("GatherElements", "GatherND", "Constant", "Range", "DepthToSpace", "SpaceToDepth", "ScatterElements",
   "ScatterND", "OneHot", "Trilu", cost=free)
op("ConstantOfShape", cost=free, shape_inputs=(0,))
