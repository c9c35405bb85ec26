"""Helpers shared by the per-op rule tests (tests/passes/test_rules_*.py).

Each rule test builds a small graph from ONNX text with random weights, looks at the
channel groups the analysis finds (structure), then prunes it through the whole
pipeline (which verifies the result in ONNX Runtime) and, for exact groups, checks the
numbers: removing channels must equal zeroing the weights that read them.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnx.numpy_helper
import onnx.parser
import onnx_ir as ir
import pytest

from onnxprune.compiler.pipeline import analyze, prune
from onnxprune.compiler.plan import PruningPlan
from onnxprune.model_io import load_model, make_sample_inputs, resolve_input_shapes
from onnxprune.runtime.session import ort_session, run_session

IR_VERSION = {17: 8, 18: 8, 19: 9, 20: 9, 21: 10, 22: 10, 23: 11}


def build(
    text: str, weights: dict | None = None, opset: int = 17, seed: int = 0, check: bool = True
) -> onnx.ModelProto:
    """A model from the text of one graph, with `weights` (name -> shape or array) as
    initializers; shapes get random normal values (deterministic per seed). `check=False`
    skips the ONNX checker (it rejects ops deprecated at the given opset, which ONNX
    Runtime still runs, e.g. GroupNormalization-18)."""
    ir_version = IR_VERSION.get(opset, 8)
    proto = onnx.parser.parse_model(
        f'<ir_version: {ir_version}, opset_import: ["" : {opset}]>\n' + text
    )
    rng = np.random.default_rng(seed)
    for name, spec in (weights or {}).items():
        if isinstance(spec, (np.ndarray, np.generic)):
            array = np.asarray(spec)
        else:
            array = rng.standard_normal(spec).astype(np.float32)
        proto.graph.initializer.append(onnx.numpy_helper.from_array(array, name))
    if check:
        onnx.checker.check_model(proto, full_check=True)
    return proto


def analysis(proto: onnx.ModelProto, input_shapes=None):
    an, _, _ = analyze(load_model(proto), input_shapes)
    return an


def group_of(an, tensor: str):
    """The group whose features are created by weight `tensor`."""
    found = [g for g in an.groups if any(s["tensor"] == tensor for s in g.sources)]
    assert len(found) == 1, f"{tensor} is a source of {len(found)} groups: {[g.sources for g in an.groups]}"
    return found[0]


def classes_of(an, remove: dict[str, list[int]]) -> set[int]:
    """The classes of the given output features of source weights."""
    chosen = set()
    for name, indices in remove.items():
        (src,) = [s for s in an.units.sources if s["tensor"] == name]
        chosen |= {an.units.find(src["start"] + i) for i in indices}
    return chosen


def reasons(group) -> str:
    return " | ".join(group.reasons())


def inexact_reasons(group) -> str:
    return " | ".join(r for lst in group.inexact.values() for r in lst)


def assert_frozen(group, *words: str) -> None:
    """Every class of `group` is frozen, and the reasons mention every word."""
    assert group.size > 0
    assert not group.prunable, f"expected frozen, reasons: {group.reasons()}"
    text = reasons(group)
    for w in words:
        assert w in text, f"{w!r} not in reasons {group.reasons()}"


def nodes(model: ir.Model, op_type: str) -> list[ir.Node]:
    return [n for n in model.graph if n.op_type == op_type]


def only(model: ir.Model, op_type: str) -> ir.Node:
    (node,) = nodes(model, op_type)
    return node


def producer(model: ir.Model, output: str) -> ir.Node:
    """The node that computes the value named `output`."""
    (node,) = [n for n in model.graph if any(o.name == output for o in n.outputs)]
    return node


def attr(node: ir.Node, name: str, default=None):
    a = node.attributes.get(name)
    return default if a is None else a.value


def const_input(node: ir.Node, i: int) -> np.ndarray:
    """A node's constant input (initializer or Constant node)."""
    from onnxprune.passes.constants import const_array

    arr = const_array(node.inputs[i])
    assert arr is not None, f"input {i} of {node.op_type} is not a constant"
    return arr


def run(model, feeds) -> dict[str, np.ndarray]:
    return run_session(ort_session(model), feeds)


def feeds_for(proto: onnx.ModelProto, input_shapes=None, seed: int = 1) -> dict[str, np.ndarray]:
    model = load_model(proto)
    return make_sample_inputs(model, resolve_input_shapes(model, input_shapes), seed=seed)


