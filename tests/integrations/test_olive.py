"""The Olive pass (onnxprune/integrations/olive.py) in real Olive workflows on the
committed digits ResNet-20: the output model is smaller, runs in ONNX Runtime with the
same interface, the report travels with it, and bad settings fail in one line before
anything is written."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

# Olive sends telemetry by default; tests must not reach the network.
os.environ.setdefault("OLIVE_DISABLE_TELEMETRY", "1")
pytest.importorskip(
    "olive",
    reason="olive-ai needs torch, not in CI's install; run in a venv with `pip install olive-ai`",
)

from olive.workflows import run as olive_run
from support import (
    DIGITS,
    DIGITS_MODEL,
    input_signature,
    measured_cost,
    output_signature,
    session,
)

from onnxprune.integrations.olive import OnnxPruneConfigError, package_config

CALIB = str(DIGITS / "digits_calib.npz")


def workflow(tmp_path, passes: dict) -> dict:
    return {
        "input_model": {"type": "ONNXModel", "model_path": str(DIGITS_MODEL)},
        "systems": {"local": {"type": "LocalSystem",
                              "accelerators": [{"device": "cpu", "execution_providers": ["CPUExecutionProvider"]}]}},
        "host": "local",
        "target": "local",
        "passes": passes,
        "cache_dir": str(tmp_path / "cache"),
        "output_dir": str(tmp_path / "out"),
        "log_severity_level": 3,
    }


def run_workflow(tmp_path, passes: dict) -> str:
    """Run the workflow; the path of the output model."""
    olive_run(workflow(tmp_path, passes), package_config=package_config(), tempdir=str(tmp_path))
    config = json.loads((tmp_path / "out" / "model_config.json").read_text())["config"]
    return os.path.join(config["model_path"], config["onnx_file_name"])


def check_pruned(path: str) -> dict:
    """Smaller than the input, valid, same interface, runs; the report beside it."""
    original, pruned = onnx.load(str(DIGITS_MODEL)), onnx.load(path)
    onnx.checker.check_model(pruned)
    assert input_signature(pruned) == input_signature(original)
    assert output_signature(pruned) == output_signature(original)
    before, after = measured_cost(original), measured_cost(pruned)
    assert after["macs"] < before["macs"] and after["params"] < before["params"]

    x = np.load(CALIB)["x"][:4]
    sess = session(path)
    (logits,) = sess.run(None, {sess.get_inputs()[0].name: x})
    assert logits.shape == (4, 10) and np.isfinite(logits).all()

    report = json.loads((Path(path).parent / "onnxprune_report.json").read_text())
    assert report["cost"]["after"]["macs"] < report["cost"]["before"]["macs"]
    return report


def test_everything_in_a_workflow(tmp_path):
    path = run_workflow(tmp_path, {
        "prune": {"type": "OnnxPrune", "method": "everything", "target_flops": 0.2,
                  "calibration": CALIB, "samples": 64},
    })
    report = check_pruned(path)
    assert report["method"] == "everything" and report["target_reached"] is True
    assert report["cost"]["macs_reduction"] >= 0.2
    assert report["recovery"]["data"] != "synthesized"  # refit on the calibration file


def test_channels_then_an_olive_pass(tmp_path):
    # The package config keeps Olive's own passes, and the report follows the model through them.
    path = run_workflow(tmp_path, {
        "prune": {"type": "OnnxPrune", "ratio": 0.5, "criterion": "l1"},
        "peephole": {"type": "OnnxPeepholeOptimizer", "onnxoptimizer_optimize": False},
    })
    report = check_pruned(path)
    assert report["method"] == "channels"
    assert report["cost"]["macs_reduction"] > 0.5


def test_plan_replay_with_accuracy(tmp_path):
    """A plan saved by the CLI, applied in a workflow, gives the CLI's model; eval puts
    the accuracy before and after in the report."""
    from onnxprune.cli import main

    plan, cli_out = tmp_path / "plan.json", tmp_path / "cli.onnx"
    assert main(["prune", str(DIGITS_MODEL), "-o", str(cli_out), "--ratio", "0.3", "--save-plan", str(plan),
                 "--recover", "none"]) == 0
    path = run_workflow(tmp_path, {"prune": {"type": "OnnxPrune", "plan": str(plan), "recover": "none",
                                             "eval": str(DIGITS / "digits_test.npz")}})
    report = check_pruned(path)
    assert report["method"] == "plan"
    assert measured_cost(onnx.load(path)) == measured_cost(onnx.load(str(cli_out)))
    assert 0.5 < report["accuracy"]["before"] <= 1 and 0 <= report["accuracy"]["after"] <= 1


def test_heads_and_mlp_of_a_transformer(tmp_path):
    """Per-kind ratios (as --heads/--hidden/--channels) on the ViT fixture: heads and MLP
    neurons go, the hidden width and the interface stay."""
    vit = str(DIGITS.parent / "transformers" / "vit.onnx")
    config = workflow(tmp_path, {"prune": {"type": "OnnxPrune", "ratio": 0.0, "heads": 0.25, "hidden": 0.0,
                                           "channels": 0.25, "recover": "synthetic"}})
    config["input_model"]["model_path"] = vit
    olive_run(config, package_config=package_config(), tempdir=str(tmp_path))
    out = json.loads((tmp_path / "out" / "model_config.json").read_text())["config"]
    path = os.path.join(out["model_path"], out["onnx_file_name"])
    report = json.loads((Path(path).parent / "onnxprune_report.json").read_text())
    removed = {}
    for g in report["groups"]["detail"]:
        removed.setdefault(g["kind"], 0)
        removed[g["kind"]] += g["removed"]
    assert removed["heads"] > 0 and removed["channels"] > 0 and removed["hidden"] == 0
    assert report["settings"]["kind_ratios"] == {"heads": 0.25, "hidden": 0.0, "channels": 0.25}
    original, pruned = onnx.load(vit), onnx.load(path)
    assert input_signature(pruned) == input_signature(original)
    assert output_signature(pruned) == output_signature(original)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"method": "blocks"}, "method must be one of channels, layers, everything"),
        ({"ratio": 1.5}, r"ratio is the fraction of channels to remove, in \[0, 1\)"),
        ({"ratio": "half"}, "ratio: Input should be a valid number"),
        ({"ratoi": 0.3}, "unknown parameter 'ratoi': did you mean 'ratio'"),
        ({"method": "everything", "target_flops": 0.2}, "needs calibration data: set calibration"),
        ({"method": "layers", "calibration": CALIB}, "needs a target: set target_flops"),
        ({"target_flops": 0.2}, "target_flops is for method layers or everything"),
        ({"criterion": "wanda"}, "scores channels on calibration data"),
        ({"calibration": "missing.npz"}, "does not exist"),
        ({"report_name": "sub/report.json"}, "no folders"),
        ({"plan": "missing.json"}, "plan file .*missing.json does not exist"),
        ({"plan": CALIB, "method": "everything"}, "plan replays a saved plan"),
        ({"heads": 1.0}, r"heads is the fraction of heads units to remove, in \[0, 1\)"),
        ({"method": "layers", "calibration": CALIB, "target_flops": 0.2, "heads": 0.5}, "ratios for method channels"),
    ],
)
def test_bad_config_fails_in_one_line_before_any_work(tmp_path, settings, message):
    with pytest.raises(OnnxPruneConfigError, match=message) as err:
        run_workflow(tmp_path, {"prune": {"type": "OnnxPrune", **settings}})
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_importing_onnxprune_does_not_import_olive():
    code = ("import sys, onnxprune, onnxprune.cli, onnxprune.compiler.pipeline, onnxprune.integrations; "
            "assert 'olive' not in sys.modules, 'olive imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
