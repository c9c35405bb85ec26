"""apply_plan on a PyTorch state_dict: the digits ResNet-56 (TorchScript export, BatchNorm
folded into the convs, so ONNX initializers are renamed onnx::Conv_N) pruned in ONNX;
the sliced state_dict in the PyTorch model computes what the pruned ONNX model computes."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from onnxprune.compiler.everything import prune_everything
from onnxprune.compiler.pipeline import prune
from onnxprune.compiler.state_dict import apply_plan, module_path
from onnxprune.compiler.target import Target
from onnxprune.model_io import load_model
from onnxprune.runtime.calibration import load_calibration
from onnxprune.runtime.session import ort_session, run_session

torch = pytest.importorskip("torch")
REPO = os.path.join(os.path.dirname(__file__), "..", "..")
ONNX = os.path.join(REPO, "models", "digits", "digits_resnet56.onnx")
PT = os.path.join(REPO, "models", "digits", "digits_resnet56.pt")
TEST = os.path.join(REPO, "models", "digits", "digits_test.npz")


def _torch_model(state_dict):
    sys.path.insert(0, os.path.abspath(REPO))
    from models.digits.digits_data import load_trained

    net = load_trained(56)
    modules = dict(net.named_modules())
    for key, value in state_dict.items():
        owner, _, attr = key.rpartition(".")
        current = getattr(modules[owner], attr)
        setattr(modules[owner], attr, torch.nn.Parameter(value.clone()) if isinstance(current, torch.nn.Parameter) else value.clone())
    return net.eval()


def test_module_paths():
    assert module_path("/layer1/layer1.0/conv1/Conv") == "layer1.0.conv1"
    assert module_path("/layer3/layer3.0/shortcut/shortcut.0/Conv") == "layer3.0.shortcut.0"
    assert module_path("/conv1/Conv") == "conv1" and module_path("node_conv") is None


def test_sliced_state_dict_matches_pruned_onnx():
    result = prune(ONNX, ratio=0.3)
    state = torch.load(PT)
    new, report = apply_plan(state, result.plan, ONNX)
    assert not report["unmapped"], report["unmapped"]
    assert new["layer1.0.conv1.weight"].shape[0] < state["layer1.0.conv1.weight"].shape[0]
    assert new["layer1.0.bn1.running_mean"].shape[0] == new["layer1.0.conv1.weight"].shape[0]
    x = np.load(TEST)["x"][:64]
    with torch.no_grad():
        got = _torch_model(new)(torch.from_numpy(x)).numpy()
    want = run_session(ort_session(result.model), {"input": x})["logits"]
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-4
    # Negative control: the unsliced weights do not even run at the pruned widths' outputs.
    assert not np.allclose(run_session(ort_session(load_model(ONNX)), {"input": x})["logits"], want)


def test_everything_plan_lists_dropped_modules():
    model = load_model(ONNX)
    calib = load_calibration(os.path.join(REPO, "models", "digits", "digits_calib.npz"), model, samples=32)
    result = prune_everything(ONNX, calib, target=Target(blocks=2), arbiter="layers", progress=False, measure=False)
    new, report = apply_plan(torch.load(PT), result.plan, ONNX, drop_blocks=True)
    assert len(report["dropped_modules"]) >= 2
    assert all(not k.startswith(p + ".") for p in report["dropped_modules"] for k in new)
