"""Ops that reinterpret axes: Flatten and Reshape map positions by blocks (a channel
becomes H×W features after Conv→Flatten; hidden becomes heads×head_dim); Expand
broadcasts; Resize keeps the axes it does not resize.

Their rewrites fix the shape constants that slicing weights cannot: Reshape/Expand
targets and Resize sizes, through the shape-value analysis's entries (a literal inside
``Concat(Shape(x)[:1], [8], [-1])`` is rewritten, a runtime read follows by itself).
Reshape, Flatten and Expand cost nothing; Resize one op per output element.
"""

from __future__ import annotations

import numpy as np

from onnxprune.passes.dims import FIXED
from onnxprune.passes.rules.costing import free, per_output_element
from onnxprune.passes.rules.registry import default_rule, on_input, register
from onnxprune.passes.shape_elements import ConstEntry, ShapeEntry, ShapeVal, known_ints


def _owned(ctx, var) -> bool:
    return isinstance(ctx.dims.get(var), np.ndarray)


def merge(ctx, dims: list[int]) -> int:
    """One axis made of several (row-major). Only one of them may be prunable."""
    sizes = [ctx.dims.get_size(v) for v in dims]
    live = [k for k, s in enumerate(sizes) if s != 1]
    if not live:
        return ctx.fixed(1)
    if len(live) == 1:
        return dims[live[0]]
    owned = [k for k in live if ctx.dims.get(dims[k]) is not FIXED]
    total = None if None in sizes else int(np.prod(sizes))
    with_units = [k for k in owned if isinstance(ctx.dims.get(dims[k]), np.ndarray)]
    if len(owned) > 1 and len(with_units) == 1:
        # Pending axes (a literal broadcast, e.g. GQA's Expand of each KV head to its
        # query heads) yield to the axis that already has units: a merged position
        # follows that unit, so a KV head goes with every query head sharing it. When
        # the KV axis is fixed (a frozen cache) the broadcast axis keeps the units
        # instead, and query heads go within each KV group.
        for k in owned:
            if k != with_units[0]:
                ctx.dims.set_owner(dims[k], FIXED)
        owned = with_units
    if not owned:
        return ctx.fixed(total)
    if len(owned) > 1 or total is None:
        for k in owned:
            ctx.freeze(dims[k], "merged with another prunable or unknown-size axis")
        return ctx.fixed(total)
    t = owned[0]
    inner, outer = int(np.prod(sizes[t + 1:])), int(np.prod(sizes[:t]))
    arr = ctx.dims.array(dims[t])
    return ctx.derived(np.tile(np.repeat(arr, inner), outer))


def split_lead(ctx, var: int, lead_size: int) -> int:
    """An axis cut into `lead_size` equal blocks that become the leading axis of the
    reshaped result: each block becomes one unit (a whole head, a whole norm group)."""
    arr = ctx.dims.array(var)
    if arr is None or not (arr >= 0).any():
        return ctx.fixed(lead_size)
    inner = len(arr) // lead_size
    owner = np.empty(lead_size, dtype=np.int64)
    for p in range(lead_size):
        block = arr[p * inner:(p + 1) * inner]
        live = block[block >= 0]
        if len(live) < len(block):
            ctx.units.freeze(live, ctx.why("splits an axis into pieces that are partly fixed"))
        for u in live[1:].tolist():
            ctx.units.union(int(live[0]), u)
        owner[p] = live[0] if len(live) else -1
    # Each unit is now a whole block: an attention head (hidden -> [heads, head_dim])
    # or a norm group; `kind` reports the former as heads.
    ctx.units.tag(owner, "block")
    return ctx.derived(owner)


