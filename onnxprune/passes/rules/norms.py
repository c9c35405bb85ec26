"""Normalisations. Per-channel ones (BatchNorm, InstanceNorm) are exact to prune;
GroupNorm prunes whole groups (also exact); LayerNorm/RMSNorm over a pruned axis
change their statistics, so those channels are marked inexact (still prunable —
transformer hidden width depends on it — but never claimed to be lossless).

MeanVarianceNormalization normalises per channel by default (exact), over the channels
when its `axes` say so (inexact).

Costs (other ops per output element): BatchNormalization 2 (inference form: a folded
scale and shift); Instance/Layer/GroupNormalization and MeanVarianceNormalization 5
(mean, variance, normalise, scale, shift); RMSNormalization 4.
"""

from __future__ import annotations

from onnxprune.passes.rules.costing import per_output_element
from onnxprune.passes.rules.linear import union_blocks
from onnxprune.passes.rules.registry import default_rule, on_input, register


def _normalises_spatial_axes(ctx, x) -> None:
    """Instance and group norms take their statistics over the spatial axes too."""
    for var in x[2:]:
        ctx.inexact(var, "normalises over this axis: removing positions changes the statistics")


def _per_channel(ctx, x, roles) -> int:
    """Tie each present parameter input (index, role) to the channel axis x[1]."""
    c = x[1]
    for i, role in roles:
        if ctx.input(i) is not None:
            c = ctx.tie(c, ctx.in_dims(i)[0], "per-channel parameters")
            ctx.role(i, 0, role)
    return c


@register("BatchNormalization", cost=per_output_element(2), keeps_shape=True)
@on_input(min_rank=2)
def batch_norm(ctx, x) -> None:
    c = _per_channel(ctx, x, ((1, "bn_scale"), (2, "bias"), (3, "stat"), (4, "stat")))
    ctx.set_out(0, [x[0], c] + x[2:])
    for j in (1, 2):  # training-mode running statistics outputs
        if j < len(ctx.node.outputs):
            ctx.set_out(j, [c])


@register("InstanceNormalization", cost=per_output_element(5), keeps_shape=True)
@on_input(min_rank=2)
def instance_norm(ctx, x) -> None:
    _normalises_spatial_axes(ctx, x)
    c = _per_channel(ctx, x, ((1, "param"), (2, "bias")))
    ctx.set_out(0, [x[0], c] + x[2:])


def rewrite_num_groups(rc) -> None:
    keep = rc.in_keep(0, 1)
    if keep is None:
        return
    groups = rc.attr("num_groups")
    rc.set_attr_int("num_groups", groups * int(keep.sum()) // len(keep))


@register("GroupNormalization", rewrite=rewrite_num_groups, cost=per_output_element(5), keeps_shape=True)
@on_input(min_rank=2)
def group_norm(ctx, x) -> None:
    _normalises_spatial_axes(ctx, x)
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


@on_input()
def layer_norm(ctx, x) -> None:
    axis = ctx.axis_attr("axis", -1, len(x))
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


register("LayerNormalization", cost=per_output_element(5), keeps_shape=True)(layer_norm)
register("RMSNormalization", cost=per_output_element(4))(layer_norm)


@register("MeanVarianceNormalization", cost=per_output_element(5), keeps_shape=True)
@on_input()
def mean_variance_norm(ctx, x) -> None:
    """(x - mean) / std over `axes` (default N, H, W): per channel, so exact, unless the
    channel axis is among them."""
    for a in ctx.attr("axes", [0, 2, 3]):
        var = x[a + len(x) if a < 0 else a]
        ctx.inexact(var, "normalises over this axis: removing channels changes the statistics")
        ctx.tag(var, "normalized")
    ctx.set_out(0, x)
