"""onnxprune: structured pruning of ONNX graphs, with verified output."""

__version__ = "0.1.0"
