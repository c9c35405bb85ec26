"""Fused attention ops (com.microsoft MultiHeadAttention / GroupQueryAttention / Attention,
ONNX Attention-23 in its 3-D and 4-D forms): whole heads are units, a KV head goes with
the query heads sharing it, the cache follows, head-count attributes are rewritten, and
removing heads whose output-projection rows were zeroed leaves the outputs unchanged.
Models are built here (projections + the fused op + an output projection) and run in
ONNX Runtime's CPU kernels.
"""

from __future__ import annotations

import numpy as np
import onnx.helper as oh
import onnx.numpy_helper as nh
import onnx_ir as ir
import pytest
from onnx import TensorProto as T
from support import rel_err, zero_consumer_slices

from onnxprune.compiler.pipeline import analyze, prune, take_kept
from onnxprune.compiler.plan import PruningPlan
from onnxprune.model_io import load_model
from onnxprune.passes.cost import model_cost
from onnxprune.runtime.session import ort_session, run_session


def attention_model(kind: str, hq: int, hkv: int, d: int, past: bool, D: int = 16, seed: int = 0, extra=()):
    """x[B,S,D] -> q/k/v projections (MatMul+Add) -> fused attention -> MatMul Wo -> y."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def weight(name, shape):
        inits.append(nh.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name))
        return name

    def const(name, values):
        inits.append(nh.from_array(np.array(values, np.int64), name))
        return name

    inputs = [oh.make_tensor_value_info("x", T.FLOAT, ["B", "S", D])]
    outputs = [oh.make_tensor_value_info("y", T.FLOAT, ["B", "S", D])]
    for t, h in (("q", hq), ("k", hkv), ("v", hkv)):
        nodes.append(oh.make_node("MatMul", ["x", weight(f"W{t}", (D, h * d))], [f"{t}0"]))
        nodes.append(oh.make_node("Add", [f"{t}0", weight(f"b{t}", (h * d,))], [t]))
    cache_in = ["past_key", "past_value"] if past else ["", ""]
    cache_out = ["present_key", "present_value"] if past else []
    if kind == "mha":
        ins = ["q", "k", "v", "", "", "attn_bias" if "bias" in extra else "", *cache_in]
        if "bias" in extra:
            inputs.append(oh.make_tensor_value_info("attn_bias", T.FLOAT, [1, hq, "S", "S"]))
        nodes.append(oh.make_node("MultiHeadAttention", ins, ["att", *cache_out], domain="com.microsoft", num_heads=hq))
    elif kind == "gqa":
        inputs += [oh.make_tensor_value_info("seqlens_k", T.INT32, ["B"]), oh.make_tensor_value_info("total_seq", T.INT32, [])]
        ins = ["q", "k", "v", *cache_in, "seqlens_k", "total_seq"]
        nodes.append(oh.make_node(
            "GroupQueryAttention", ins, ["att", "present_key", "present_value"],
            domain="com.microsoft", num_heads=hq, kv_num_heads=hkv,
        ))
    elif kind == "onnx3d":
        scores = ["scores"] if "scores" in extra else []
        outs = ["att", *(cache_out or (["", ""] if scores else [])), *scores]
        nodes.append(oh.make_node("Attention", ["q", "k", "v", "", *cache_in], outs, q_num_heads=hq, kv_num_heads=hkv))
        if scores:
            outputs.append(oh.make_tensor_value_info("scores", T.FLOAT, None))
    elif kind == "onnx4d":
        for t, h in (("q", hq), ("k", hkv), ("v", hkv)):
            nodes.append(oh.make_node("Reshape", [t, const(f"shape_{t}", [0, 0, h, d])], [f"{t}r"]))
            nodes.append(oh.make_node("Transpose", [f"{t}r"], [f"{t}4"], perm=[0, 2, 1, 3]))
        nodes.append(oh.make_node("Attention", ["q4", "k4", "v4", "", *cache_in], ["att4", *cache_out]))
        nodes.append(oh.make_node("Transpose", ["att4"], ["att4t"], perm=[0, 2, 1, 3]))
        nodes.append(oh.make_node("Reshape", ["att4t", const("shape_out", [0, 0, hq * d])], ["att"]))
    if past:
        inputs += [oh.make_tensor_value_info(n, T.FLOAT, ["B", hkv, "P", d]) for n in cache_in]
        outputs += [oh.make_tensor_value_info(n, T.FLOAT, ["B", hkv, "T", d]) for n in cache_out]
    nodes.append(oh.make_node("MatMul", ["att", weight("Wo", (hq * d, D))], ["y"]))
    graph = oh.make_graph(nodes, kind, inputs, outputs, inits)
    opsets = [oh.make_opsetid("", 23), oh.make_opsetid("com.microsoft", 1)]
    return oh.make_model(graph, opset_imports=opsets, ir_version=10)


def _shapes(kind, hkv, d, past, batch=1, seq=3, plen=5):
    shapes = {"x": (batch, seq, 16)}
    if past:
        shapes.update(past_key=(batch, hkv, plen, d), past_value=(batch, hkv, plen, d))
    if kind == "gqa":
        shapes.update(seqlens_k=(batch,), total_seq=())
    return shapes


def _feeds(kind, hkv, d, past, batch=2, seq=3, plen=5, seed=1):
    if kind == "gqa":
        batch = 1  # ORT's GQA: batch 1 when a prompt (seq > 1) meets a cache
    rng = np.random.default_rng(seed)
    feeds = {"x": rng.standard_normal((batch, seq, 16)).astype(np.float32)}
    if past:
        for n in ("past_key", "past_value"):
            feeds[n] = rng.standard_normal((batch, hkv, plen, d)).astype(np.float32)
    if kind == "gqa":
        total = (plen if past else 0) + seq
        feeds.update(seqlens_k=np.full(batch, total - 1, np.int32), total_seq=np.array(total, np.int32))
    return feeds


CASES = [
    ("mha", 4, 4, 4, False),
    ("mha", 4, 4, 4, True),
    ("gqa", 4, 2, 8, True),
    ("onnx3d", 4, 2, 4, False),
    ("onnx3d", 4, 4, 4, True),
    ("onnx4d", 4, 4, 4, True),
    ("onnx4d", 4, 2, 4, False),
]
IDS = [f"{k}-q{hq}kv{hkv}{'-cache' if p else ''}" for k, hq, hkv, _, p in CASES]


def _head_attrs(model: ir.Model) -> dict:
    node = next(n for n in model.graph if n.op_type in ("MultiHeadAttention", "GroupQueryAttention", "Attention"))
    return {k: a.value for k, a in node.attributes.items() if "heads" in k}


@pytest.mark.parametrize("kind, hq, hkv, d, past", CASES, ids=IDS)
def test_heads_are_units_and_removal_is_exact(kind, hq, hkv, d, past):
    proto = attention_model(kind, hq, hkv, d, past)
    model = load_model(proto)
    shapes = _shapes(kind, hkv, d, past)
    feeds = _feeds(kind, hkv, d, past)
    an, _, _ = analyze(model, shapes, feeds=feeds if kind == "gqa" else None)
    heads = [g for g in an.groups if g.kind == "heads"]
    assert len(heads) == 1, [(g.kind, g.size, g.reasons()) for g in an.groups]
    assert heads[0].size == hkv and len(heads[0].prunable) == hkv and heads[0].exact
    removed = {heads[0].classes[-1]}
    zero_consumer_slices(an, removed)
    feeds = _feeds(kind, hkv, d, past)
    plan = PruningPlan.from_removed(an, removed)
    result = prune(model, plan=plan, input_shapes=shapes, sample_feeds=feeds if kind == "gqa" else None)
    cost = result.report["cost"]
    assert result.report["verification"]["ok"] and cost["predicted"] == cost["after"]
    assert cost["after"]["macs"] < cost["before"]["macs"]
    attrs = _head_attrs(result.model)
    if kind != "onnx4d":
        assert sorted(attrs.values()) == sorted(v * (hkv - 1) // hkv for v in _head_attrs(model).values())
    interface = result.report["interface"]
    want = take_kept(run_session(ort_session(model), feeds), interface, "output")
    pruned_feeds = take_kept(feeds, interface, "input")
    if past:
        assert {c["name"] for c in result.report["interface"]} == {"past_key", "past_value", "present_key", "present_value"}
    got = run_session(ort_session(result.model), pruned_feeds)
    assert max(rel_err(want[k], got[k]) for k in want) <= 1e-4


def test_fused_attention_macs():
    """MHA, 4 heads of 4 over S=3 queries and T=5+3 keys: q·kᵀ and p·v cost S·T·16 each."""
    model = load_model(attention_model("mha", 4, 4, 4, True))
    rows = model_cost(model, _shapes("mha", 4, 4, True)).rows
    (row,) = [r for r in rows if r.op_type == "MultiHeadAttention"]
    assert row.macs == 3 * 8 * 16 * 2


@pytest.mark.parametrize("kind, extra, reason", [("mha", ("bias",), "attention bias"), ("onnx3d", ("scores",), "qk_matmul_output")])
def test_per_head_tensors_freeze_heads(kind, extra, reason):
    model = load_model(attention_model(kind, 4, 4, 4, False, extra=extra))
    shapes = {"x": (1, 3, 16), **({"attn_bias": (1, 4, 3, 3)} if "bias" in extra else {})}
    an, _, _ = analyze(model, shapes)
    frozen = [g for g in an.groups if g.size == 16 and not g.prunable]
    assert frozen and any(reason in r for g in frozen for r in g.reasons()), [g.reasons() for g in an.groups]
    result = prune(model, ratio=0.5, input_shapes=shapes)
    assert result.report["verification"]["ok"]


def test_kept_cache_keeps_fused_heads():
    model = load_model(attention_model("gqa", 4, 2, 8, True))
    an, _, _ = analyze(model, _shapes("gqa", 2, 8, True), resize_cache=False, feeds=_feeds("gqa", 2, 8, True))
    assert not [g for g in an.groups if g.kind == "heads" and g.prunable]
