"""Ops that contract over a feature axis and create new features from a weight:
Conv, ConvTranspose, Gemm, MatMul.

The weight's output-feature axis is where units are born (a *source*); its
input-feature axis is tied to the activation it reads. Grouped convs prune whole
groups: every input and output channel of one group becomes one unit, which also
covers depthwise convs (one channel per group) and channel multipliers.

Their MACs (the papers' convention, biases not counted):
    Conv           N·H_out·W_out·(C_in/g)·C_out·∏k   (any spatial rank)
    ConvTranspose  N·H_in·W_in·C_in·(C_out/g)·∏k
    Gemm           M·N·K
    MatMul         batch·M·N·K, batch dims broadcast, 1-D operands promoted per spec
Einsum and ORT's FusedConv/FusedGemm/FusedMatMul are weighted too (a residual region
needs one) but have no channel or cost rule: their channels freeze.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from onnxprune.passes.rules.costing import need
from onnxprune.passes.rules.registry import WeightSlot, default_rule, op, register


def union_blocks(ctx, in_arr, out_arr, groups: int) -> None:
    """Make input block j and output block j of a grouped op one unit."""
    cin_g, cout_g = len(in_arr) // groups, len(out_arr) // groups
    for j in range(groups):
        block = np.concatenate(
            [in_arr[j * cin_g:(j + 1) * cin_g], out_arr[j * cout_g:(j + 1) * cout_g]]
        )
        live = block[block >= 0]
        if len(live) < len(block):
            ctx.units.freeze(live, ctx.why(f"group {j} reads channels that cannot be pruned"))
        for u in live[1:].tolist():
            ctx.units.union(int(live[0]), u)


def rewrite_group_attr(rc) -> None:
    """Conv/ConvTranspose: `group` counts the groups left."""
    groups = rc.attr("group", 1)
    if groups == 1:
        return
    keep = rc.in_keep(0, 1)
    if keep is None:
        return
    cin = len(keep)
    new_groups = groups * int(keep.sum()) // cin
    rc.set_attr_int("group", new_groups)


# -- costs and weight layouts ---------------------------------------------------------
def conv_cost(node, shape_of):
    # W is [C_out, C_in/g, *k]: every output element costs C_in/g·∏k MACs.
    out = need(shape_of, node.outputs[0])
    weight = need(shape_of, node.inputs[1])
    return math.prod(out) * math.prod(weight[1:]), 0


def conv_transpose_cost(node, shape_of):
    # W is [C_in, C_out/g, *k]: every input element is scattered to C_out/g·∏k outputs.
    x = need(shape_of, node.inputs[0])
    weight = need(shape_of, node.inputs[1])
    return math.prod(x) * math.prod(weight[1:]), 0


def gemm_cost(node, shape_of):
    a = need(shape_of, node.inputs[0])
    b = need(shape_of, node.inputs[1])
    m, k = (a[1], a[0]) if node.attributes.get_int("transA", 0) else (a[0], a[1])
    n = b[0] if node.attributes.get_int("transB", 0) else b[1]
    return m * n * k, 0


def matmul_cost(node, shape_of):
    a = need(shape_of, node.inputs[0])
    b = need(shape_of, node.inputs[1])
    # numpy semantics: a 1-D left operand is a row, a 1-D right operand a column.
    a = (1, *a) if len(a) == 1 else a
    b = (*b, 1) if len(b) == 1 else b
    batch = np.broadcast_shapes(a[:-2], b[:-2])
    return math.prod(batch) * a[-2] * b[-1] * a[-1], 0


def conv_weights(node):
    return {1: WeightSlot(out_axis=0, in_axis=1), 2: WeightSlot(out_axis=0)}


def conv_transpose_weights(node):
    return {1: WeightSlot(out_axis=1, in_axis=0), 2: WeightSlot(out_axis=0)}


def gemm_weights(node):
    trans_b = node.attributes.get_int("transB", 0)
    return {1: WeightSlot(out_axis=0 if trans_b else 1, in_axis=1 if trans_b else 0), 2: WeightSlot(out_axis=-1)}


def matmul_weights(node):
    return {1: WeightSlot(out_axis=-1, in_axis=-2)}


# -- channel rules ----------------------------------------------------------------------
def _with_constant_weight(fn):
    """A Conv/ConvTranspose rule, called as ``rule(ctx, x, w, groups)`` when the weight
    is a constant of the input's rank (else every axis the node reads freezes)."""

    @functools.wraps(fn)
    def rule(ctx) -> None:
        x, w = ctx.in_dims(0), ctx.in_dims(1)
        if x is None or w is None or not ctx.is_weight(1) or len(x) != len(w):
            return default_rule(ctx, "weight is not a constant (or ranks unknown)")
        fn(ctx, x, w, ctx.attr("group", 1))

    return rule


def _features_from(ctx, axis: int) -> None:
    """Weight axis `axis` creates the output features (units are born there)."""
    ctx.source(1, axis)
    ctx.role(1, axis, "out")


def _reads(ctx, x, w, axis: int) -> None:
    """Weight axis `axis` reads the input's channels."""
    ctx.tie(x[1], w[axis], "input channels")
    ctx.role(1, axis, "in")


def _conv_output(ctx, x, out_c) -> None:
    """The bias (one value per output channel) and the output [N, C_out, spatial...].
    The kernel slides along the spatial axes: channels moved onto one (a Transpose
    before the conv) cannot go without changing every window."""
    for var in x[2:]:
        ctx.freeze(var, "a kernel slides along this axis")
    if ctx.input(2) is not None:
        out_c = ctx.tie(out_c, ctx.in_dims(2)[0], "bias")
        ctx.role(2, 0, "bias")
    out_shape = ctx.out_shape(0) or (None,) * len(x)
    ctx.set_out(0, [x[0], out_c] + [ctx.fixed(s) for s in out_shape[2:]])


