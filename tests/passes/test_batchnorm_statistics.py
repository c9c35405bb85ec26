"""Data-free means from BatchNorm statistics (passes/batchnorm_statistics.py): on inputs
drawn with the running statistics a BatchNorm stores, the means it predicts for a Conv's
unfolded input (Relu and padding included) and for a Gemm after global pooling are what
ONNX Runtime's activations average to; anything else between is refused with the op's
name; and `--recover batchnorm` runs from the CLI with no data, saying so."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from test_rules_common import build, run

from onnxprune.model_io import load_model
from onnxprune.passes.batchnorm_statistics import _rectified_mean, batchnorm_moments
from onnxprune.passes.recovery import Consumer
from onnxprune.runtime.statistics import unfold

ROOT = Path(__file__).resolve().parents[2]
C = 4
STATS = {
    "scale": np.array([1.5, -0.7, 0.2, 2.0], np.float32),
    "beta": np.array([0.3, -0.5, 1.0, 0.0], np.float32),
    "mean": np.array([2.0, -1.0, 0.5, 0.0], np.float32),
    "var": np.array([4.0, 0.25, 1.0, 9.0], np.float32),
}


def _bn_inputs(n: int, h: int, w: int) -> np.ndarray:
    """Samples whose channels follow the BatchNorm's running mean and variance."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, C, h, w)) * np.sqrt(STATS["var"])[:, None, None] + STATS["mean"][:, None, None]
    return x.astype(np.float32)


def test_rectified_gaussian_mean_matches_sampling():
    mu, sigma = np.array([-1.0, 0.0, 0.7, 2.0, 0.5]), np.array([0.5, 1.0, 2.0, 0.1, 0.0])
    draws = np.random.default_rng(1).standard_normal((400_000, 5)) * sigma + mu
    np.testing.assert_allclose(_rectified_mean(mu, sigma), np.maximum(draws, 0).mean(axis=0), atol=0.01)
    assert _rectified_mean(np.array([0.0]), np.array([1.0]))[0] == pytest.approx(1 / math.sqrt(2 * math.pi))


@pytest.mark.parametrize("attrs", ["pads = [1, 1, 1, 1]", "strides = [2, 2], pads = [0, 1, 1, 0]", 'auto_pad = "SAME_UPPER"'])
def test_conv_input_means_are_what_the_data_averages_to(attrs):
    h, w = 6, 7
    proto = build(
        f"""g (float[N,{C},{h},{w}] x) => (float[N,3,?,?] y) {{
            b = BatchNormalization<epsilon = 0.001>(x, scale, beta, mean, var)
            r = Relu(b)
            y = Conv<{attrs}>(r, w1)
        }}""",
        {"w1": (3, C, 3, 3), **STATS},
    )
    model = load_model(proto)
    conv = next(n for n in model.graph if n.op_type == "Conv")
    consumer = Consumer(conv.name, "Conv", "r", 1, 0, 1, np.ones(C, bool), 9)
    found, why = batchnorm_moments(model, [consumer], {"r": (1, C, h, w)})
    assert why == {}
    predicted = found[conv.name].total
    x = _bn_inputs(2000, h, w)
    relu = run(_with_output(proto, "r"), {"x": x})["r"]
    observed = unfold(conv, relu, consumer).mean(axis=0)
    np.testing.assert_allclose(predicted, observed, rtol=0.05, atol=0.01)  # sampling noise
    assert predicted.std() > 0.05  # padding makes border taps differ from the centre


def test_gemm_after_global_pooling_reads_the_channel_means():
    proto = build(
        f"""g (float[N,{C},5,5] x) => (float[N,2] y) {{
            b = BatchNormalization(x, scale, beta, mean, var)
            r = Relu(b)
            p = GlobalAveragePool(r)
            f = Flatten(p)
            y = Gemm<transB = 1>(f, w1, b1)
        }}""",
        {"w1": (2, C), "b1": (2,), **STATS},
    )
    model = load_model(proto)
    gemm = next(n for n in model.graph if n.op_type == "Gemm")
    consumer = Consumer(gemm.name, "Gemm", "f", 1, 0, 1, np.ones(C, bool), 1)
    found, _ = batchnorm_moments(model, [consumer], {"p": (1, C, 1, 1)})
    observed = run(_with_output(proto, "f"), {"x": _bn_inputs(4000, 5, 5)})["f"].mean(axis=0)
    np.testing.assert_allclose(found[gemm.name].total, observed, atol=0.02)


def test_other_ops_in_between_are_named():
    proto = build(
        f"""g (float[N,{C},5,5] x) => (float[N,3,5,5] y) {{
            b = BatchNormalization(x, scale, beta, mean, var)
            s = Sigmoid(b)
            y = Conv<pads = [1, 1, 1, 1]>(s, w1)
        }}""",
        {"w1": (3, C, 3, 3), **STATS},
    )
    model = load_model(proto)
    conv = next(n for n in model.graph if n.op_type == "Conv")
    found, why = batchnorm_moments(model, [Consumer(conv.name, "Conv", "s", 1, 0, 1, np.ones(C, bool), 9)])
    assert found == {}
    assert "Sigmoid" in why[conv.name] and "lies between" in why[conv.name]


def _with_output(proto, name: str):
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    copy.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return copy


def test_cli_recovers_from_batchnorm_statistics_without_data(tmp_path):
    """paddle2onnx keeps BatchNorm: the layers it feeds get their bias compensated with no
    data; the others are listed with why; the output says where the statistics came from."""
    model = ROOT / "models/frameworks/paddle/paddle_resnet18.onnx"
    out, report = tmp_path / "out.onnx", tmp_path / "r.json"
    done = subprocess.run(
        [sys.executable, "-m", "onnxprune.cli", "prune", str(model), "-o", str(out), "--ratio", "0.25",
         "--recover", "batchnorm", "--report", str(report)],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "BatchNorm running statistics (data-free" in done.stdout
    rec = json.loads(report.read_text())["recovery"]
    assert rec["data"] == "batchnorm statistics" and rec["calibration_samples"] is None
    refit = [r for r in rec["layers"] if r["refit"] == "bias, batchnorm statistics"]
    skipped = [r for r in rec["layers"] if r["refit"] is None]
    assert refit, rec
    assert all("BatchNorm" in r["why"] for r in skipped)
    assert out.exists()
