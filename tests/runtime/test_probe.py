"""The probe model: gate 0 on a block equals removing it physically, mask 0 on channels
of an exact group equals pruning them, stacked candidates equal separate runs — on real
zoo models in ONNX Runtime."""

from __future__ import annotations

import glob
import os

import numpy as np
import onnx_ir as ir
import pytest

from onnxprune.compiler.importance import class_scores
from onnxprune.compiler.pipeline import analyze, prune
from onnxprune.compiler.plan import PruningPlan
from onnxprune.compiler.selection import select_removed
from onnxprune.errors import OnnxPruneError
from onnxprune.model_io import load_model
from onnxprune.passes.probe_graph import default_taps
from onnxprune.passes.remove_blocks import RemoveBlocksPass
from onnxprune.runtime.probe import Candidate, ProbeModel
from onnxprune.runtime.session import ort_session, run_session

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "models")
ZOO = sorted(glob.glob(os.path.join(ROOT, "zoo", "*.onnx")))
DIGITS = os.path.join(ROOT, "digits", "digits_resnet.onnx")
BERT = os.path.join(ROOT, "transformers", "bert.onnx")
VIT = os.path.join(ROOT, "transformers", "vit.dynamo.onnx")


def _feeds(model: ir.Model, batch: int = 3, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    feeds = {}
    for value in model.graph.inputs:
        if value.dtype == ir.DataType.INT64:
            shape = (batch, 5)
            feeds[value.name] = np.ones(shape, np.int64) if "mask" in value.name else rng.integers(0, 50, shape)
        else:
            shape = [batch] + [d if isinstance(d, int) else 5 for d in list(value.shape)[1:]]
            feeds[value.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def _shapes(feeds: dict) -> dict:
    return {k: (1, *v.shape[1:]) for k, v in feeds.items()}


def _tapped(model: ir.Model, tap: str, feeds: dict) -> np.ndarray:
    model = load_model(ir.serde.serialize_model(model))
    values = {v.name: v for n in model.graph for v in n.outputs if v is not None}
    model.graph.outputs.clear()
    model.graph.outputs.append(values[tap])
    return run_session(ort_session(model), feeds)[tap]


def _rel(a, b) -> float:
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30))


@pytest.mark.parametrize("path", [*ZOO, DIGITS, BERT, VIT], ids=os.path.basename)
def test_gate_zero_equals_removed_block(path):
    model = load_model(path)
    probe = ProbeModel(model)
    if not probe.blocks:
        pytest.skip("no removable blocks")
    feeds = _feeds(model)
    tap = probe.taps[0]
    ids = sorted(probe.blocks)
    candidates = [Candidate()] + [Candidate(blocks=frozenset([b])) for b in ids]
    if len(ids) > 1:
        candidates.append(Candidate(blocks=frozenset(ids[-2:])))
    results = probe.run(feeds, candidates)
    # The probe's session has every ONNX Runtime optimisation (blocked conv layouts),
    # whose float rounding differs from the basic session's in the last digits.
    assert _rel(_tapped(model, tap, feeds), results[0][tap]) <= 1e-5
    for cand, result in zip(candidates[1:], results[1:]):
        removed = load_model(ir.serde.serialize_model(model))
        RemoveBlocksPass(sorted(cand.blocks))(removed)
        want = _tapped(removed, tap, feeds)
        assert _rel(want, result[tap]) <= 1e-5, cand
    # Negative control: a gate on one block does not reproduce removing another.
    if len(ids) > 1:
        other = load_model(ir.serde.serialize_model(model))
        RemoveBlocksPass([ids[0]])(other)
        assert _rel(_tapped(other, tap, feeds), results[2][tap]) > 1e-4


def test_stacked_candidates_equal_separate_runs():
    model = load_model(DIGITS)
    probe = ProbeModel(model)
    feeds = _feeds(model, batch=4)
    candidates = [Candidate(blocks=frozenset([b])) for b in sorted(probe.blocks)]
    stacked = probe.run(feeds, candidates)
    for cand, result in zip(candidates, stacked):
        alone = probe.run(feeds, [cand])[0]
        assert np.array_equal(alone[probe.taps[0]], result[probe.taps[0]]) or _rel(alone[probe.taps[0]], result[probe.taps[0]]) < 1e-6


