"""One driver for every method: models whose nodes carry no names, plans that replay
blocks as well as channels, and one report schema."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
from support import run as ort_run

from onnxprune.cli import main
from onnxprune.compiler.everything import prune_everything
from onnxprune.compiler.pipeline import prune
from onnxprune.compiler.plan import PruningPlan
from onnxprune.compiler.target import Target
from onnxprune.model_io import load_model
from onnxprune.runtime.calibration import load_calibration

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "models")
DIGITS = os.path.join(ROOT, "digits", "digits_resnet.onnx")
CALIB = os.path.join(ROOT, "digits", "digits_calib.npz")
TEST = os.path.join(ROOT, "digits", "digits_test.npz")
SCHEMA = {"format", "method", "settings", "input_shapes", "groups", "blocks", "iterations", "chosen", "cost",
          "latency", "interface", "verification", "target_reached", "stopped_because", "recovery"}


@pytest.fixture(scope="module")
def unnamed(tmp_path_factory) -> str:
    """The digits ResNet with every node name removed (hand-built graphs, some exporters)."""
    proto = onnx.load(DIGITS)
    for node in proto.graph.node:
        node.name = ""
    path = tmp_path_factory.mktemp("unnamed") / "unnamed.onnx"
    onnx.save(proto, path)
    return str(path)


def _cli(capfd, *argv) -> str:
    code = main([str(a) for a in argv])
    out, err = capfd.readouterr()
    assert code == 0, err
    return out


def test_unnamed_nodes_layers_drops_three_blocks(unnamed, tmp_path, capfd):
    report = tmp_path / "r.json"
    _cli(capfd, "prune", unnamed, "-o", tmp_path / "l.onnx", "--method", "layers", "--calib", CALIB,
         "--target-blocks", 3, "--report", report, "--samples", 64)
    data = json.loads(report.read_text())
    assert data["blocks"]["dropped"] == 3 and data["verification"]["ok"]
    names = [s["add"] for s in data["iterations"]]
    assert len(set(names)) == 3 and all(n.startswith("Add_") for n in names)  # names given at load


def test_unnamed_nodes_everything_runs(unnamed, tmp_path, capfd):
    report = tmp_path / "r.json"
    _cli(capfd, "prune", unnamed, "-o", tmp_path / "e.onnx", "--method", "everything", "--calib", CALIB,
         "--target-flops", 0.3, "--report", report, "--samples", 64)
    data = json.loads(report.read_text())
    assert data["cost"]["macs_reduction"] >= 0.3 and data["verification"]["ok"]


def test_everything_plan_replays_blocks_and_channels(tmp_path, capfd):
    """--save-plan of an everything-at-once run, then --plan on the same model: the same
    MACs and the same outputs (the plan's blocks are applied, not only its channels)."""
    out, plan = tmp_path / "e.onnx", tmp_path / "e.plan.json"
    # The plain cut (--recover none): a recovered run refits weights every iteration, which
    # a plan (structure only) does not hold; tests/compiler/test_everything.py covers that.
    _cli(capfd, "prune", DIGITS, "-o", out, "--method", "everything", "--calib", CALIB, "--target-flops", 0.5,
         "--criterion", "l2", "--scope", "all", "--samples", 64, "--save-plan", plan, "--recover", "none")
    saved = PruningPlan.load(plan)
    assert saved.blocks and saved.channels  # both kinds of removal, or the test proves little
    replay = tmp_path / "replay.onnx"
    _cli(capfd, "prune", DIGITS, "-o", replay, "--plan", plan, "--recover", "none")
    x = np.load(TEST)["x"][:64]
    a, b = ort_run(onnx.load(out), {"input": x}), ort_run(onnx.load(replay), {"input": x})
    assert np.array_equal(a["logits"], b["logits"])
    first = prune(DIGITS, plan=saved)
    direct = prune_everything(DIGITS, load_calibration(CALIB, load_model(DIGITS), samples=64), target=Target(flops=0.5),
                              criterion="l2", scope="all", progress=False, measure=False, recover="none")
    assert first.report["cost"]["after"] == direct.report["cost"]["after"]


def test_plan_of_blocks_only_needs_no_channel_analysis(tmp_path):
    blocks_plan = PruningPlan(blocks=[{"add": b} for b in ("/layer1/layer1.1/Add", "/layer2/layer2.1/Add")])
    result = prune(DIGITS, plan=blocks_plan)
    assert result.report["groups"] is None and result.report["blocks"]["dropped"] == 2
    assert result.report["verification"]["ok"]
    with pytest.raises(Exception, match="does not have"):
        prune(DIGITS, plan=PruningPlan(blocks=[{"add": "no such node"}]))


def test_one_report_schema_for_every_method(tmp_path):
    calib = load_calibration(CALIB, load_model(DIGITS), samples=32)
    from onnxprune.compiler.layers import prune_layers

    reports = {
        "channels": prune(DIGITS, ratio=0.25).report,
        "plan": prune(DIGITS, plan=PruningPlan(blocks=[{"add": "/layer1/layer1.1/Add"}])).report,
        "layers": prune_layers(DIGITS, calib, target=Target(blocks=1), progress=False).report,
        "everything": prune_everything(DIGITS, calib, target=Target(blocks=1), progress=False, measure=False).report,
    }
    for method, report in reports.items():
        assert set(report) == SCHEMA, method
        assert report["method"] == method and report["format"] == "onnxprune.report/1"


def test_activation_criterion_scores_from_data():
    calib = load_calibration(CALIB, load_model(DIGITS), samples=64)
    result = prune_everything(DIGITS, calib, target=Target(flops=0.1), criterion="activation", arbiter="neurons",
                              progress=False, measure=False)
    assert result.report["chosen"]["neurons"] >= 1 and result.report["verification"]["ok"]
    assert result.report["settings"]["criterion"] == "activation"
