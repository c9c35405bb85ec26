"""Strategy `layers`: the paper's eligibility rules, the CKA choice (checked against an
independent computation), and the emitted model (verified, cost as predicted)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from onnxprune.cli import main
from onnxprune.compiler.layers import eligible, prune_layers
from onnxprune.compiler.target import Target
from onnxprune.errors import OnnxPruneError
from onnxprune.model_io import load_model
from onnxprune.passes.blocks import find_blocks
from onnxprune.runtime.calibration import load_calibration
from onnxprune.runtime.cka import linear_cka
from onnxprune.runtime.probe import Candidate, ProbeModel

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "models")
DIGITS = os.path.join(ROOT, "digits", "digits_resnet.onnx")
CALIB = os.path.join(ROOT, "digits", "digits_calib.npz")
RESNET56 = os.path.join(ROOT, "zoo", "resnet56.onnx")


def test_resnet56_can_lose_at_most_21_blocks():
    """DESIGN: identity blocks only, never the first, every stage keeps 2 -> 21 of 27."""
    blocks = find_blocks(load_model(RESNET56))
    dropped: set[int] = set()
    while True:
        choices = eligible(blocks, dropped, 2)
        if not choices:
            break
        dropped.add(choices[-1])
    assert len(blocks) == 27 and len(dropped) == 21
    assert min(b.id for b in blocks) not in dropped
    assert all(b.kind == "identity" for b in blocks if b.id in dropped)


def test_first_choice_is_the_most_similar_block():
    model = load_model(DIGITS)
    calib = load_calibration(CALIB, model, samples=128)
    result = prune_layers(DIGITS, calib, target=Target(blocks=1), progress=False)
    step = result.report["iterations"][0]
    # Independently: every eligible block's CKA to the parent, in one-off computations.
    probe = ProbeModel(model)
    x = calib.feeds()
    parent = probe.run(x, [Candidate()])[0][probe.taps[0]]
    scores = {}
    for b in eligible(find_blocks(model), set(), 2):
        feats = probe.run(x, [Candidate(blocks=frozenset([b]))])[0][probe.taps[0]]
        scores[b] = linear_cka(feats.reshape(len(feats), -1), parent.reshape(len(parent), -1), backend="numpy")
    assert step["block"] == max(scores, key=scores.get)
    assert abs(step["cka"] - scores[step["block"]]) < 1e-9


def test_target_flops_gives_a_verified_model_with_predicted_cost():
    calib = load_calibration(CALIB, load_model(DIGITS), samples=96)
    result = prune_layers(DIGITS, calib, target=Target(flops=0.2), progress=False)
    report = result.report
    assert report["verification"]["ok"]
    assert report["cost"]["predicted"] == report["cost"]["after"]
    assert report["cost"]["macs_reduction"] >= 0.2
    steps = report["iterations"]
    assert steps and steps[-1]["macs_after"] == report["cost"]["after"]["macs"]
    assert len(result.plan.blocks) == len(steps) == report["blocks"]["dropped"]
    adds = {n.name for n in result.model.graph if n.op_type == "Add"}
    assert not adds & {s["add"] for s in steps}


def test_random_order_is_reproducible_and_uses_no_cka():
    calib = load_calibration(CALIB, load_model(DIGITS), samples=32)
    a = prune_layers(DIGITS, calib, target=Target(blocks=2), order="random", seed=3, progress=False, verify=False)
    b = prune_layers(DIGITS, calib, target=Target(blocks=2), order="random", seed=3, progress=False, verify=False)
    assert [s["block"] for s in a.report["iterations"]] == [s["block"] for s in b.report["iterations"]]
    assert all(s["cka"] is None for s in a.report["iterations"])


def test_model_without_blocks_is_refused():
    vgg = os.path.join(ROOT, "zoo", "vgg.onnx")
    calib = load_calibration(np.zeros((4, 3, 32, 32), np.float32), load_model(vgg))
    with pytest.raises(OnnxPruneError, match="no removable residual block"):
        prune_layers(vgg, calib, target=Target(flops=0.5), progress=False)


def test_cli_layers(tmp_path, capfd):
    out, report = tmp_path / "small.onnx", tmp_path / "r.json"
    argv = ["prune", DIGITS, "-o", str(out), "--method", "layers", "--calib", CALIB, "--samples", "64",
            "--target-blocks", "2", "--report", str(report)]
    assert main(argv) == 0, capfd.readouterr().err
    printed = capfd.readouterr().out
    assert "2 of 8 removable residual blocks dropped by CKA" in printed
    data = json.loads(report.read_text())
    assert len(data["iterations"]) == 2 and data["plan"]["blocks"]
    assert out.exists()


@pytest.mark.parametrize(
    "extra, message",
    [([], "give a target"), (["--target-flops", "1.5"], "in (0, 1)"), (["--target-blocks", "0"], "at least 1")],
)
def test_cli_layers_bad_targets(tmp_path, capfd, extra, message):
    argv = ["prune", DIGITS, "-o", str(tmp_path / "x.onnx"), "--method", "layers", "--calib", CALIB, *extra]
    assert main(argv) == 2  # bad usage (the reliability issue: out-of-range values are usage errors)
    err = capfd.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.onnx").exists()


def test_cli_layers_needs_calibration(tmp_path, capfd):
    assert main(["prune", DIGITS, "-o", str(tmp_path / "x.onnx"), "--method", "layers", "--target-flops", "0.3"]) == 2
    assert "--calib" in capfd.readouterr().err


def test_inspect_blocks(capfd):
    assert main(["inspect", DIGITS, "--blocks", "--no-nodes"]) == 0
    out = capfd.readouterr().out
    assert "residual blocks: 9 (8 removable, 1 not)" in out and "projection" in out
    assert main(["inspect", DIGITS, "--blocks", "--json"]) == 0
    data = json.loads(capfd.readouterr().out)
    assert len(data["blocks"]) == 9 and sum(b["removable"] for b in data["blocks"]) == 8
