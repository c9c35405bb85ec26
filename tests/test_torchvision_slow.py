"""Third-party CNNs, exported from torchvision at test time (slow; needs torchvision,
which CI does not install): each must prune at ratio 0.5 to a verified model with at
least 30 % fewer MACs. The full 80-model table is benchmarks/torchvision_zoo.py."""

import importlib.util
import os
import sys
import tempfile

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="torchvision not installed"),
]

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "efficientnet_b0", "shufflenet_v2_x0_5", "regnet_x_400mf"])
def test_torchvision_model_prunes(name):
    from torchvision_zoo import one

    with tempfile.TemporaryDirectory() as d:
        row = one(name, d)
    assert row["status"] == "ok", row
    assert row["macs_reduction"] >= 0.30, row
    assert row["prediction_exact"], row
