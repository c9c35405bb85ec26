"""Fused attention ops: heads are the units, whole heads go.

- com.microsoft `Attention`: one packed weight [hidden, q+k+v]; head h is columns
  h·d of each of the Q, K and V blocks. Units are born at the weight's output axis and
  each head's Q, K and V columns are unioned; the output's features are V's columns.
- com.microsoft `MultiHeadAttention` (3-D query/key/value, projections done upstream):
  head h of the query, key and value features is unioned; an optional packed bias and
  the past/present cache follow.
- com.microsoft `GroupQueryAttention` (separate query/key/value): KV head g goes with
  query heads g·r .. g·r+r−1 (r = num_heads / kv_num_heads); the past/present cache
  head axis follows the KV heads.
- ONNX `Attention` (opset 23): 3-D inputs with q_num_heads/kv_num_heads like GQA, or
  4-D [batch, heads, seq, head_size] inputs, where the head axis is a plain axis.

Removing a head is exact: softmax runs per head, so the other heads' outputs do not
change. Rewrites set `num_heads` (and `kv_num_heads`, `q_num_heads`,
`qkv_hidden_sizes`) to what is left. The past/present inputs and outputs are each op's
`cache` slots.

MACs: batch·S·T·(q features + output features), the q·kᵀ and softmax·V products, with
T the keys including the cache; com.microsoft Attention adds its packed projection
batch·S·hidden·(q+k+v).

What this does not do: prune within a head (head_size stays), prune the packed-QKV
forms (query carrying K and V, or 5-D packed inputs), or prune heads of a
com.microsoft `Attention` with a past state, or any op given a per-head attention bias
or asked for its attention scores — those freeze their heads with the reason.
"""

from __future__ import annotations

import numpy as np

from onnxprune.passes.rules.costing import need, optional_input
from onnxprune.passes.rules.registry import WeightSlot, default_rule, register

MS = "com.microsoft"


# -- costs -----------------------------------------------------------------------------
def _past_len(node, shape_of, index: int, axis: int) -> int:
    """Cached positions a fused attention adds to the keys (0 without a cache input)."""
    past = optional_input(node, index)
    return need(shape_of, past)[axis] if past is not None else 0


def _scores_and_mix(batch: int, s: int, t: int, q_feats: int, y_feats: int) -> int:
    # q·kᵀ costs S·T·head_size per head (summed over heads: the query features), and
    # the softmax-weighted sum of values S·T·head_size_v per head (the output features).
    return batch * s * t * (q_feats + y_feats)