def align(in_shape, out_shape):
    """Pair runs of input axes with runs of output axes of equal product.

    Size-1 axes are left out (they carry nothing). Returns [(in_axes, out_axes)] or
    None when the shapes cannot be matched statically.
    """
    ii = [a for a, s in enumerate(in_shape) if s != 1]
    oo = [b for b, s in enumerate(out_shape) if s != 1]
    chunks, p, q = [], 0, 0
    while p < len(ii) and q < len(oo):
        si, so = in_shape[ii[p]], out_shape[oo[q]]
        if si is None or so is None:
            if si is None and so is None:
                chunks.append(([ii[p]], [oo[q]]))
                p, q = p + 1, q + 1
                continue
            return None
        ins, outs = [ii[p]], [oo[q]]
        p, q = p + 1, q + 1
        while si != so:
            if si < so:
                if p >= len(ii) or in_shape[ii[p]] is None:
                    return None
                si *= in_shape[ii[p]]
                ins.append(ii[p])
                p += 1
            else:
                if q >= len(oo) or out_shape[oo[q]] is None:
                    return None
                so *= out_shape[oo[q]]
                outs.append(oo[q])
                q += 1
        chunks.append((ins, outs))
    if p < len(ii) or q < len(oo):
        return None
    return chunks


def reshape_dims(ctx, x: list[int], in_shape, out_shape) -> list[int] | None:
    chunks = align(in_shape, out_shape)
    if chunks is None:
        return None
    out = [ctx.fixed(s) for s in out_shape]
    for ins, outs in chunks:
        if len(ins) == 1 and len(outs) == 1:
            out[outs[0]] = x[ins[0]]
        elif len(outs) == 1:
            out[outs[0]] = merge(ctx, [x[a] for a in range(ins[0], ins[-1] + 1)])
        else:
            _regroup(ctx, x, in_shape, out_shape, ins, outs, out)
    return out