def zero_consumers(proto: onnx.ModelProto, an, removed: set[int], roles=("in",)) -> onnx.ModelProto:
    """A copy of `proto` whose constant members of the given roles are zero at the
    positions of the removed classes: for an exact group this is what removal equals."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    inits = {t.name: t for t in out.graph.initializer}
    arrays: dict[str, np.ndarray] = {}
    touched = 0
    for m in an.const_members:
        if m.role not in roles:
            continue
        cls = an.classes_of(m.var)
        if cls is None:
            continue
        hit = np.isin(cls, list(removed))
        if not hit.any():
            continue
        name = an.nodes[m.node_index].inputs[m.input_index].name
        assert name in inits, f"{name} is not an initializer; give weights as initializers"
        arr = arrays.setdefault(name, onnx.numpy_helper.to_array(inits[name]).copy())
        index = [slice(None)] * arr.ndim
        index[m.axis] = hit
        arr[tuple(index)] = 0
        touched += 1
    assert touched, "no constant member reads a removed channel"
    for name, arr in arrays.items():
        inits[name].CopyFrom(onnx.numpy_helper.from_array(arr, name))
    return out


def prune_and_check(
    proto: onnx.ModelProto,
    *,
    ratio: float = 0.5,
    input_shapes=None,
    exact: bool = True,
    roles=("in",),
    expect_removed: bool = True,
    atol: float = 1e-4,
    only: tuple[str, ...] = (),
    remove: dict[str, list[int]] | None = None,
    verify: bool = True,
):
    """Prune through the whole pipeline (it verifies the model in ONNX Runtime) and,
    when `exact`, compare with the original whose `roles` weights of the removed
    channels are zeroed. `only` (weight names) restricts pruning to the groups those
    weights create: every other prunable class of each, by a hand-made plan; `remove`
    ({weight: [output-feature indices]}) names exactly what goes.
    Returns (result, analysis of the original, removed classes)."""
    an = analysis(proto, input_shapes)
    plan = None
    if only:
        chosen = {c for name in only for c in group_of(an, name).prunable[::2]}
        plan = PruningPlan.from_removed(an, chosen)
    if remove:
        plan = PruningPlan.from_removed(an, classes_of(an, remove))
    result = prune(proto, ratio=ratio, input_shapes=input_shapes, plan=plan, verify=verify)
    if verify:
        assert result.report["verification"]["ok"], result.report["verification"]
    removed = result.plan.to_removed(an)
    if expect_removed:
        assert removed, "nothing was removed"
    if exact and removed:
        feeds = feeds_for(proto, input_shapes)
        want = run(zero_consumers(proto, an, removed, roles), feeds)
        got = run(result.model, feeds)  # also proves the pruned model runs
        assert want.keys() == got.keys()
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=atol, err_msg=name)
    return result, an, removed


# -- the helpers themselves --------------------------------------------------------

CONV_CONV = """
g (float[1,3,8,8] x) => (float[1,4,8,8] y) {
  h = Conv<pads = [1, 1, 1, 1]>(x, w1, b1)
  r = Relu(h)
  y = Conv<pads = [1, 1, 1, 1]>(r, w2, b2)
}
"""
CONV_CONV_W = {"w1": (8, 3, 3, 3), "b1": (8,), "w2": (4, 8, 3, 3), "b2": (4,)}


def test_zeroing_removed_inputs_equals_removal():
    proto = build(CONV_CONV, CONV_CONV_W)
    result, an, removed = prune_and_check(proto)
    assert len(removed) == 4
    assert const_input(producer(result.model, "h"), 1).shape == (4, 3, 3, 3)
    assert const_input(producer(result.model, "y"), 1).shape == (4, 4, 3, 3)


def test_ratio_zero_changes_nothing():
    proto = build(CONV_CONV, CONV_CONV_W)
    result = prune(proto, ratio=0.0)
    assert not result.plan.channels
    feeds = feeds_for(proto)
    np.testing.assert_array_equal(run(result.model, feeds)["y"], run(proto, feeds)["y"])


def test_zeroing_the_wrong_channels_is_detected():
    """The numeric check has teeth: zeroing kept channels instead gives other numbers."""
    proto = build(CONV_CONV, CONV_CONV_W)
    result = prune(proto, ratio=0.5)
    an = analysis(proto)
    removed = result.plan.to_removed(an)
    others = set(group_of(an, "w1").classes) - removed
    feeds = feeds_for(proto)
    wrong = run(zero_consumers(proto, an, others), feeds)["y"]
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(run(result.model, feeds)["y"], wrong, rtol=1e-4, atol=1e-4)
