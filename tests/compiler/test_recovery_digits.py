"""On a trained network (the digits ResNet-56, 99.17 %), without fine-tuning: the
channels the magnitude criteria choose hurt less than random ones, and least-squares
recovery from the calibration split keeps the task where the plain cut loses it.

These would have caught the defect the held-out runs found: scoring a channel by the
weights that make it (BatchNorm folded into them by the exporter) and by its bias chose
channels worse than random (36 % against 61 % at ratio 0.1)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onnxprune.cli import main
from onnxprune.compiler.importance import class_scores
from onnxprune.compiler.pipeline import prune
from onnxprune.compiler.plan import PruningPlan
from onnxprune.compiler.selection import select_removed
from onnxprune.compiler.workspace import Workspace
from onnxprune.model_io import load_model
from onnxprune.runtime.calibration import load_calibration
from onnxprune.runtime.evaluate import accuracy, load_labelled

DIGITS = Path(__file__).resolve().parents[2] / "models" / "digits"
RESNET56 = str(DIGITS / "digits_resnet56.onnx")
CALIB = str(DIGITS / "digits_calib.npz")
TEST = str(DIGITS / "digits_test.npz")


@pytest.fixture(scope="module")
def setting():
    ws = Workspace(RESNET56)
    return ws.analysis, load_labelled(TEST)


def _accuracy(an, scores, ratio, data, **kw) -> float:
    plan = PruningPlan.from_removed(an, select_removed(an, scores, ratio))
    return accuracy(prune(RESNET56, plan=plan, verify=False, **kw).model, *data)


@pytest.mark.parametrize("criterion", ["l1", "l2"])
def test_magnitude_choice_beats_random_channels(setting, criterion):
    an, data = setting
    scores, _ = class_scores(an, criterion)
    rng = np.random.default_rng(1)
    random = [_accuracy(an, dict(zip(scores, rng.random(len(scores)).tolist())), 0.1, data) for _ in range(4)]
    chosen = _accuracy(an, scores, 0.1, data)
    assert chosen > np.mean(random), (chosen, random)


def test_least_squares_recovery_keeps_the_task(setting):
    an, data = setting
    calib = load_calibration(CALIB, load_model(RESNET56))
    scores, _ = class_scores(an, "l1")
    plan = PruningPlan.from_removed(an, select_removed(an, scores, 0.3))
    plain = prune(RESNET56, plan=plan, verify=False)
    fitted = prune(RESNET56, plan=plan, calibration=calib)
    assert fitted.report["cost"]["macs_reduction"] > 0.45
    assert accuracy(plain.model, *data) < 0.8
    assert accuracy(fitted.model, *data) >= 0.95
    layers = fitted.report["recovery"]["layers"]
    assert len(layers) == 56 and all(r["error_after"] < r["error_before"] for r in layers)
    assert fitted.report["verification"]["ok"]


def test_cli_recovers_with_calib_and_says_so(tmp_path, capfd):
    out = tmp_path / "p.onnx"
    assert main(["prune", RESNET56, "-o", str(out), "--ratio", "0.2", "--calib", CALIB, "--samples", "64"]) == 0
    printed = capfd.readouterr().out
    assert "recovery: least squares on 56 layers from 64 calibration samples" in printed
    assert main(["prune", RESNET56, "-o", str(out), "--ratio", "0.2"]) == 0
    printed = capfd.readouterr().out  # without data: the data-free refit, and it says so
    assert "recovery: least squares on 56 layers from 256 synthesized inputs (data-free" in printed
    assert main(["prune", RESNET56, "-o", str(out), "--ratio", "0.2", "--recover", "none"]) == 0
    assert "recovery: none: off (--recover none)" in capfd.readouterr().out
    before = set(tmp_path.iterdir())
    assert main(["prune", RESNET56, "-o", str(tmp_path / "q.onnx"), "--recover", "ls"]) == 2
    err = capfd.readouterr().err
    assert "--recover ls refits from calibration data: pass --calib DATA" in err and len(err.splitlines()) == 1
    assert set(tmp_path.iterdir()) == before


def test_data_free_recovery_beats_the_plain_cut(setting):
    """Without calibration data (recover="synthetic": least squares on synthesized
    inputs) the pruned network keeps much more of its task than the plain cut."""
    an, data = setting
    scores, _ = class_scores(an, "l1")
    plan = PruningPlan.from_removed(an, select_removed(an, scores, 0.2))
    plain = accuracy(prune(RESNET56, plan=plan, verify=False).model, *data)
    free = prune(RESNET56, plan=plan, recover="synthetic")
    assert free.report["recovery"]["data"] == "synthesized" and free.report["verification"]["ok"]
    assert accuracy(free.model, *data) > max(0.9, plain + 0.3), plain


def test_sequential_recovery_refits_from_the_pruned_inputs(setting, tmp_path, capfd):
    """recover="sequential" fits each layer from the pruned model's own input (earlier
    layers already refit), so errors do not pile up: at -52.7 % MACs it keeps more of
    the task than the one-pass fit, and every layer's reported error falls."""
    an, data = setting
    calib = load_calibration(CALIB, load_model(RESNET56), samples=64)
    scores, _ = class_scores(an, "l1")
    plan = PruningPlan.from_removed(an, select_removed(an, scores, 0.4))
    one_pass = prune(RESNET56, plan=plan, calibration=calib, verify=False)
    sequential = prune(RESNET56, plan=plan, calibration=calib, recover="sequential")
    layers = sequential.report["recovery"]["layers"]
    assert sequential.report["recovery"]["ran"] == "least squares, sequential"
    assert len(layers) == 56 and all(r["error_after"] < r["error_before"] for r in layers)
    assert sequential.report["verification"]["ok"]
    assert accuracy(sequential.model, *data) > accuracy(one_pass.model, *data) + 0.005
    before = set(tmp_path.iterdir())
    assert main(["prune", RESNET56, "-o", str(tmp_path / "q.onnx"), "--recover", "sequential"]) == 2
    assert "--recover sequential refits from calibration data: pass --calib DATA" in capfd.readouterr().err
    assert set(tmp_path.iterdir()) == before
