"""Exactness: removing channels that nothing reads any more changes nothing.

For every model: choose classes to remove (select_removed at 0.5, restricted to groups
the analysis calls exact), zero every consumer-side ("in") weight slice of those
classes in a copy of the model, prune that zeroed copy with exactly those classes (a
plan), and compare ONNX Runtime outputs of the zeroed copy and its pruned version.
If the grouping missed a coupling, or the rewrite sliced a wrong index or axis, some
surviving computation reads a different channel and the outputs differ.

Negative controls show the comparison can fail: without the zeroing the outputs
change, and zeroing does not rescue a group the analysis calls inexact.
"""
from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxprune.compiler.importance import class_scores
from onnxprune.compiler.model_io import load_model
from onnxprune.compiler.pipeline import analyze, prune
from onnxprune.compiler.plan import PruningPlan
from onnxprune.compiler.selection import select_removed
from support import ALL_MODELS, feeds_for, rel_err, run, zero_consumer_slices, zoo

TOLERANCE = 1e-4


def _choose(path: str, *, exact_only: bool = True, zero: bool = True):
    """(model copy, analysis, removed classes); the copy is zeroed when `zero`."""
    model = load_model(path)
    an, _, _ = analyze(model)
    scores, _ = class_scores(an, "l1")
    removed = select_removed(an, scores, 0.5)
    if exact_only:
        exact = {c for g in an.groups if g.exact for c in g.classes}
        removed &= exact
    if zero:
        assert zero_consumer_slices(an, removed) > 0
    return model, an, removed


def _prune_with(model: ir.Model, an, removed):
    plan = PruningPlan.from_removed(an, removed)
    assert plan.to_removed(an) == removed  # the plan says exactly these classes
    # `prune` copies an ir.Model it is given, so `model` stays the unpruned reference.
    result = prune(model, plan=plan)
    assert result.report["groups"]["channels_removed"] == len(removed)
    assert result.report["cost"]["after"]["macs"] < result.report["cost"]["before"]["macs"]
    return result


def _max_rel_err(reference: ir.Model, pruned: ir.Model) -> float:
    proto = ir.serde.serialize_model(reference)
    feeds = feeds_for(proto, batch=2, seed=7)
    want, got = run(proto, feeds), run(pruned, feeds)
    assert list(want) == list(got)
    return max(rel_err(want[k], got[k]) for k in want)


@pytest.mark.parametrize("path", ALL_MODELS)
def test_removing_unread_channels_is_exact(path):
    model, an, removed = _choose(path)
    assert removed, "no exact group lost any channel: the test would prove nothing"
    result = _prune_with(model, an, removed)
    err = _max_rel_err(model, result.model)
    print(f"{path}: {len(removed)} classes removed, rel err {err:.2e}")
    assert err <= TOLERANCE


def _weights_as_constant_nodes(path: str) -> ir.Model:
    """The model with every initializer moved into a Constant node (some exporters and
    optimisers emit weights that way)."""
    model = load_model(path)
    graph = model.graph
    first = graph[0]
    for name in list(graph.initializers):
        value = graph.initializers.pop(name)
        const = ir.node("Constant", inputs=[], attributes={"value": value.const_value})
        out = const.outputs[0]
        out.name, out.type, out.shape = name, value.type, value.shape
        value.replace_all_uses_with(out)
        graph.insert_before(first, const)
    assert not graph.initializers
    return model


@pytest.mark.parametrize("name", ["resnet20.onnx", "mobilenetv3.onnx"])
def test_exact_with_constant_node_weights(name):
    """Same construction when the weights are Constant nodes: the zeroing helper edits
    the node attribute, and the rewrite slices through Constant nodes."""
    reference = load_model(zoo(name))
    model = _weights_as_constant_nodes(zoo(name))
    feeds = feeds_for(ir.serde.serialize_model(reference), batch=1)
    want, got = run(reference, feeds), run(model, feeds)
    for k in want:  # moving the weights changed nothing
        np.testing.assert_array_equal(got[k], want[k])
    an, _, _ = analyze(model)
    scores, _ = class_scores(an, "l1")
    removed = select_removed(an, scores, 0.5) & {c for g in an.groups if g.exact for c in g.classes}
    assert zero_consumer_slices(an, removed) > 0
    assert _max_rel_err(reference, model) > 1e-3  # the zeroing reached the Constant nodes
    result = _prune_with(model, an, removed)
    assert _max_rel_err(model, result.model) <= TOLERANCE


# ------------------------------------------------------------------ negative controls


@pytest.mark.parametrize("name", ["resnet20.onnx", "vgg.onnx", "mobilenetv2.onnx"])
def test_control_without_zeroing_outputs_change(name):
    model, an, removed = _choose(zoo(name), zero=False)
    result = _prune_with(model, an, removed)
    err = _max_rel_err(model, result.model)
    print(f"{name}: unzeroed rel err {err:.2e}")
    assert err > 1e-2


def test_control_inexact_groups_are_not_exact():
    """convnext's LayerNorm-coupled groups are marked inexact; zeroing their consumers
    does not make removal exact (so `exact` is not a vacuous flag)."""
    model = load_model(zoo("convnext.onnx"))
    an, _, _ = analyze(model)
    inexact = [g for g in an.groups if not g.exact and g.prunable]
    assert inexact
    removed = set(inexact[0].prunable[: len(inexact[0].prunable) // 2])
    zero_consumer_slices(an, removed)
    result = _prune_with(model, an, removed)
    err = _max_rel_err(model, result.model)
    assert err > 1e-3, err


def test_control_pruning_other_channels_than_zeroed_changes_outputs():
    """Zero one set of channels but remove another set of the same size per group: the
    comparison notices (so an off-by-one slice in the rewrite would be caught)."""
    model, an, zeroed = _choose(zoo("resnet20.onnx"))
    other = set()
    for g in an.groups:
        gone = [c for c in g.classes if c in zeroed]
        kept = [c for c in g.prunable if c not in zeroed]
        other.update(kept[: len(gone)])
    assert other and other != zeroed
    result = _prune_with(model, an, other)
    assert _max_rel_err(model, result.model) > 1e-2