@register("Conv", rewrite=rewrite_group_attr, cost=conv_cost, weights=conv_weights, weighted=True)
@_with_constant_weight
def conv(ctx, x, w, groups) -> None:
    """W is [C_out, C_in/g, k...]."""
    _features_from(ctx, 0)
    if groups == 1:
        _reads(ctx, x, w, 1)
    else:
        in_arr = ctx.dims.array(x[1])
        if in_arr is None:
            ctx.freeze(w[0], "grouped conv input width unknown")
        else:
            union_blocks(ctx, in_arr, ctx.dims.array(w[0]), groups)
        ctx.freeze(w[1], "channels within a group")  # never sliced: whole groups go
    _conv_output(ctx, x, w[0])


@register("ConvTranspose", rewrite=rewrite_group_attr, cost=conv_transpose_cost, weights=conv_transpose_weights,
          weighted=True)
@_with_constant_weight
def conv_transpose(ctx, x, w, groups) -> None:
    """W is [C_in, C_out/g, k...]."""
    _reads(ctx, x, w, 0)
    if groups == 1:
        _features_from(ctx, 1)
        return _conv_output(ctx, x, w[1])
    # Output channel o belongs to group o // (C_out/g): its weight column is shared
    # in shape by all groups, so only whole groups can go.
    cout = groups * ctx.dims.get_size(w[1])
    src = {"tensor": ctx.input(1).name, "axis": 1, "node": ctx.label, "grouped": groups}
    out_arr = ctx.units.new(cout, src)
    in_arr = ctx.dims.array(x[1])
    if in_arr is None:
        ctx.units.freeze(out_arr, ctx.why("grouped input width unknown"))
    else:
        union_blocks(ctx, in_arr, out_arr, groups)
    ctx.freeze(w[1], "channels within a group")
    _conv_output(ctx, x, ctx.derived(out_arr))


@register("Gemm", cost=gemm_cost, weights=gemm_weights, weighted=True)
def gemm(ctx) -> None:
    a, b = ctx.in_dims(0), ctx.in_dims(1)
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        return default_rule(ctx, "operand ranks unknown")
    ta, tb = ctx.attr("transA", 0), ctx.attr("transB", 0)
    a_m, a_k = (a[1], a[0]) if ta else (a[0], a[1])
    b_k, b_n = (b[1], b[0]) if tb else (b[0], b[1])
    ctx.tie(a_k, b_k, "contracted features")
    ctx.role(1, 1 if tb else 0, "in")
    ctx.source(1, 0 if tb else 1)
    ctx.role(1, 0 if tb else 1, "out")
    if ctx.is_weight(0):
        # A weight on the left (Gemm(W, x)): its rows create features and its columns
        # read them. Tag both like B's, or importance sees no weight for these groups.
        ctx.source(0, 1 if ta else 0)
        ctx.role(0, 1 if ta else 0, "out")
        ctx.role(0, 0 if ta else 1, "in")
    out = [a_m, b_n]
    c = ctx.in_dims(2) if ctx.input(2) is not None else None
    for k, var in enumerate(c or []):
        axis = k + 2 - len(c)
        if ctx.dims.get_size(var) != 1:
            out[axis] = ctx.tie(out[axis], var, "bias")
            ctx.role(2, k, "bias")
    ctx.set_out(0, out)


@register("MatMul", cost=matmul_cost, weights=matmul_weights, weighted=True)
def matmul(ctx) -> None:
    a, b = ctx.in_dims(0), ctx.in_dims(1)
    if a is None or b is None:
        return default_rule(ctx, "operand ranks unknown")
    a_m = a[-2] if len(a) >= 2 else None
    b_n = b[-1] if len(b) >= 2 else None
    b_k = b[-2] if len(b) >= 2 else b[0]
    k = ctx.tie(a[-1], b_k, "contracted features")
    if not ctx.is_weight(0) and not ctx.is_weight(1):
        # q·kᵀ: both sides are computed, so no weight downstream can make the removed
        # terms vanish; the product over fewer features is a different product.
        ctx.inexact(k, "contracted between two computed tensors")
    if ctx.is_weight(1) and b_n is not None:
        ctx.source(1, len(b) - 1)
        ctx.role(1, len(b) - 2, "in")
        ctx.role(1, len(b) - 1, "out")
    if ctx.is_weight(0) and a_m is not None:
        ctx.source(0, len(a) - 2)
        ctx.role(0, len(a) - 1, "in")
        ctx.role(0, len(a) - 2, "out")
    out = _batch_axes(ctx, a[:-2], b[:-2]) + ([a_m] if a_m is not None else []) + ([b_n] if b_n is not None else [])
    ctx.set_out(0, out)


def _batch_axes(ctx, a_batch, b_batch) -> list[int]:
    """MatMul's batch axes broadcast like an elementwise op."""
    n = max(len(a_batch), len(b_batch))
    batch = []
    for axis in range(n):
        cands = []
        for dims in (a_batch, b_batch):
            k = axis - (n - len(dims))
            if k >= 0 and ctx.dims.get_size(dims[k]) != 1:
                cands.append(dims[k])
        if not cands:
            batch.append(ctx.fixed(1))
        elif len(cands) == 1:
            batch.append(cands[0])
        else:
            for var in cands:  # blocks batched through q·kᵀ / p·v are heads
                ctx.tag(var, "attention")
            batch.append(ctx.tie(cands[0], cands[1], "batch axes"))
    return batch


op("Einsum", weighted=True)
op("FusedMatMul", "FusedConv", "FusedGemm", domain="com.microsoft", weighted=True)
