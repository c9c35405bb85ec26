"""Criteria on calibration data (compiler/data_importance.py): each finds the channel it
is built to find where the weights alone point elsewhere, and on the trained digits
network the chosen channels hurt less than random ones."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "passes"))
from test_rules_common import build

from onnxprune.cli import main
from onnxprune.compiler.data_importance import data_scores
from onnxprune.compiler.importance import class_scores
from onnxprune.compiler.pipeline import prune
from onnxprune.compiler.plan import PruningPlan
from onnxprune.compiler.selection import select_removed
from onnxprune.compiler.workspace import Options, Workspace
from onnxprune.errors import OnnxPruneError
from onnxprune.runtime.calibration import CalibrationData, load_calibration
from onnxprune.runtime.evaluate import accuracy, load_labelled
from onnxprune.runtime.session import ort_session

DENSE = """
g (float[N,{width}] x) => (float[N,3] y) {{
  h = MatMul(x, w1)
  c = Add(h, b1)
  r = Relu(c)
  y = MatMul(r, w2)
}}
"""
DIGITS = Path(__file__).resolve().parents[2] / "models" / "digits"


def _scores(w1, b1, w2, criterion: str) -> list[float]:
    """The criterion's score of each hidden unit (of 6), in order."""
    proto = build(DENSE.format(width=len(w1)),
                  {"w1": w1.astype(np.float32), "b1": b1.astype(np.float32), "w2": w2.astype(np.float32)})
    x = np.random.default_rng(5).standard_normal((256, len(w1))).astype(np.float32)
    ws = Workspace(proto, Options(calibration=CalibrationData({"x": x})))
    scores, used = data_scores(ws, criterion)
    (group,) = [g for g in ws.analysis.groups if g.prunable]
    assert used[group.id] == criterion
    return [scores[c] for c in sorted(group.classes)]


def _weakest(w1, b1, w2, criterion: str) -> int:
    scores = _scores(w1, b1, w2, criterion)
    return scores.index(min(scores))


def _weights(width: int = 5):
    rng = np.random.default_rng(0)
    return rng.standard_normal((width, 6)), rng.standard_normal(6) + 3.0, rng.standard_normal((6, 3))


def test_fluctuation_finds_the_unit_that_never_varies():
    w1, b1, w2 = _weights()
    w1[:, 2] = 0.0  # unit 2 is its bias (3 + noise > 0 after the ReLU): constant
    w2[2] *= 10  # the weights that read it are the largest: magnitude keeps it
    assert _weakest(w1, b1, w2, "fluctuation") == 2


def test_wanda_finds_the_unit_that_is_never_active():
    w1, b1, w2 = _weights()
    b1[4] = -100.0  # unit 4 is always cut by the ReLU
    w2[4] *= 10
    assert _weakest(w1, b1, w2, "wanda") == 4


def test_obs_finds_the_units_the_others_explain():
    """Units 0, 1 and 3 are linearly dependent (u3 = 0.5 u0 - 0.7 u1 + c): a refit repairs
    the loss of any one of them, so OBS scores them near zero, however large the weights
    reading them; the independent units score high."""
    w1, b1, w2 = _weights(width=8)
    b1[:] = 50.0  # every unit stays positive: the layer is linear on this data
    w1[:, 3] = 0.5 * w1[:, 0] - 0.7 * w1[:, 1]
    w2[3] *= 10
    scores = _scores(w1, b1, w2, "obs")
    dependent, independent = [scores[i] for i in (0, 1, 3)], [scores[i] for i in (2, 4, 5)]
    assert max(dependent) < 1e-3 * min(independent), scores


def test_data_criteria_need_calibration(tmp_path, capfd):
    with pytest.raises(OnnxPruneError, match="needs calibration data"):
        data_scores(Workspace(str(DIGITS / "digits_resnet.onnx")), "wanda")
    assert main(["prune", str(DIGITS / "digits_resnet.onnx"), "-o", str(tmp_path / "p.onnx"), "--criterion", "obs"]) == 2
    assert "--criterion obs scores channels on calibration data: pass --calib DATA" in capfd.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("criterion", ["wanda", "fluctuation"])
