"""Normalisations. Per-channel ones (BatchNorm, InstanceNorm) are exact to prune;
GroupNorm prunes whole groups (also exact); LayerNorm/RMSNorm over a pruned axis
change their statistics, so those channels are marked inexact (still prunable —
transformer hidden width depends on it — but never claimed to be lossless).
"""

from __future__ import annotations

from onnxprune.passes.rules import default_rule, register
from onnxprune.passes.rules.linear import union_blocks


@register("BatchNormalization")
def batch_norm(ctx) -> None:
    x = ctx.in_dims(0)
    if x is None or len(x) < 2:
        return default_rule(ctx, "input rank unknown")
    c = x[1]
    for i, role in ((1, "bn_scale"), (2, "param"), (3, "stat"), (4, "stat")):
        if ctx.input(i) is not None:
            c = ctx.tie(c, ctx.in_dims(i)[0], "per-channel parameters")
            ctx.role(i, 0, role)
    ctx.set_out(0, [x[0], c] + x[2:])
    for j in (1, 2):  # training-mode running statistics outputs
        if j < len(ctx.node.outputs):
            ctx.set_out(j, [c])


@register("InstanceNormalization")
def instance_norm(ctx) -> None:
    x = ctx.in_dims(0)
    if x is None or len(x) < 2:
        return default_rule(ctx, "input rank unknown")
    c = x[1]
    for i in (1, 2):
        c = ctx.tie(c, ctx.in_dims(i)[0], "per-channel parameters")
        ctx.role(i, 0, "param")
    ctx.set_out(0, [x[0], c] + x[2:])


def rewrite_num_groups(rc) -> None:
    keep = rc.in_keep(0, 1)
    if keep is None:
        return
    groups = rc.attr("num_groups")
    rc.set_attr_int("num_groups", groups * int(keep.sum()) // len(keep))


@register("GroupNormalization", rewrite=rewrite_num_groups)
def group_norm(ctx) -> None:
    x = ctx.in_dims(0)
    if x is None or len(x) < 2:
        return default_rule(ctx, "input rank unknown")
    groups = ctx.attr("num_groups")
    arr = ctx.dims.array(x[1])
    if arr is None:
        return default_rule(ctx, "channel count unknown")
    union_blocks(ctx, arr, arr[:0], groups)
    per_group = len(arr) // groups
    for i in (1, 2):
        var = ctx.in_dims(i)[0]
        if ctx.dims.get_size(var) == len(arr):  # opset 21: one value per channel
            ctx.tie(x[1], var, "per-channel parameters")
        elif ctx.dims.get(var) is None:  # opset 18: one value per group
            ctx.dims.set_owner(var, arr[::per_group].copy())
        ctx.role(i, 0, "param")
    ctx.set_out(0, x)


@register("LayerNormalization", "RMSNormalization")
def layer_norm(ctx) -> None:
    x = ctx.in_dims(0)
    if x is None:
        return default_rule(ctx, "input rank unknown")
    axis = ctx.attr("axis", -1)
    axis = axis + len(x) if axis < 0 else axis
    out = list(x)
    for i in (1, 2):
        params = ctx.in_dims(i) if ctx.input(i) is not None else None
        for k, var in enumerate(params or []):
            a = k + len(x) - len(params)
            if ctx.dims.get_size(var) != 1:
                out[a] = ctx.tie(out[a], var, "normalisation parameters")
                ctx.role(i, k, "param")
    for a in range(axis, len(x)):
        ctx.inexact(out[a], "normalises over this axis: removing channels changes the statistics")
        ctx.tag(out[a], "normalized")
    ctx.set_out(0, out)
