"""Synthetic deep residual CNNs of a chosen node count, built with onnx.helper (no torch).

    input[batch, 3, 8, 8]
      → stem: Conv3x3 → BN → Relu
      → B residual blocks, stages of `blocks_per_stage`; the first block of every stage
        after the first is a projection block (1×1 Conv + BN shortcut, width change,
        stride 2 while the feature map is larger than `min_spatial`)
      → GlobalAveragePool → Flatten → Gemm → logits[batch, 10]

Node counts: stem 3, head 3, identity block 7 (Conv BN Relu Conv BN Add Relu),
projection block 9 (+ shortcut Conv, BN). `residual_cnn(target_nodes=...)` picks the
number of blocks whose total is closest to the target.

Channels stay small (widths cycle through `widths`) and the map tiny (8×8 at most) so
ONNX Runtime runs the model in milliseconds even at 50k nodes. Weights are random but
scaled so activations stay finite however deep the net: the second BN of every residual
branch has gamma ≈ 1/√B, so each block adds O(1/B) of variance.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STEM_NODES = 3
HEAD_NODES = 3
IDENTITY_BLOCK_NODES = 7
PROJECTION_BLOCK_NODES = 9
DEFAULT_WIDTHS = (16, 24, 32)


def _n_projections(blocks: int, blocks_per_stage: int) -> int:
    return max(0, (blocks - 1) // blocks_per_stage)


def node_count(blocks: int, blocks_per_stage: int = 16) -> int:
    """Nodes of a model with `blocks` residual blocks."""
    proj = _n_projections(blocks, blocks_per_stage)
    extra = PROJECTION_BLOCK_NODES - IDENTITY_BLOCK_NODES
    return STEM_NODES + HEAD_NODES + IDENTITY_BLOCK_NODES * blocks + extra * proj


def blocks_for(target_nodes: int, blocks_per_stage: int = 16) -> int:
    """The number of blocks whose node count is closest to `target_nodes` (at least 1)."""
    per_block = IDENTITY_BLOCK_NODES + (PROJECTION_BLOCK_NODES - IDENTITY_BLOCK_NODES) / blocks_per_stage
    guess = max(1, round((target_nodes - STEM_NODES - HEAD_NODES) / per_block))
    candidates = range(max(1, guess - blocks_per_stage), guess + blocks_per_stage + 1)
    return min(candidates, key=lambda b: (abs(node_count(b, blocks_per_stage) - target_nodes), b))


class _Builder:
    def __init__(self, rng: np.random.Generator, dtype=np.float32):
        self.rng = rng
        self.dtype = dtype
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def init(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(array.astype(self.dtype), name))
        return name

    def conv(self, x: str, c_in: int, c_out: int, k: int, stride: int, tag: str) -> str:
        w = self.rng.standard_normal((c_out, c_in, k, k)) * math.sqrt(2.0 / (c_in * k * k))
        wn = self.init(f"{tag}.weight", w)
        y = self.name(f"{tag}.conv")
        pad = k // 2
        self.nodes.append(
            helper.make_node(
                "Conv", [x, wn], [y], name=y, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4
            )
        )
        return y

    def bn(self, x: str, c: int, tag: str, gamma_scale: float = 1.0) -> str:
        gamma = (0.5 + self.rng.random(c)) * gamma_scale
        beta = 0.1 * self.rng.standard_normal(c)
        mean = 0.1 * self.rng.standard_normal(c)
        var = 0.5 + self.rng.random(c)
        params = (("scale", gamma), ("bias", beta), ("mean", mean), ("var", var))
        names = [self.init(f"{tag}.{p}", a) for p, a in params]
        y = self.name(f"{tag}.bn")
        self.nodes.append(helper.make_node("BatchNormalization", [x, *names], [y], name=y, epsilon=1e-5))
        return y

    def op(self, op_type: str, inputs: list[str], tag: str, **attrs) -> str:
        y = self.name(f"{tag}.{op_type.lower()}")
        self.nodes.append(helper.make_node(op_type, inputs, [y], name=y, **attrs))
        return y


def residual_cnn(
    target_nodes: int | None = None,
    *,
    blocks: int | None = None,
    blocks_per_stage: int = 16,
    widths: tuple[int, ...] = DEFAULT_WIDTHS,
    spatial: int = 8,
    min_spatial: int = 2,
    num_classes: int = 10,
    seed: int = 0,
) -> onnx.ModelProto:
    """A deep residual CNN with about `target_nodes` nodes (or exactly `blocks` blocks)."""
    if (target_nodes is None) == (blocks is None):
        raise ValueError("give exactly one of target_nodes and blocks")
    if blocks is None:
        blocks = blocks_for(target_nodes, blocks_per_stage)
    b = _Builder(np.random.default_rng(seed))
    branch_gamma = 1.0 / math.sqrt(blocks)

    width = widths[0]
    x = b.op("Relu", [b.bn(b.conv("input", 3, width, 3, 1, "stem"), width, "stem")], "stem")
    size = spatial
    stage = 0
    for i in range(blocks):
        tag = f"block{i}"
        if i > 0 and i % blocks_per_stage == 0:
            stage += 1
            new_width = widths[stage % len(widths)]
            stride = 2 if size > min_spatial else 1
            size = (size + stride - 1) // stride
            h = b.op("Relu", [b.bn(b.conv(x, width, new_width, 3, stride, f"{tag}.a"), new_width, f"{tag}.a")], tag)
            h = b.bn(b.conv(h, new_width, new_width, 3, 1, f"{tag}.b"), new_width, f"{tag}.b", branch_gamma)
            shortcut = b.bn(b.conv(x, width, new_width, 1, stride, f"{tag}.down"), new_width, f"{tag}.down")
            width = new_width
        else:
            h = b.op("Relu", [b.bn(b.conv(x, width, width, 3, 1, f"{tag}.a"), width, f"{tag}.a")], tag)
            h = b.bn(b.conv(h, width, width, 3, 1, f"{tag}.b"), width, f"{tag}.b", branch_gamma)
            shortcut = x
        x = b.op("Relu", [b.op("Add", [h, shortcut], tag)], tag)

    pooled = b.op("GlobalAveragePool", [x], "head")
    flat = b.op("Flatten", [pooled], "head", axis=1)
    fc_w = b.init("fc.weight", b.rng.standard_normal((num_classes, width)) / math.sqrt(width))
    fc_b = b.init("fc.bias", np.zeros(num_classes))
    b.nodes.append(helper.make_node("Gemm", [flat, fc_w, fc_b], ["logits"], name="head.gemm", transB=1))

    graph = helper.make_graph(
        b.nodes,
        f"resnet_synthetic_{blocks}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, spatial, spatial])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", num_classes])],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="onnxprune-benchmarks")
    model.ir_version = 8
    expected = node_count(blocks, blocks_per_stage)
    assert len(model.graph.node) == expected, (len(model.graph.node), expected)
    return model


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("nodes", type=int, help="target node count")
    parser.add_argument("output", help="path of the .onnx file to write")
    args = parser.parse_args()
    proto = residual_cnn(args.nodes)
    onnx.save(proto, args.output)
    print(f"{args.output}: {len(proto.graph.node)} nodes, {proto.ByteSize() / 2**20:.1f} MiB")
