"""A Conv's geometry from its attributes: kernel, strides, dilations and the padding it
applies to an input of a given spatial size (auto_pad resolved). Shared by the
unfolding of calibration activations (runtime/statistics.py) and the data-free means
(passes/batchnorm_statistics.py), so both read padding the same way."""

from __future__ import annotations

import onnx_ir as ir


def conv_geometry(node: ir.Node, kernel: list[int]) -> tuple[list[int], list[int]]:
    """(strides, dilations) of a Conv with this kernel."""
    spatial = len(kernel)
    return (list(node.attributes.get_ints("strides", [1] * spatial)),
            list(node.attributes.get_ints("dilations", [1] * spatial)))


def conv_pads(node: ir.Node, size, kernel, strides, dilations) -> list[int]:
    """Pads [begins…, ends…] for an input of spatial `size` (auto_pad SAME_* computed)."""
    auto = node.attributes.get_string("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for n, k, s, d in zip(size, kernel, strides, dilations):
            out = -(-n // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
            small, large = total // 2, total - total // 2
            begin.append(large if auto == "SAME_LOWER" else small)
            end.append(small if auto == "SAME_LOWER" else large)
        return begin + end
    return list(node.attributes.get_ints("pads", [0] * (2 * len(kernel))))