def _regroup(ctx, x, in_shape, out_shape, ins, outs, out) -> None:
    """A run of axes re-blocked into several output axes ([C,H,W] -> [G, C/G·H·W] for
    GroupNorm, hidden -> [heads, head_dim], and back). Prunable only when the run's
    leading axis is the only prunable one: its blocks then map to whole slices of the
    leading output axis, and every other output axis keeps its size."""
    owned = [a for a in ins if ctx.dims.get(x[a]) is not FIXED]
    if not owned:
        return
    t, lead = ins[0], outs[0]
    s_t, s_l = in_shape[t], out_shape[lead]
    if owned != [t]:
        for a in owned:
            ctx.freeze(x[a], "reshaped together with other axes in a way that mixes them")
        return
    if s_t % s_l == 0:
        out[lead] = x[t] if s_t == s_l else split_lead(ctx, x[t], s_l)
    elif s_l % s_t == 0:
        out[lead] = ctx.derived(np.repeat(ctx.dims.array(x[t]), s_l // s_t))
    else:
        ctx.freeze(x[t], f"reshaped into blocks of {s_l} that do not divide {s_t}")


@register("Flatten", cost=free)
@on_input()
def flatten(ctx, x) -> None:
    axis = ctx.axis_attr("axis", 1, len(x))
    ctx.set_out(0, [merge(ctx, x[:axis]), merge(ctx, x[axis:])])


def _rewrite_target(rc, smallest_literal: int) -> None:
    """Write the new size of every output axis that shrinks into the shape tensor at
    input 1 (Reshape, Expand), where that size is a literal >= `smallest_literal`
    (Reshape's 0 and -1, Expand's 1 are not sizes and follow by themselves)."""
    out_shape = rc.out_shape(0)
    entries = None
    for b in range(len(out_shape)):
        keep = rc.out_keep(0, b)
        if keep is None:
            continue
        if entries is None:
            rc.privatize(1)  # a target shared with other readers
            entries = rc.entries(1, len(out_shape))
        e = _aligned_entry(entries, b, len(out_shape))
        if isinstance(e, ConstEntry) and e.value >= smallest_literal:
            rc.write_entry(e, int(keep.sum()))


def rewrite_reshape(rc) -> None:
    _rewrite_target(rc, 1)


def eval_reshape(node, ins, shape) -> ShapeVal | None:
    """Elements keep their order; the shape is the output's static one, or the target's."""
    data = ins[0] if ins else None
    if data is None:
        return None
    out = shape(node.outputs[0])
    if out is None or None in out:
        target = known_ints(ins[1] if len(ins) > 1 else None)
        if target is None or target.count(-1) > 1:
            return None
        allowzero = node.attributes.get("allowzero")
        out = [data.shape[k] if t == 0 and not (allowzero and allowzero.value) and k < len(data.shape) else t
               for k, t in enumerate(target)]
        if -1 in out:
            rest = int(np.prod([d for d in out if d != -1]))
            if rest == 0 or len(data.elems) % rest:
                return None
            out[out.index(-1)] = len(data.elems) // rest
    if int(np.prod(out)) != len(data.elems):
        return None
    return ShapeVal(tuple(int(d) for d in out), data.elems)


@register("Reshape", rewrite=rewrite_reshape, cost=free, shape_inputs=(1,), checked_shape_inputs=(1,),
          shape_eval=eval_reshape, shape_moves=(0,))
def reshape(ctx) -> None:
    x = ctx.in_dims(0)
    in_shape, out_shape = ctx.shape(0), ctx.out_shape(0)
    if x is None or in_shape is None or out_shape is None:
        return default_rule(ctx, "shapes unknown")
    out = reshape_dims(ctx, x, in_shape, out_shape)
    if out is None:
        return default_rule(ctx, f"cannot match {list(in_shape)} to {list(out_shape)}")
    entries = ctx.entries(1) or [None] * len(out)
    for b, var in enumerate(out):
        e = entries[b] if b < len(entries) else None
        if isinstance(e, ShapeEntry):
            # Fine when the shape read at runtime is of an axis that loses the same
            # positions (GroupNorm's reshape back to the shape of its input). Else both
            # sides stay: pruning the axis read would change this target behind our back
            # (the Shape rule leaves that check to this one).
            dims = ctx.an.value_dims.get(e.value)
            src = dims[e.axis] if dims is not None and e.axis < len(dims) else None
            if not _owned(ctx, var) and (src is None or not _owned(ctx, src)):
                continue
            same = src is not None and (
                ctx.dims.find(src) == ctx.dims.find(var) or _same_classes(ctx, src, var)
            )
            if not same:
                ctx.freeze(var, f"target size of axis {b} is read from an unrelated shape")
                if src is not None:
                    ctx.freeze(src, f"its size is read at runtime as target size of axis {b}")
        elif not _owned(ctx, var):
            continue
        elif e is None:
            ctx.freeze(var, f"target size of axis {b} is computed at runtime")
        elif isinstance(e, ConstEntry) and e.value == 0 and not ctx.attr("allowzero", 0) and (
            b >= len(x) or ctx.dims.find(x[b]) != ctx.dims.find(var)
        ):
            ctx.freeze(var, f"target 0 copies input axis {b}, which is a different axis")
    ctx.set_out(0, out)


def _same_classes(ctx, a: int, b: int) -> bool:
    ca, cb = ctx.an.classes_of(a), ctx.an.classes_of(b)
    return ca is not None and cb is not None and np.array_equal(ca, cb)


def rewrite_resize(rc) -> None:
    if len(rc.node.inputs) < 4 or rc.node.inputs[3] is None:
        return
    rank = len(rc.in_shape(0))
    entries = None
    for a in range(rank):
        keep = rc.out_keep(0, a)
        if keep is not None:
            # Through the entries, so a literal inside Concat(Shape(x)[:2], [H, W])
            # (F.interpolate(size=...) with a dynamic batch) is rewritten too.
            if entries is None:
                rc.privatize(3)  # sizes shared with other readers
                entries = rc.entries(3, rank)
            if isinstance(entries[a], ConstEntry):
                rc.write_entry(entries[a], int(keep.sum()))


def resize(ctx) -> None:
    """Axes that keep their size pass through; resized axes are fixed."""
    x = ctx.in_dims(0)
    in_shape, out_shape = ctx.shape(0), ctx.out_shape(0)
    if x is None or in_shape is None or out_shape is None:
        return default_rule(ctx, "shapes unknown")
    if ctx.attr("axes") is not None:
        return default_rule(ctx, "Resize with axes")
    out = []
    for a, var in enumerate(x):
        if in_shape[a] is not None and in_shape[a] == out_shape[a]:
            out.append(var)
        else:
            ctx.freeze(var, "resized along this axis")
            out.append(ctx.fixed(out_shape[a]))
    if ctx.n_inputs() > 3 and ctx.input(3) is not None and not ctx.is_const(3):
        # Sizes assembled at runtime: an entry read from Shape(x) follows x, one read
        # from another tensor's axis ties it (as in Expand), a literal is rewritten.
        entries = ctx.entries(3) or [None] * len(out)
        for a, var in enumerate(out):
            e = entries[a] if a < len(entries) else None
            if isinstance(e, ShapeEntry) and e.value is ctx.input(0) and e.axis == a:
                continue
            src = _shape_entry_var(ctx, e)
            if src is not None and ctx.dims.get_size(src) == ctx.dims.get_size(var):
                out[a] = ctx.tie(var, src, "output size read at runtime")
            elif not isinstance(e, ConstEntry):
                ctx.freeze(var, "output sizes computed at runtime")
                if src is not None:
                    ctx.freeze(src, f"its size is read at runtime as output size of axis {a}")
    ctx.set_out(0, out)


def _aligned_entry(entries: list, b: int, rank: int):
    """The target entry for output axis `b`: Expand's shape is right-aligned with the
    output (a [8,6,6] target on a rank-4 input sets axes 1..3), so index from the end."""
    k = b - (rank - len(entries))
    return entries[k] if 0 <= k < len(entries) else None


def rewrite_expand(rc) -> None:
    _rewrite_target(rc, 2)


@register("Expand", rewrite=rewrite_expand, cost=free, shape_inputs=(1,), checked_shape_inputs=(1,))
def expand(ctx) -> None:
    x = ctx.in_dims(0)
    out_shape = ctx.out_shape(0)
    if x is None or out_shape is None:
        return default_rule(ctx, "shapes unknown")
    rank = len(out_shape)
    entries = ctx.entries(1) or [None] * rank
    out = []
    for b in range(rank):
        k = b - (rank - len(x))
        size = out_shape[b]
        e = _aligned_entry(entries, b, rank)
        # A target size read at runtime from another tensor's axis (Shape(a)) follows
        # that axis's pruning: the output axis must be pruned like it (the Shape rule
        # leaves that check to this one).
        src = _shape_entry_var(ctx, e) if size not in (None, 1) else None
        if k >= 0 and ctx.dims.get_size(x[k]) == size:
            out.append(x[k] if src is None else ctx.tie(x[k], src, "expanded to a shape read at runtime"))
        elif k >= 0 and ctx.dims.get_size(x[k]) != 1:
            ctx.freeze(x[k], "expanded along this axis")
            out.append(ctx.fixed(size))
        elif src is not None:
            out.append(src)
        else:
            # A broadcast axis: prunable only if its size is a literal we can rewrite.
            literal = isinstance(e, ConstEntry) and e.value == size and size not in (None, 1)
            out.append(ctx.dims.new(size) if literal else ctx.fixed(size))
    ctx.set_out(0, out)


def _shape_entry_var(ctx, e) -> int | None:
    """The variable of the axis a ShapeEntry reads, when that axis is prunable."""
    if not isinstance(e, ShapeEntry):
        return None
    dims = ctx.an.value_dims.get(e.value)
    if dims is None or e.axis >= len(dims) or not _owned(ctx, dims[e.axis]):
        return None
    return dims[e.axis]


register("Resize", rewrite=rewrite_resize, cost=per_output_element(1), shape_inputs=(1, 2, 3),
         checked_shape_inputs=(3,))(resize)
register("Upsample", rewrite=rewrite_resize, cost=per_output_element(1))(resize)
