"""Ops that move, cut, join or reinterpret axes without arithmetic.

Concat/Split/Slice map positions by offset; Flatten and Reshape by blocks (a channel
becomes H×W features after Conv→Flatten; hidden becomes heads×head_dim); Transpose by
permutation. Their rewrites fix the shape constants that slicing weights cannot:
Split sizes, Slice bounds, Reshape/Expand targets, Resize sizes.
"""

from __future__ import annotations

import numpy as np

from onnxprune.passes.dims import FIXED
from onnxprune.passes.rules import default_rule, register
from onnxprune.passes.shape_tensors import (
    ConstEntry,
    ShapeEntry,
    const_slice,
    entries_of_input,
    privatize,
)

BIG = 2**62  # Slice bounds at or beyond this mean "to the end"


def _owned(ctx, var) -> bool:
    return isinstance(ctx.dims.get(var), np.ndarray)


def _norm_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


# -- Concat ---------------------------------------------------------------------
@register("Concat")
def concat(ctx) -> None:
    ins = [ctx.in_dims(i) for i in range(ctx.n_inputs())]
    if any(d is None for d in ins) or len({len(d) for d in ins}) != 1:
        return default_rule(ctx, "operand ranks unknown")
    rank = len(ins[0])
    axis = _norm_axis(ctx.attr("axis"), rank)
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
    sizes = ctx.attr("split")
    if sizes is None and ctx.n_inputs() > 1 and ctx.input(1) is not None:
        arr = ctx.const(1)
        if arr is None:
            return None
        sizes = arr.reshape(-1).tolist()
    if sizes is None:
        n = ctx.attr("num_outputs", len(ctx.node.outputs))
        chunk = -(-size // n)  # opset 18: the last chunk may be smaller
        sizes = [min(chunk, size - k * chunk) for k in range(n)]
    return [int(s) for s in sizes]


def rewrite_split(rc) -> None:
    rank = len(rc.in_shape(0))
    axis = _norm_axis(rc.attr("axis", 0), rank)
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


@register("Split", rewrite=rewrite_split)
def split(ctx) -> None:
    x = ctx.in_dims(0)
    if x is None:
        return default_rule(ctx, "input rank unknown")
    axis = _norm_axis(ctx.attr("axis", 0), len(x))
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
    return starts, ends, [_norm_axis(a, rank) for a in axes], steps


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


@register("Slice", rewrite=rewrite_slice)
def slice_(ctx) -> None:
    x = ctx.in_dims(0)
    if x is None:
        return default_rule(ctx, "input rank unknown")
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


# -- Flatten and Reshape ----------------------------------------------------------
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


@register("Flatten")
def flatten(ctx) -> None:
    x = ctx.in_dims(0)
    if x is None:
        return default_rule(ctx, "input rank unknown")
    axis = _norm_axis(ctx.attr("axis", 1), len(x))
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
            privatize(rc.graph, rc.node, 1, rc.an.shape_of)  # a target shared with other readers
            entries = rc.entries(1, len(out_shape))
        e = _aligned_entry(entries, b, len(out_shape))
        if isinstance(e, ConstEntry) and e.value >= smallest_literal:
            rc.write_entry(e, int(keep.sum()))


def rewrite_reshape(rc) -> None:
    _rewrite_target(rc, 1)


@register("Reshape", rewrite=rewrite_reshape)
def reshape(ctx) -> None:
    x = ctx.in_dims(0)
    in_shape, out_shape = ctx.shape(0), ctx.out_shape(0)
    if x is None or in_shape is None or out_shape is None:
        return default_rule(ctx, "shapes unknown")
    out = reshape_dims(ctx, x, in_shape, out_shape)
    if out is None:
        return default_rule(ctx, f"cannot match {list(in_shape)} to {list(out_shape)}")
    entries = entries_of_input(ctx.node, 1, ctx.an.shape_of) or [None] * len(out)
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


# -- Transpose, Squeeze, Unsqueeze --------------------------------------------------
@register("Transpose")
def transpose(ctx) -> None:
    x = ctx.in_dims(0)
    if x is None:
        return default_rule(ctx, "input rank unknown")
    perm = ctx.attr("perm", list(range(len(x)))[::-1])
    ctx.set_out(0, [x[p] for p in perm])


def _axes_arg(ctx, rank: int):
    axes = ctx.attr("axes")
    if axes is None and ctx.n_inputs() > 1 and ctx.input(1) is not None:
        arr = ctx.const(1)
        axes = None if arr is None else arr.reshape(-1).tolist()
        if axes is None:
            return "runtime"
    return None if axes is None else [_norm_axis(a, rank) for a in axes]


@register("Squeeze")
def squeeze(ctx) -> None:
    x = ctx.in_dims(0)
    if x is None:
        return default_rule(ctx, "input rank unknown")
    axes = _axes_arg(ctx, len(x))
    if axes == "runtime":
        return default_rule(ctx, "axes computed at runtime")
    if axes is None:
        axes = [a for a, v in enumerate(x) if ctx.dims.get_size(v) == 1]
    ctx.set_out(0, [v for a, v in enumerate(x) if a not in axes])


@register("Unsqueeze")
def unsqueeze(ctx) -> None:
    x = ctx.in_dims(0)
    if x is None:
        return default_rule(ctx, "input rank unknown")
    rank = len(x) + len(ctx.attr("axes") or (ctx.const(1).reshape(-1) if ctx.const(1) is not None else []))
    axes = _axes_arg(ctx, rank)
    if axes == "runtime" or axes is None:
        return default_rule(ctx, "axes computed at runtime")
    it = iter(x)
    ctx.set_out(0, [ctx.fixed(1) if a in axes else next(it) for a in range(rank)])


# -- Pad, Resize, Tile, Expand -------------------------------------------------------
@register("Pad")
def pad(ctx) -> None:
    x = ctx.in_dims(0)
    if x is None:
        return default_rule(ctx, "input rank unknown")
    pads = ctx.attr("pads")
    if pads is None:
        arr = ctx.const(1)
        if arr is None:
            return default_rule(ctx, "pads computed at runtime")
        pads = arr.reshape(-1).tolist()
    axes = list(range(len(x)))
    if ctx.n_inputs() > 3 and ctx.input(3) is not None:
        arr = ctx.const(3)
        if arr is None:
            return default_rule(ctx, "pad axes computed at runtime")
        axes = [_norm_axis(a, len(x)) for a in arr.reshape(-1).tolist()]
    n = len(axes)
    out = list(x)
    out_shape = ctx.out_shape(0) or (None,) * len(x)
    for k, a in enumerate(axes):
        if pads[k] or pads[k + n]:
            ctx.freeze(x[a], "padded along this axis")
            out[a] = ctx.fixed(out_shape[a])
    ctx.set_out(0, out)


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
                privatize(rc.graph, rc.node, 3, rc.an.shape_of)  # sizes shared with other readers
                entries = rc.entries(3, rank)
            if isinstance(entries[a], ConstEntry):
                rc.write_entry(entries[a], int(keep.sum()))


@register("Resize", "Upsample", rewrite=rewrite_resize)
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
        entries = entries_of_input(ctx.node, 3, ctx.an.shape_of) or [None] * len(out)
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


@register("Tile")
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


def _aligned_entry(entries: list, b: int, rank: int):
    """The target entry for output axis `b`: Expand's shape is right-aligned with the
    output (a [8,6,6] target on a rank-4 input sets axes 1..3), so index from the end."""
    k = b - (rank - len(entries))
    return entries[k] if 0 <= k < len(entries) else None


def rewrite_expand(rc) -> None:
    _rewrite_target(rc, 2)


@register("Expand", rewrite=rewrite_expand)
def expand(ctx) -> None:
    x = ctx.in_dims(0)
    out_shape = ctx.out_shape(0)
    if x is None or out_shape is None:
        return default_rule(ctx, "shapes unknown")
    rank = len(out_shape)
    entries = entries_of_input(ctx.node, 1, ctx.an.shape_of) or [None] * rank
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


# -- Gather and shape queries -------------------------------------------------------
@register("Gather")
def gather(ctx) -> None:
    data, idx = ctx.in_dims(0), ctx.in_dims(1)
    if data is None or idx is None:
        return default_rule(ctx, "ranks unknown")
    axis = _norm_axis(ctx.attr("axis", 0), len(data))
    if not ctx.is_const(0):
        ctx.freeze(data[axis], "gathers positions along this axis")
    ctx.set_out(0, data[:axis] + idx + data[axis + 1:])


@register("Shape", "Size")
def shape_query(ctx) -> None:
    """Reading a shape couples nothing by itself, but a prunable axis whose size is
    read at runtime changes whatever is computed from it. Reshape/Expand targets and
    Resize sizes check the sizes they read (their rules tie or freeze both sides); any other reader
    (ConstantOfShape, Range, arithmetic, a graph output) freezes the axis. Sizes of
    static axes were folded into constants before the analysis, so this sees only
    shape tensors that also carry a symbolic dim (dynamic batch)."""
    x = ctx.in_dims(0)
    if x is None:
        return
    if ctx.node.op_type == "Size":
        elems = [frozenset(range(len(x)))]
    else:
        start, end = ctx.attr("start"), ctx.attr("end")
        elems = [frozenset([a]) for a in range(len(x))[slice(start, end)]]
    # Pending axes count too: they may be tied to a prunable one later in the walk.
    if all(ctx.dims.get(x[a]) is FIXED for el in elems for a in el):
        return
    for axes, reader in _unchecked_reads(ctx, ctx.input(0), ctx.node.outputs[0], elems, 0):
        for a in sorted(axes):
            ctx.freeze(x[a], f"the size of axis {a} is read at runtime by {reader}")


SHAPE_PASS = ("Unsqueeze", "Squeeze", "Cast", "Identity")


def _attr_int(node, name: str, default: int = 0) -> int:
    a = node.attributes.get(name)
    return default if a is None else int(a.value)


def _unchecked_reads(ctx, source, value, elems: list, depth: int) -> list[tuple[frozenset, str]]:
    """Where the shape elements in `value` (one set of `source` axes per element) reach
    a reader no rule checks: [(axes, reader description)]. Follows the 1-D shape
    arithmetic that `entries_of_input` traces (Gather/Slice by constants, Concat,
    Unsqueeze/Squeeze/Cast/Identity)."""
    from onnxprune.passes.constants import const_array

    every = frozenset().union(*elems) if elems else frozenset()
    found = []
    if value.is_graph_output():
        found.append((every, f"graph output '{value.name}'"))
    for use in value.uses():
        node, idx = use.node, use.idx
        label = f"{node.op_type} '{node.name}'"
        nxt = None
        if (node.op_type, idx) in (("Reshape", 1), ("Expand", 1), ("Resize", 3)):
            # Checked by those rules, for each element they can trace back to `source`.
            entries = entries_of_input(node, idx, ctx.an.shape_of) or []
            traced = {e.axis for e in entries if isinstance(e, ShapeEntry) and e.value is source}
            if every - traced:
                found.append((every - traced, label))
            continue
        if depth < 16 and node.op_type in SHAPE_PASS and idx == 0:
            nxt = elems
        elif depth < 16 and node.op_type == "Gather" and idx == 0 and elems and _attr_int(node, "axis") == 0:
            k = const_array(node.inputs[1])
            if k is not None and all(-len(elems) <= int(i) < len(elems) for i in k.reshape(-1)):
                nxt = [elems[int(i)] for i in k.reshape(-1)]
        elif depth < 16 and node.op_type == "Slice" and idx == 0 and const_slice(node) is not None:
            nxt = elems[const_slice(node)]
        elif depth < 16 and node.op_type == "Concat":
            lengths = []
            for v in node.inputs:
                shp = ctx.an.shape_of(v)
                lengths.append(None if shp is None or len(shp) != 1 else shp[0])
            if None not in lengths:
                nxt = [frozenset()] * sum(lengths)
                off = sum(lengths[:idx])
                nxt[off:off + len(elems)] = elems
        if nxt is None:
            found.append((every, label))
        elif node.outputs and node.outputs[0] is not None:
            found.extend(_unchecked_reads(ctx, source, node.outputs[0], nxt, depth + 1))
    return found
