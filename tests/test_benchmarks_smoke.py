"""The benchmarks run end to end at tiny sizes: the scaling benchmark mirrors `prune`, and
benchmarks/gpu.py leaves every section's numbers (no timing asserts)."""
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


@pytest.fixture(scope="module")
def transformer_graphs():
    return _module("transformer_graphs")


@pytest.mark.parametrize("kind", ["vit", "decoder"])
def test_gpu_benchmark_graphs_have_head_and_mlp_groups(transformer_graphs, kind, tmp_path):
    """The hand-built graphs look like exports to onnxprune: every layer's heads and MLP
    neurons are prunable groups, and the copy saved with external data runs the same."""
    from onnxprune.compiler.pipeline import inspect

    tiny = {"width": 64, "heads": 4, "mlp": 128, "layers": 2}
    if kind == "vit":
        build, shapes = transformer_graphs.vit, {"pixel_values": [2, 3, 32, 32]}
        tiny.update(image=32, patch=8, classes=10)
        feeds = {"pixel_values": np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)}
    else:
        build, shapes = transformer_graphs.decoder, {"input_ids": [2, 16]}
        tiny.update(vocab=100, seq=16)
        feeds = {"input_ids": np.random.default_rng(0).integers(0, 100, (2, 16))}
    proto = build(**tiny)
    onnx.checker.check_model(proto, full_check=True)
    path = str(tmp_path / f"{kind}.onnx")
    build(**tiny, path=path)
    assert (tmp_path / f"{kind}.onnx.data").stat().st_size >= 4 * transformer_graphs.parameters(proto) * 0.9
    in_memory = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    from_file = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)
    np.testing.assert_array_equal(in_memory[0], from_file[0])
    assert np.isfinite(in_memory[0]).all()

    groups = inspect(path, input_shapes=shapes)["groups"]
    by_kind = {k: [g for g in groups if g["kind"] == k and g["prunable"]] for k in ("heads", "channels")}
    assert [g["size"] for g in by_kind["heads"]] == [4, 4]
    assert [g["size"] for g in by_kind["channels"]] == [128, 128]


def test_gpu_benchmark_quick_cpu_run(monkeypatch, tmp_path):
    """benchmarks/gpu.py end to end on the CPU at its quick sizes (digits shortened to one
    or two iterations to stay well under a minute): every section leaves numbers."""
    gpu = _module("gpu")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # --cpu sets it; restored after the test
    out = tmp_path / "gpu.json"
    argv = ["--quick", "--cpu", "--out", str(out), "--workdir", str(tmp_path / "work"),
            "--digits-target", "0.05", "--digits-samples", "64"]
    assert gpu.main(argv) == 0
    data = json.loads(out.read_text())
    assert data["mode"] == "cpu (--cpu)" and data["failed"] == {}
    sections = data["sections"]
    assert set(sections) == set(gpu.SECTIONS)

    env = sections["environment"]
    assert env["onnxruntime"] and "CPUExecutionProvider" in env["available_providers"]
    assert env["probe_providers"][0] == "CPUExecutionProvider" and env["probe_uses_cuda"] is False
    assert env["probe_pass_s"] > 0

    cka = sections["cka"]
    assert cka["gpu_peak_tflops"] is None and cka["cpu_peak_fp64_tflops"] > 0
    assert cka["rows"] and all(r["numpy_ms"] > 0 and r["numpy_share_of_cpu_peak"] > 0 for r in cka["rows"])

    digits = sections["digits"]
    assert digits["exit_code"] in (0, 3) and digits["seconds"] > 0 and digits["peak_rss_gib"] > 0
    assert digits["macs_after"] < digits["macs_before"] and digits["macs_reduction"] > 0
    assert 0 < digits["accuracy_before"] <= 1 and 0 < digits["accuracy_after"] <= 1
    assert digits["gpu_mem_peak_mib"] is None

    for kind, layers in (("vit", gpu.QUICK_VIT["layers"]), ("decoder", gpu.QUICK_DECODER["layers"])):
        run = sections[kind]
        assert run["exit_code"] == 0 and run["verified"] is True, run["output_tail"]
        assert run["seconds"] > 0 and run["build_s"] > 0 and run["peak_rss_gib"] > 0
        heads, mlp = run["groups"]["heads"], run["groups"]["channels"]
        assert heads["prunable_groups"] == layers and heads["removed"] > 0  # the heads really went
        assert mlp["prunable_groups"] == layers and mlp["removed"] > 0
        assert run["groups"]["hidden"]["removed"] == 0 and run["interface_changes"] == []
        assert run["macs_after"] < run["macs_before"]
    assert not (tmp_path / "work" / "decoder.pruned.onnx").exists()  # outputs removed once measured