def test_data_choice_beats_random_channels_on_a_trained_network(criterion):
    path = str(DIGITS / "digits_resnet56.onnx")
    calib = load_calibration(str(DIGITS / "digits_calib.npz"), path)
    ws = Workspace(path, Options(calibration=calib))
    an, data = ws.analysis, load_labelled(str(DIGITS / "digits_test.npz"))

    def acc(scores):
        plan = PruningPlan.from_removed(an, select_removed(an, scores, 0.1))
        return accuracy(prune(path, plan=plan, verify=False).model, *data)

    scores, _ = data_scores(ws, criterion)
    base, _ = class_scores(an, "l1")
    rng = np.random.default_rng(1)
    random = [acc(dict(zip(base, rng.random(len(base)).tolist()))) for _ in range(4)]
    assert acc(scores) > np.mean(random)


def test_kl_finds_the_unit_the_softmax_cannot_see():
    """Unit 2 varies most and is read by the largest weights, but it adds the same amount
    to every logit: the softmax, hence the output distribution, never changes without it."""
    w1, b1, w2 = _weights()
    w1[:, 2] *= 5
    w2[2] = 10.0
    assert _weakest(w1, b1, w2, "kl") == 2
    assert _weakest(w1, b1, w2, "fluctuation") != 2


def test_kl_of_a_unit_is_what_removing_it_does():
    """The probe's mask computes what slicing the unit away computes: each unit's score is
    the mean KL of the physically pruned model's softmax from the original's."""
    w1, b1, w2 = _weights()
    proto = build(DENSE.format(width=len(w1)),
                  {"w1": w1.astype(np.float32), "b1": b1.astype(np.float32), "w2": w2.astype(np.float32)})
    x = np.random.default_rng(5).standard_normal((100, len(w1))).astype(np.float32)
    calib = CalibrationData({"x": x}, batch_size=64)  # two batches, the last one short
    ws = Workspace(proto, Options(calibration=calib))
    scores, _ = data_scores(ws, "kl")
    (group,) = [g for g in ws.analysis.groups if g.prunable]

    def log_softmax(z):
        z = z.astype(np.float64) - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    reference = log_softmax(ort_session(ws.original).run(None, {"x": x})[0])
    for c in sorted(group.classes):
        pruned = prune(proto, plan=PruningPlan.from_removed(ws.analysis, {c}), recover="none").model
        out = log_softmax(ort_session(pruned).run(None, {"x": x})[0])
        expected = float((np.exp(reference) * (reference - out)).sum(axis=1).mean())
        assert scores[c] == pytest.approx(expected, rel=1e-3, abs=1e-7)


@pytest.mark.slow
def test_kl_choice_beats_random_channels_on_a_trained_network():
    """On the trained digits ResNet-20 with the 256 calibration samples (about 45 s: one
    probe run per 8 channels); with 64 samples KL is mostly noise (61.7 % in one run)."""
    path = str(DIGITS / "digits_resnet.onnx")
    ws = Workspace(path, Options(calibration=load_calibration(str(DIGITS / "digits_calib.npz"), path, batch_size=64)))
    an, data = ws.analysis, load_labelled(str(DIGITS / "digits_test.npz"))

    def acc(scores):
        plan = PruningPlan.from_removed(an, select_removed(an, scores, 0.1))
        return accuracy(prune(path, plan=plan, verify=False, recover="none").model, *data)

    base, _ = class_scores(an, "l1")
    rng = np.random.default_rng(1)
    random = [acc(dict(zip(base, rng.random(len(base)).tolist()))) for _ in range(4)]
    assert acc(data_scores(ws, "kl")[0]) > max(random)


def test_default_criterion_uses_the_data_when_there_is_some(tmp_path):
    """--criterion auto (the default): fluctuation with --calib, l1 without."""
    model, out, report = str(DIGITS / "digits_resnet.onnx"), str(tmp_path / "p.onnx"), tmp_path / "r.json"
    common = ["prune", model, "-o", out, "--ratio", "0.1", "--recover", "none", "--report", str(report)]
    assert main([*common, "--calib", str(DIGITS / "digits_calib.npz"), "--samples", "64"]) == 0
    assert json.loads(report.read_text())["settings"]["criterion"] == "fluctuation"
    assert main(common) == 0
    assert json.loads(report.read_text())["settings"]["criterion"] == "l1"
