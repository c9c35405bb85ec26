"""ONNX Runtime contrib ops (domain com.microsoft) that fusion leaves in transformer
graphs. Bias-activations are elementwise with a per-feature bias; SkipLayerNormalization
is residual Add + bias + LayerNorm over the last axis (inexact over it, like LayerNorm).

EmbedLayerNormalization sums word, position and segment embeddings and normalises the
sum: the tables' feature axis is the hidden width (inexact, like LayerNorm). The fused
attention ops are in `attention.py`.

Costs (other ops per output element): SkipLayerNormalization 6, its simplified form 5,
EmbedLayerNormalization 7, bias-activations (BiasGelu, FastGelu, BiasAdd) 2,
QuickGelu/Gelu 1.
"""

from __future__ import annotations

from onnxprune.passes.rules.costing import per_output_element
from onnxprune.passes.rules.elementwise import broadcast
from onnxprune.passes.rules.registry import default_rule, register

MS = "com.microsoft"


def bias_activation(ctx) -> None:
    """out = act(x + bias): the bias's one axis lines up with x's last axis."""
    broadcast(ctx)


register("BiasGelu", "FastGelu", "BiasAdd", domain=MS, cost=per_output_element(2))(bias_activation)
register("QuickGelu", "Gelu", domain=MS, cost=per_output_element(1))(bias_activation)


def skip_layer_norm(ctx) -> None:
    x = ctx.in_dims(0)
    if x is None:
        return default_rule(ctx, "input rank unknown")
    out = list(x)
    skip = ctx.in_dims(1)
    if skip is not None and len(skip) == len(x):
        out = [ctx.tie(a, b, "skip connection") for a, b in zip(out, skip)]
    for i in range(2, ctx.n_inputs()):  # gamma, beta, bias: one value per feature
        params = ctx.in_dims(i) if ctx.input(i) is not None else None
        if params:
            out[-1] = ctx.tie(out[-1], params[-1], "normalisation parameters")
            ctx.role(i, len(params) - 1, "param")
    ctx.inexact(out[-1], "normalises over this axis: removing channels changes the statistics")
    ctx.tag(out[-1], "normalized")
    ctx.set_out(0, out)
    if len(ctx.node.outputs) > 3 and ctx.node.outputs[3] is not None:
        ctx.set_out(3, out)  # input + skip + bias, before normalisation


register("SkipLayerNormalization", domain=MS, cost=per_output_element(6))(skip_layer_norm)
register("SkipSimplifiedLayerNormalization", domain=MS, cost=per_output_element(5))(skip_layer_norm)


@register("EmbedLayerNormalization", domain=MS, cost=per_output_element(7))
def embed_layer_norm(ctx) -> None:
    """Inputs: ids, segment ids, word / position / segment tables [rows, hidden], gamma,
    beta, mask, position ids. Output 0 (and the optional embedding sum, output 2) is
    [batch, seq, hidden]; output 1 is the mask index (no feature axis)."""
    ids, word = ctx.in_dims(0), ctx.in_dims(2)
    if ids is None or word is None or not ctx.is_const(2):
        return default_rule(ctx, "embedding table is not a constant")
    ctx.source(2, 1)
    ctx.role(2, 1, "param")
    hidden = word[1]
    for i in (3, 4, 5, 6):
        if ctx.input(i) is None:
            continue
        dims = ctx.in_dims(i)
        hidden = ctx.tie(hidden, dims[-1], "embedding sum and its normalisation")
        ctx.role(i, len(dims) - 1, "param")
    ctx.inexact(hidden, "normalises over this axis: removing channels changes the statistics")
    ctx.tag(hidden, "normalized")
    out = list(ids) + [hidden]
    ctx.set_out(0, out)
    if len(ctx.node.outputs) > 2 and ctx.node.outputs[2] is not None:
        ctx.set_out(2, out)