def ms_attention_cost(node, shape_of):
    """com.microsoft Attention: the packed QKV projection, then attention per head."""
    x = need(shape_of, node.inputs[0])
    w = need(shape_of, node.inputs[1])
    sizes = node.attributes.get_ints("qkv_hidden_sizes", None) or (1, 1, 1)
    q_feats, v_feats = (w[1] * sizes[0] // sum(sizes), w[1] * sizes[2] // sum(sizes))
    batch, s = x[0], x[1]
    t = s + _past_len(node, shape_of, 4, 3)
    return batch * s * x[2] * w[1] + _scores_and_mix(batch, s, t, q_feats, v_feats), 0


def ms_multi_head_attention_cost(node, shape_of):
    q = need(shape_of, node.inputs[0])
    y = need(shape_of, node.outputs[0])
    key = need(shape_of, node.inputs[1])
    t = (key[1] if len(key) == 3 else key[2]) + _past_len(node, shape_of, 6, 2)
    return _scores_and_mix(q[0], q[1], t, q[2], y[2]), 0


def ms_group_query_attention_cost(node, shape_of):
    q = need(shape_of, node.inputs[0])
    y = need(shape_of, node.outputs[0])
    # With a cache the keys are past + new (a shared buffer over-counts: an upper bound).
    t = q[1] + _past_len(node, shape_of, 3, 2)
    return _scores_and_mix(q[0], q[1], t, y[2], y[2]), 0


def onnx_attention_cost(node, shape_of):
    q = need(shape_of, node.inputs[0])
    key = need(shape_of, node.inputs[1])
    y = need(shape_of, node.outputs[0])
    if len(q) == 4:  # [batch, heads, seq, head_size]
        t = key[2] + _past_len(node, shape_of, 4, 2)
        return _scores_and_mix(q[0], q[2], t, q[1] * q[3], y[1] * y[3]), 0
    t = key[1] + _past_len(node, shape_of, 4, 2)
    return _scores_and_mix(q[0], q[1], t, q[2], y[2]), 0


def ms_attention_weights(node):
    return {1: WeightSlot(out_axis=1, in_axis=0), 2: WeightSlot(out_axis=0)}


def _heads(arr: np.ndarray, n: int) -> list[np.ndarray]:
    d = len(arr) // n
    return [arr[h * d:(h + 1) * d] for h in range(n)]


def _union(ctx, parts: list[np.ndarray], what: str) -> int:
    """Make every unit in `parts` one unit; returns it (-1 when all are fixed)."""
    block = np.concatenate(parts)
    live = block[block >= 0]
    if len(live) < len(block):
        ctx.units.freeze(live, ctx.why(f"{what} mixes prunable and fixed features"))
    for u in live[1:].tolist():
        ctx.units.union(int(live[0]), u)
    return int(live[0]) if len(live) else -1


def _grouped_heads(ctx, q: np.ndarray, k: np.ndarray, v: np.ndarray, hq: int, hkv: int) -> np.ndarray | None:
    """Union KV head g with its query heads; returns the unit of each KV head."""
    if hq % hkv or len(q) % hq or len(k) % hkv or len(v) % hkv:
        return None
    rep = hq // hkv
    qs, ks, vs = _heads(q, hq), _heads(k, hkv), _heads(v, hkv)
    owner = np.array(
        [_union(ctx, [ks[g], vs[g], *qs[g * rep:(g + 1) * rep]], f"head {g}") for g in range(hkv)],
        dtype=np.int64,
    )
    ctx.units.tag(owner, "attention")
    ctx.units.tag(owner, "block")
    return owner


def _freeze_heads(ctx, variables, reason: str) -> None:
    for var in variables:
        ctx.freeze(var, reason)


def _scale_attr(rc, name: str, keep: np.ndarray) -> None:
    value = rc.attr(name)
    if value is None:
        return
    if isinstance(value, (list, tuple)):
        rc.set_attr_ints(name, [v * int(keep.sum()) // len(keep) for v in value])
    else:
        rc.set_attr_int(name, value * int(keep.sum()) // len(keep))


# -- com.microsoft Attention --------------------------------------------------------
def rewrite_ms_attention(rc) -> None:
    keep = rc.out_keep(0, -1)
    if keep is not None:
        _scale_attr(rc, "num_heads", keep)
        _scale_attr(rc, "qkv_hidden_sizes", keep)


@register("Attention", domain=MS, rewrite=rewrite_ms_attention, cost=ms_attention_cost, weights=ms_attention_weights,
          weighted=True)
def ms_attention(ctx) -> None:
    x, w = ctx.in_dims(0), ctx.in_dims(1)
    if x is None or w is None or not ctx.is_const(1) or len(w) != 2:
        return default_rule(ctx, "Attention weight is not a constant matrix")
    heads = ctx.attr("num_heads")
    total = ctx.dims.get_size(w[1])
    sizes = list(ctx.attr("qkv_hidden_sizes") or [total // 3] * 3)
    ctx.tie(x[-1], w[0], "input features")
    ctx.role(1, 0, "in")
    ctx.source(1, 1)
    ctx.role(1, 1, "out")
    if ctx.input(2) is not None:
        ctx.tie(w[1], ctx.in_dims(2)[0], "QKV bias")
        ctx.role(2, 0, "bias")
    arr = ctx.dims.array(w[1])
    q, k, v = np.split(arr, np.cumsum(sizes)[:2])
    owner = _grouped_heads(ctx, q, k, v, heads, heads)
    out = list(x[:-1]) + [ctx.derived(None if owner is None else v.copy(), sizes[2])]
    ctx.set_out(0, out)
    stateful = [i for i in (4, 5, 6) if ctx.input(i) is not None]
    if owner is None or stateful or (len(ctx.node.outputs) > 1 and ctx.node.outputs[1] is not None):
        _freeze_heads(ctx, [w[1]], "past state, attention bias or uneven head sizes: heads are kept")


# -- com.microsoft MultiHeadAttention ---------------------------------------------------
@register("MultiHeadAttention", domain=MS, rewrite=rewrite_ms_attention, cost=ms_multi_head_attention_cost,
          weighted=True, cache=((6, 1), (7, 2)))
def ms_multi_head_attention(ctx) -> None:
    """Inputs: query, key, value (3-D, projected upstream), packed bias [q|k|v],
    key padding mask, attention bias, past key, past value; outputs: output, present
    key, present value."""
    q, k, v = ctx.in_dims(0), ctx.in_dims(1), ctx.in_dims(2)
    if q is None or k is None or v is None or not (len(q) == len(k) == len(v) == 3):
        return default_rule(ctx, "packed or 4-D query/key/value: heads are kept")
    if ctx.input(5) is not None:
        return default_rule(ctx, "per-head attention bias: heads are kept")
    heads = ctx.attr("num_heads")
    owner = _kv_heads(ctx, q, k, v, heads, heads, past=(6, 7), present=(1, 2))
    if ctx.input(3) is not None and owner is not None:  # packed bias [q | k | v]
        bias = ctx.in_dims(3)[0]
        if ctx.dims.get(bias) is None:
            arrays = [ctx.dims.array(d[-1]) for d in (q, k, v)]
            ctx.dims.set_owner(bias, np.concatenate(arrays).copy())
            ctx.role(3, 0, "param")
        else:
            ctx.freeze(q[-1], "bias computed at runtime")


# -- com.microsoft GroupQueryAttention ----------------------------------------------------
def rewrite_gqa(rc) -> None:
    keep = rc.out_keep(0, -1)
    if keep is not None:
        _scale_attr(rc, "num_heads", keep)
        _scale_attr(rc, "kv_num_heads", keep)


def _cache_axis(ctx, i: int, kv_var: int, head_size: int) -> list[int] | None:
    """Tie a [batch, kv_heads, seq, head_size] cache input's head axis to the KV heads."""
    dims = ctx.in_dims(i) if ctx.input(i) is not None else None
    if dims is None or len(dims) != 4:
        return None
    ctx.tie(dims[1], kv_var, "cache heads")
    ctx.tie(dims[3], ctx.fixed(head_size), "head size")
    return dims


@register("GroupQueryAttention", domain=MS, rewrite=rewrite_gqa, cost=ms_group_query_attention_cost, weighted=True,
          cache=((3, 1), (4, 2)))
def ms_group_query_attention(ctx) -> None:
    q, k, v = ctx.in_dims(0), ctx.in_dims(1), ctx.in_dims(2)
    if q is None or k is None or v is None or len(q) != 3 or len(k) != 3:
        return default_rule(ctx, "packed QKV: heads are kept")
    hq, hkv = ctx.attr("num_heads"), ctx.attr("kv_num_heads")
    _kv_heads(ctx, q, k, v, hq, hkv, past=(3, 4), present=(1, 2))


def _kv_heads(ctx, q, k, v, hq, hkv, past, present) -> np.ndarray | None:
    """3-D query/key/value with hq query heads over hkv KV heads (MHA, GQA, opset-23
    3-D); the cache inputs `past` and outputs `present` follow the KV heads. Returns
    the unit of each KV head (None when it froze everything)."""
    qa, ka, va = (ctx.dims.array(d[-1]) for d in (q, k, v))
    owner = None if qa is None or ka is None or va is None else _grouped_heads(ctx, qa, ka, va, hq, hkv)
    if owner is None:
        default_rule(ctx, "feature widths unknown or not divisible by the head counts")
        return None
    kv_var = ctx.derived(owner)
    head_size = len(ka) // hkv
    for i, j in zip(past, present):
        dims = _cache_axis(ctx, i, kv_var, head_size)
        shape = ctx.out_shape(j)
        if j < len(ctx.node.outputs) and ctx.node.outputs[j] is not None and shape is not None and len(shape) == 4:
            batch = dims[0] if dims is not None else ctx.fixed(shape[0])
            ctx.set_out(j, [batch, kv_var, ctx.fixed(shape[2]), ctx.fixed(shape[3])])
    # Output features are each query head's mix of its KV head's values: with one KV
    # head per query head they line up with V's features, otherwise with the query's.
    ctx.set_out(0, list(q[:-1]) + [ctx.derived(va if hq == hkv else qa)])
    return owner


# -- ONNX Attention (opset 23) ----------------------------------------------------------
def rewrite_onnx_attention(rc) -> None:
    if rc.attr("q_num_heads") is None:
        return  # 4-D form: the head count is the tensors' own axis
    keep = rc.out_keep(0, -1)
    if keep is not None:
        _scale_attr(rc, "q_num_heads", keep)
        _scale_attr(rc, "kv_num_heads", keep)


@register("Attention", rewrite=rewrite_onnx_attention, cost=onnx_attention_cost, cache=((4, 1), (5, 2)))
def onnx_attention(ctx) -> None:
    q, k, v = ctx.in_dims(0), ctx.in_dims(1), ctx.in_dims(2)
    if q is None or k is None or v is None or not (len(q) == len(k) == len(v)):
        return default_rule(ctx, "query/key/value ranks unknown")
    if ctx.input(3) is not None:
        mask = ctx.in_dims(3)
        if len(mask) >= 3 and ctx.dims.get_size(mask[-3]) not in (1, None):
            # A per-head mask: its head axis follows the query heads (a constant is sliced).
            ctx.freeze(mask[-3], "per-head attention mask")
    if len(ctx.node.outputs) > 3 and ctx.node.outputs[3] is not None:
        return default_rule(ctx, "exposes the per-head attention scores (qk_matmul_output)")
    if len(q) == 3:
        hq, hkv = ctx.attr("q_num_heads"), ctx.attr("kv_num_heads")
        if not hq or not hkv:
            return default_rule(ctx, "3-D Attention without head counts")
        return _kv_heads(ctx, q, k, v, hq, hkv, past=(4, 5), present=(1, 2))
    if len(q) != 4:
        return default_rule(ctx, "query rank is neither 3 nor 4")
    # 4-D: [batch, heads, seq, head_size]. Contracted head_size ties q and k; heads tie
    # q, k and v when there is one KV head per query head.
    ctx.tie(q[3], k[3], "contracted head size")
    if ctx.dims.get_size(q[1]) == ctx.dims.get_size(k[1]):
        heads = ctx.tie(ctx.tie(q[1], k[1], "heads"), v[1], "heads")
        ctx.tag(heads, "attention")
    else:
        # Grouped query heads on an axis: union query heads with their KV head.
        qa, ka, va = (ctx.dims.array(d[1]) for d in (q, k, v))
        hq, hkv = len(qa), len(ka)
        owner = None if hq % hkv else _grouped_heads(ctx, qa, ka, va, hq, hkv)
        if owner is None:
            return default_rule(ctx, "query heads are not a multiple of KV heads")
        heads = q[1]
        ctx.tie(k[1], v[1], "KV heads")
    for i, j, src in ((4, 1, k), (5, 2, v)):
        dims = ctx.in_dims(i) if ctx.input(i) is not None else None
        if dims is not None and len(dims) == 4:
            ctx.tie(dims[1], src[1], "cache heads")
            ctx.tie(dims[3], src[3], "head size")
        if j < len(ctx.node.outputs) and ctx.node.outputs[j] is not None:
            shape = ctx.out_shape(j) or (None,) * 4
            ctx.set_out(j, [src[0], src[1], ctx.fixed(shape[2]), src[3]])
    shape = ctx.out_shape(0) or (None,) * 4
    ctx.set_out(0, [q[0], heads, ctx.fixed(shape[2]), v[3]])
