"""Prefix caching (runtime/prefix.py): a candidate that drops more blocks than the base
(same channels), run from its first gate on with the base's values, gives the features a
whole run gives — on CNNs and transformers of the zoo, with channels masked in the base,
with a tap made before some cuts, and with candidates that cannot be cut mixed in."""

from __future__ import annotations

import os

import numpy as np
import pytest

from onnxprune.compiler.pipeline import analyze
from onnxprune.model_io import load_model
from onnxprune.runtime.calibration import CalibrationData
from onnxprune.runtime.probe import Candidate, ProbeModel

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "models")
MODELS = [os.path.join(ROOT, "digits", "digits_resnet.onnx"), os.path.join(ROOT, "zoo", "resnet_bottleneck.dynamo.onnx"),
          os.path.join(ROOT, "zoo", "convnext.onnx"), os.path.join(ROOT, "transformers", "bert.onnx"),
          os.path.join(ROOT, "transformers", "vit.dynamo.onnx"), os.path.join(ROOT, "transformers", "bert.dynamo.onnx")]


def _calibration(model, batch: int = 6, seed: int = 0) -> CalibrationData:
    rng = np.random.default_rng(seed)
    arrays = {}
    for value in model.graph.inputs:
        if value.dtype is not None and not value.dtype.is_floating_point():
            shape = (batch * 2, 7)
            arrays[value.name] = np.ones(shape, np.int64) if "mask" in value.name else rng.integers(0, 50, shape)
        else:
            shape = [batch * 2] + [d if isinstance(d, int) else 7 for d in list(value.shape)[1:]]
            arrays[value.name] = rng.standard_normal(shape).astype(np.float32)
    return CalibrationData(arrays, batch_size=batch)  # two batches


@pytest.mark.parametrize("path", MODELS, ids=os.path.basename)
def test_cut_candidates_equal_whole_runs(path):
    model = load_model(path)
    calib = _calibration(model)
    shapes = {k: (1, *v.shape[1:]) for k, v in calib.arrays.items()}
    an, _, _ = analyze(model, shapes)
    probe = ProbeModel(model, analysis=an, keep_outputs=True)
    ids = sorted(probe.blocks)
    if len(ids) < 3:
        pytest.skip("fewer than three removable blocks")
    group = next(g for g in an.groups if g.id in probe.mask_index and len(g.prunable) > 1)
    base = Candidate(blocks=frozenset({ids[1]}), channels={group.id: frozenset(group.prunable[:1])})
    candidates = [base] + [Candidate(blocks=base.blocks | {b}, channels=base.channels) for b in ids if b != ids[1]]
    candidates.append(Candidate(blocks=frozenset({ids[-1]})))  # other channels: runs whole
    whole = probe.features(calib.batches(), candidates)
    cached = probe.features(calib.batches(), candidates, base=base)
    assert probe._suffixes is not None and probe._suffixes.sessions  # the cut path ran
    for a, b in zip(whole, cached):
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * float(np.abs(a).max()))
    # Negative control: a candidate's features differ from the base's.
    assert not np.allclose(cached[1], cached[0], atol=1e-6)


def test_a_tap_made_before_the_cut_comes_from_the_base():
    model = load_model(os.path.join(ROOT, "digits", "digits_resnet.onnx"))
    probe_all = ProbeModel(model)
    ids = sorted(probe_all.blocks)
    early = probe_all.blocks[ids[1]].exit  # after block 1: later cuts cannot change it
    probe = ProbeModel(model, taps=[early, probe_all.taps[0]])
    calib = _calibration(model)
    candidates = [Candidate()] + [Candidate(blocks=frozenset({b})) for b in ids]
    whole = probe.features(calib.batches(), candidates)
    cached = probe.features(calib.batches(), candidates, base=Candidate())
    for a, b in zip(whole, cached):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * float(np.abs(a).max()))