@pytest.mark.parametrize(
    "path", [DIGITS, os.path.join(ROOT, "zoo", "mobilenetv2.onnx"), os.path.join(ROOT, "zoo", "convnext.dynamo.onnx"),
             os.path.join(ROOT, "zoo", "yolov8_c2f.onnx"), BERT],
    ids=os.path.basename,
)
def test_mask_zero_equals_pruned_channels(path):
    model = load_model(path)
    feeds = _feeds(model)
    an, _, _ = analyze(model, _shapes(feeds))
    probe = ProbeModel(model, analysis=an)
    tap = probe.taps[0]
    tap_value = next(v for n in an.nodes for v in n.outputs if v is not None and v.name == tap)
    scores, _ = class_scores(an, "l1")
    chosen = select_removed(an, scores, 0.5)
    checked = 0
    for g in an.groups:
        drop = chosen & set(g.classes)
        if not drop or not g.exact or g.id not in probe.mask_index:
            continue
        got = probe.run(feeds, [Candidate(channels={g.id: frozenset(drop)})])[0][tap]
        pruned = prune(model, plan=PruningPlan.from_removed(an, drop), input_shapes=_shapes(feeds)).model
        want = _tapped(pruned, tap, feeds)
        for axis, var in enumerate(an.value_dims[tap_value]):
            keep = an.keep_mask(var, drop)
            if keep is not None:  # the tap itself lost channels: they read as zeros here
                assert not got.take(np.flatnonzero(~keep), axis=axis).any()
                got = np.compress(keep, got, axis=axis)
        assert _rel(want, got) <= 1e-5, g.id
        checked += 1
    assert checked >= 2


def test_default_tap_is_the_classifier_input():
    assert default_taps(load_model(DIGITS)) == ["/Flatten_output_0"]
    with pytest.raises(OnnxPruneError, match="no value"):
        ProbeModel(load_model(DIGITS), taps=["nope"])


def _fixed_batch(path: str, tmp_path, batch: int = 1) -> str:
    import onnx

    proto = onnx.load(path)
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = batch
    out = tmp_path / f"b{batch}.onnx"
    onnx.save(proto, out)
    return str(out)


def test_fixed_batch_runs_one_candidate_at_a_time(tmp_path):
    """A model exported with a fixed batch (the exporters' default) cannot take stacked
    candidates: each runs alone on batches of the fixed size, and gives what the same
    candidate gives in the stacked run of the dynamic-batch model."""
    fixed = ProbeModel(load_model(_fixed_batch(DIGITS, tmp_path)), blocks=None)
    dynamic = ProbeModel(load_model(DIGITS), blocks=None)
    assert fixed.stackable == "no" and dynamic.stackable == "yes"
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
    cands = [Candidate(), Candidate(blocks=frozenset({1})), Candidate(blocks=frozenset({2, 4}))]
    got = fixed.features([{"input": x[i:i + 1]} for i in range(4)], cands, stack=8)
    want = dynamic.features([{"input": x}], cands, stack=8)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_stacking_is_tried_where_shape_inference_cannot_tell():
    """The dynamo ResNet's classifier input comes out of a Reshape whose batch inference
    calls unk__0: the probe tries two different candidates stacked against each alone."""
    model = load_model(os.path.join(ROOT, "zoo", "resnet20.dynamo.onnx"))
    probe = ProbeModel(model)
    assert probe.stackable == "maybe"
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    cands = [Candidate(), Candidate(blocks=frozenset({1}))]
    stacked = probe.features([{"input": x}], cands, stack=2)
    assert probe.stackable == "yes"
    alone = probe.features([{"input": x}], cands, stack=1)
    for a, b in zip(stacked, alone):
        np.testing.assert_allclose(a, b, atol=1e-5)
