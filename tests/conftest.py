"""Shared test fixtures: small models built from ONNX text (no torch)."""
import numpy as np
import onnx
import onnx.numpy_helper
import onnx.parser
import pytest

CONV_RELU_CONV = """
<ir_version: 8, opset_import: ["" : 17]>
conv_relu_conv (float[N,3,8,8] x) => (float[N,4,8,8] y) {
  h = Conv<pads = [1, 1, 1, 1]>(x, w1, b1)
  r = Relu(h)
  y = Conv<pads = [1, 1, 1, 1]>(r, w2, b2)
}
"""


def conv_relu_conv(width: int = 8, seed: int = 0) -> onnx.ModelProto:
    """x[N,3,8,8] -> Conv3x3(width) -> Relu -> Conv3x3(4) -> y, with random weights."""
    rng = np.random.default_rng(seed)
    proto = onnx.parser.parse_model(CONV_RELU_CONV)
    weights = {
        "w1": rng.standard_normal((width, 3, 3, 3)),
        "b1": rng.standard_normal(width),
        "w2": rng.standard_normal((4, width, 3, 3)),
        "b2": rng.standard_normal(4),
    }
    for name, array in weights.items():
        proto.graph.initializer.append(onnx.numpy_helper.from_array(array.astype(np.float32), name))
    return proto


@pytest.fixture
def crc_proto() -> onnx.ModelProto:
    return conv_relu_conv()


@pytest.fixture
def crc_path(tmp_path, crc_proto) -> str:
    path = tmp_path / "crc.onnx"
    onnx.save(crc_proto, path)
    return str(path)
