"""Shared test fixtures: small models built from ONNX text (no torch)."""
import onnx
import onnx.numpy_helper
import onnx.parser
import pytest
from support import conv_relu_conv


@pytest.fixture
def crc_proto() -> onnx.ModelProto:
    return conv_relu_conv()


@pytest.fixture
def crc_path(tmp_path, crc_proto) -> str:
    path = tmp_path / "crc.onnx"
    onnx.save(crc_proto, path)
    return str(path)
