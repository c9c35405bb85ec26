"""`onnxprune sweep`: every model × method × target is one prune run with its own model
and report, the summary lists them all, and a run that fails makes the sweep exit 1
without stopping the others."""
from __future__ import annotations

import json
import os
import re

from onnxprune.cli import main

DIGITS = os.path.join(os.path.dirname(__file__), "..", "models", "digits")
MODEL, CALIB = os.path.join(DIGITS, "digits_resnet.onnx"), os.path.join(DIGITS, "digits_calib.npz")


def test_sweep_runs_every_combination(tmp_path, capfd):
    out = tmp_path / "runs"
    code = main(["sweep", MODEL, "-o", str(out), "--calib", CALIB, "--method", "layers", "everything",
                 "--target-flops", "0.1", "0.2", "--samples", "64", "--recover", "none", "--html"])
    assert code == 0
    rows = json.loads((out / "summary.json").read_text())["runs"]
    assert [r["name"] for r in rows] == ["digits_resnet.layers.0.1", "digits_resnet.layers.0.2",
                                         "digits_resnet.everything.0.1", "digits_resnet.everything.0.2"]
    for r in rows:
        assert r["exit"] == 0 and r["verified"] and r["target_reached"]
        assert r["macs_reduction"] >= r["target_flops"]
        assert (out / f"{r['name']}.onnx").exists() and (out / f"{r['name']}.json").exists()
        page = (out / f"{r['name']}.html").read_text()  # --html: each run's page, with its prune
        data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.DOTALL).group(1))
        assert data["prune"]["method"] == r["method"] and data["prune"]["cost"]["macs_reduction"] >= r["target_flops"]
    assert "| digits_resnet.everything.0.2 | 0 |" in capfd.readouterr().out


def test_a_failed_run_is_reported_and_the_rest_go_on(tmp_path, capfd):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    out = tmp_path / "runs"
    code = main(["sweep", str(bad), MODEL, "-o", str(out), "--calib", CALIB, "--method", "layers",
                 "--target-flops", "0.1", "--samples", "32", "--recover", "none"])
    assert code == 1
    rows = {r["name"]: r for r in json.loads((out / "summary.json").read_text())["runs"]}
    assert rows["bad.layers.0.1"]["exit"] == 1 and rows["bad.layers.0.1"]["stderr"].startswith("onnxprune: error:")
    assert rows["digits_resnet.layers.0.1"]["exit"] == 0
    assert not (out / "bad.layers.0.1.onnx").exists()
