"""The reliability contract: exit 0 means a drop-in model (same interface, and the same
numbers where the removal was provably exact), and every failure is one clean line."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
from support import run

from onnxprune.compiler.pipeline import prune


def _model(text: str, weights: dict) -> onnx.ModelProto:
    proto = onnx.parser.parse_model(text)
    rng = np.random.default_rng(0)
    for name, shape in weights.items():
        proto.graph.initializer.append(onnx.numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name))
    return proto


def test_a_concat_of_the_input_is_no_kv_cache():
    """A CNN's skip concatenation exposed as an output keeps its shape, and so does the
    image input: only a concatenation that feeds attention is a cache."""
    proto = _model(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1,8,16,16] x) => (float[1,18,16,16] cat, float[1,4,16,16] y) {
          t = Conv<pads = [1, 1, 1, 1]>(x, w1)
          cat = Concat<axis = 1>(t, x)
          y = Conv(t, w2)
        }
        """,
        {"w1": (10, 8, 3, 3), "w2": (4, 10, 1, 1)},
    )
    result = prune(proto, ratio=0.5)
    assert result.report["interface"] == []
    assert result.report["verification"]["ok"]
    x = np.random.default_rng(1).standard_normal((1, 8, 16, 16)).astype(np.float32)
    assert run(result.model, {"x": x})["cat"].shape == (1, 18, 16, 16)
