"""Transformers from models/transformers, pruned through the generic channel analysis:
attention heads (whole heads; query heads within a GQA group), MLP width and hidden
width must give models that pass the checker, run in ONNX Runtime at other batch and
sequence lengths than the analysis used, cost what was predicted, and — for groups the
analysis calls exact — compute the same numbers once the removed channels' consumer
weights are zeroed. The fused (com.microsoft) BERT is frozen with reasons, never broken.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from support import rel_err, zero_consumer_slices

from onnxprune.compiler.importance import class_scores
from onnxprune.compiler.pipeline import analyze, prune, take_kept
from onnxprune.compiler.plan import PruningPlan
from onnxprune.compiler.selection import select_removed
from onnxprune.model_io import load_model
from onnxprune.runtime.session import ort_session, run_session

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "models", "transformers")
NAMES = ["bert", "vit", "gpt2", "llama"]
FILES = [f"{n}{suffix}.onnx" for n in NAMES for suffix in ("", ".dynamo")]


def _path(name: str) -> str:
    path = os.path.join(ROOT, name)
    if not os.path.exists(path):
        pytest.skip(f"{name} not generated")
    return path


def _shapes(name: str, batch: int = 1, seq: int = 5, past: int = 3) -> dict:
    if name.startswith("vit"):
        return {"pixel_values": (batch, 3, 32, 32)}
    if name.startswith("bert"):
        return {"input_ids": (batch, seq), "attention_mask": (batch, seq)}
    kv = 4 if name.startswith("gpt2") else 2
    cache = {f"past_{t}_{i}": (batch, kv, past, 16) for t in ("key", "value") for i in (0, 1)}
    return {"input_ids": (batch, seq), **cache}


def _feeds(model: ir.Model, shapes: dict, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    feeds = {}
    for value in model.graph.inputs:
        shape = shapes[value.name]
        if value.dtype == ir.DataType.INT64:
            # ids in [0, 10); a mask of ones (right-padded masks are what the fused op supports)
            feeds[value.name] = (
                np.ones(shape, np.int64) if "mask" in value.name else rng.integers(0, 10, shape).astype(np.int64)
            )
        else:
            feeds[value.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def _outputs(model: ir.Model, feeds: dict) -> dict:
    return run_session(ort_session(model), feeds)


@pytest.mark.parametrize("name", FILES)
def test_prune_half_is_valid_at_other_batch_and_seq(name, tmp_path):
    path = _path(name)
    result = prune(path, ratio=0.5, input_shapes=_shapes(name))
    cost = result.report["cost"]
    assert result.report["verification"]["ok"]
    assert cost["predicted"] == cost["after"]
    assert cost["macs_reduction"] > 0.3, cost
    out = tmp_path / "pruned.onnx"
    onnx.save(ir.serde.serialize_model(result.model), out)
    onnx.checker.check_model(str(out), full_check=True)
    original = load_model(path)
    interface = result.report["interface"]
    for batch, seq in ((1, 5), (2, 9)):
        feeds = _feeds(original, _shapes(name, batch, seq))
        want = take_kept(_outputs(original, feeds), interface, "output")
        got = _outputs(result.model, take_kept(feeds, interface, "input"))
        assert list(want) == list(got)
        for key in want:
            assert want[key].shape == got[key].shape, key


def _kinds(an) -> dict[int, int]:
    return {g.id: g.size for g in an.groups if g.prunable}


@pytest.mark.parametrize("name", ["bert.onnx", "bert.dynamo.onnx", "vit.onnx", "vit.dynamo.onnx"])
def test_heads_mlp_and_hidden_are_groups(name):
    """4 heads per layer, 128 MLP neurons per layer and a 64-wide residual stream."""
    an, _, _ = analyze(load_model(_path(name)), _shapes(name))
    sizes = sorted(_kinds(an).values())
    assert sizes.count(4) == 2, sizes  # heads of two layers
    assert sizes.count(128) == 2, sizes  # MLP width of two layers
    hidden = [g for g in an.groups if g.prunable and g.size == 64 and not g.exact]
    assert hidden, "the residual stream (through LayerNorm) is one inexact group"


def test_gqa_prunes_query_heads_within_kv_groups():
    """llama (dynamo): 4 query heads share 2 KV heads. With the cache kept at its shape
    the KV heads are frozen, and a query head may go only as one of each KV group's
    repeats (2 units of 2 heads)."""
    an, _, _ = analyze(load_model(_path("llama.dynamo.onnx")), _shapes("llama"), resize_cache=False)
    small = [g for g in an.groups if g.prunable and g.size == 2]
    assert len(small) == 2, [(g.size, g.sources[0]["tensor"]) for g in an.groups]
    kv = [g for g in an.groups if not g.prunable and g.size == 2]
    assert kv and all(any("past_" in r or "Concat" in r for r in g.reasons()) for g in kv)


def test_gqa_removes_kv_heads_with_their_query_heads():
    """With the cache resizable (the default), a unit is one KV head together with both
    query heads that share it, and nothing else about attention is prunable alone."""
    an, _, _ = analyze(load_model(_path("llama.dynamo.onnx")), _shapes("llama"))
    heads = [g for g in an.groups if g.kind == "heads"]
    assert len(heads) == 2 and all(g.size == 2 and len(g.prunable) == 2 for g in heads)
    tensors = {m[1] for g in heads for m in g.members}
    assert {f"past_key_{i}" for i in (0, 1)} <= tensors
    assert not [g for g in an.groups if g.size == 2 and g.kind != "heads"]


@pytest.mark.parametrize("name", ["gpt2.onnx", "gpt2.dynamo.onnx", "llama.dynamo.onnx"])
def test_kv_cache_shrinks_with_heads(name):
    """Half the heads: every past/present tensor loses the same head indices, the report
    says which, and a cache cut to them gives the original's numbers (heads zeroed first)."""
    model = load_model(_path(name))
    an, _, _ = analyze(model, _shapes(name))
    scores, _ = class_scores(an, "l1")
    heads = {c for g in an.groups if g.kind == "heads" for c in g.classes}
    removed = select_removed(an, scores, 0.0, kind_ratios={"heads": 0.5}) & heads
    assert removed
    zero_consumer_slices(an, removed)
    result = prune(model, plan=PruningPlan.from_removed(an, removed), input_shapes=_shapes(name))
    interface = result.report["interface"]
    names = {c["name"] for c in interface}
    assert names == {f"{io}_{t}_{i}" for io in ("past", "present") for t in ("key", "value") for i in (0, 1)}
    kv = _shapes(name)["past_key_0"][1]
    assert all(c["shape_before"][1] == kv and c["shape_after"][1] == kv // 2 for c in interface)
    for value in result.model.graph.inputs:
        if value.name in names:
            assert value.shape[1] == kv // 2
    feeds = _feeds(model, _shapes(name, 2, 4, past=6), seed=5)
    want = take_kept(_outputs(model, feeds), interface, "output")
    got = _outputs(result.model, take_kept(feeds, interface, "input"))
    assert max(rel_err(want[k], got[k]) for k in want) <= 1e-4


def test_kv_cache_kept_when_asked():
    result = prune(_path("gpt2.onnx"), ratio=0.5, input_shapes=_shapes("gpt2"), resize_cache=False)
    assert result.report["interface"] == []
    assert not [g for g in result.report["groups"]["detail"] if g["kind"] == "heads" and g["removed"]]


@pytest.mark.parametrize("name", ["bert.onnx", "vit.dynamo.onnx"])
def test_hidden_width_at_an_output_needs_permission(name):
    """A model that also returns its last hidden state (the last LayerNorm's output):
    the residual stream is frozen by default, pruned when the user names the output,
    which then shrinks (and the report says so)."""
    model = load_model(_path(name))
    last_norm = [n for n in model.graph if n.op_type == "LayerNormalization"][-1]
    last_norm.outputs[0].name = "hidden_state"
    model.graph.outputs.append(last_norm.outputs[0])
    an, _, _ = analyze(load_model(ir.serde.serialize_model(model)), _shapes(name))
    assert not [g for g in an.groups if g.kind == "hidden" and g.prunable]
    an, _, _ = analyze(load_model(ir.serde.serialize_model(model)), _shapes(name), resize_io=("hidden_state",))
    assert [g for g in an.groups if g.kind == "hidden" and g.prunable]
    result = prune(model, ratio=0.0, kind_ratios={"hidden": 0.25}, input_shapes=_shapes(name), resize_io=("hidden_state",))
    assert result.report["verification"]["ok"]
    change = [c for c in result.report["interface"] if c["name"] == "hidden_state"]
    assert change and change[0]["shape_after"][-1] == 48 and change[0]["shape_before"][-1] == 64


@pytest.mark.parametrize("name", [*FILES, "bert_fused.onnx"])
def test_exact_groups_are_exact(name):
    path = _path(name)
    model = load_model(path)
    an, _, _ = analyze(model, _shapes(name))
    scores, _ = class_scores(an, "l1")
    removed = select_removed(an, scores, 0.5) & {c for g in an.groups if g.exact for c in g.classes}
    assert removed
    zero_consumer_slices(an, removed)
    result = prune(model, plan=PruningPlan.from_removed(an, removed), input_shapes=_shapes(name))
    interface = result.report["interface"]
    feeds = _feeds(model, _shapes(name, 2, 6), seed=3)
    want = take_kept(_outputs(model, feeds), interface, "output")
    got = _outputs(result.model, take_kept(feeds, interface, "input"))
    assert max(rel_err(want[k], got[k]) for k in want) <= 1e-4


def test_fused_bert_prunes_like_the_unfused_one():
    """ORT's optimizer fused bert into EmbedLayerNormalization, Attention (packed QKV),
    SkipLayerNormalization and BiasGelu: the same groups come out (4 heads and 128 MLP
    neurons per layer, a 64-wide hidden stream), the cost model prices the fused ops like
    their decomposed form, and pruning half of everything removes the same MACs."""
    shapes = _shapes("bert")
    fused, plain = (analyze(load_model(_path(n)), shapes)[0] for n in ("bert_fused.onnx", "bert.onnx"))
    summary = lambda an: sorted((g.kind, g.size, len(g.prunable)) for g in an.groups)  # noqa: E731
    assert summary(fused) == summary(plain)
    results = [prune(_path(n), ratio=0.5, input_shapes=shapes) for n in ("bert_fused.onnx", "bert.onnx")]
    assert all(r.report["verification"]["ok"] for r in results)
    before = [r.report["cost"]["before"]["macs"] for r in results]
    after = [r.report["cost"]["after"]["macs"] for r in results]
    assert before[0] == before[1] and after[0] == after[1], (before, after)
    heads = [n for n in results[0].model.graph if n.op_type == "Attention"]
    assert heads and all(n.attributes["num_heads"].value == 2 for n in heads)


@pytest.mark.parametrize("name", ["bert.onnx", "vit.dynamo.onnx", "llama.dynamo.onnx"])
def test_group_kinds(name):
    an, _, _ = analyze(load_model(_path(name)), _shapes(name))
    kinds = {g.kind for g in an.groups if g.prunable}
    assert {"heads", "channels"} <= kinds, [(g.kind, g.size) for g in an.groups]
    hidden = [g for g in an.groups if g.kind == "hidden"]
    assert len(hidden) == 1 and hidden[0].size == 64 and not hidden[0].exact


@pytest.mark.parametrize(
    "kind_ratios, expect",
    [({"heads": 0.5}, {"heads": 0.5}), ({"channels": 0.5}, {"channels": 0.5}), ({"hidden": 0.25}, {"hidden": 0.25})],
    ids=["half-heads", "half-mlp", "quarter-hidden"],
)
@pytest.mark.parametrize("name", ["bert.onnx", "bert.dynamo.onnx", "vit.onnx", "llama.dynamo.onnx"])
def test_prune_one_kind(name, kind_ratios, expect):
    """The issue's three settings: half the heads in each layer, half the MLP width, a
    quarter of the hidden width — each alone, everything else untouched."""
    result = prune(_path(name), ratio=0.0, kind_ratios=kind_ratios, input_shapes=_shapes(name))
    detail = result.report["groups"]["detail"]
    touched = [g for g in detail if g["removed"]]
    assert touched, detail
    for g in detail:
        want = expect.get(g["kind"], 0.0) if g["prunable"] == g["size"] else 0.0
        assert g["removed"] == int(want * g["size"]), g
    cost = result.report["cost"]
    assert cost["after"]["macs"] < cost["before"]["macs"]
    assert cost["predicted"] == cost["after"]
