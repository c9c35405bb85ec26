"""The scaling benchmark runs end to end at a tiny size and mirrors `prune` (no timing asserts)."""
import importlib.util
import json
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from onnxprune.compiler.pipeline import prune

BENCH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def synthetic():
    return _module("synthetic")


@pytest.fixture(scope="module")
def scaling():
    return _module("scaling")


@pytest.mark.parametrize("target", [150, 200, 1000])
def test_synthetic_node_count_close_to_target(synthetic, target):
    proto = synthetic.residual_cnn(target)
    assert abs(len(proto.graph.node) - target) <= synthetic.IDENTITY_BLOCK_NODES
    onnx.checker.check_model(proto, full_check=True)


def test_synthetic_has_projection_blocks_and_runs_with_any_batch(synthetic):
    proto = synthetic.residual_cnn(blocks=40, blocks_per_stage=16)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Add") == 40
    assert ops.count("Conv") == 1 + 2 * 40 + 2  # stem, two per block, two projection shortcuts
    assert ops[-3:] == ["GlobalAveragePool", "Flatten", "Gemm"]
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        (out,) = session.run(None, {"input": np.random.rand(batch, 3, 8, 8).astype(np.float32)})
        assert out.shape == (batch, 10) and np.isfinite(out).all()


def test_scaling_runs_and_matches_prune(scaling, synthetic, tmp_path):
    lines = []
    summary = scaling.run([200], repeats=1, out=lines.append)
    (row,) = summary["sizes"]
    assert row["nodes"] == len(synthetic.residual_cnn(200).graph.node)
    assert set(row["stages_s"]) == set(scaling.STAGES)
    assert row["verified"] is True
    assert row["channels_removed"] > 0
    assert row["macs_predicted"] == row["macs_after"] < row["macs_before"]
    assert summary["analysis_rewrite_ratio"] == 1.0 and summary["ok"]
    assert any("largest / smallest us/node" in line for line in lines)

    # The staged run must do what prune does on the same model.
    path = tmp_path / "m.onnx"
    onnx.save(synthetic.residual_cnn(200), path)
    report = prune(str(path)).report
    assert report["groups"]["channels_removed"] == row["channels_removed"]
    assert report["cost"]["before"]["macs"] == row["macs_before"]
    assert report["cost"]["after"]["macs"] == row["macs_after"]
    assert report["cost"]["after"]["params"] == row["params_after"]


def test_scaling_cli_writes_json(scaling, tmp_path, capsys):
    out = tmp_path / "out.json"
    assert scaling.main(["--sizes", "150", "--repeats", "1", "--no-verify", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["sizes"][0]["verified"] is None and "verify" not in data["sizes"][0]["stages_s"]
    assert data["target_ratio"] == scaling.TARGET_RATIO
    assert "analysis + rewrite" in capsys.readouterr().out
