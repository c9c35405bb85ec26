"""ExactReferencePass: the model a pruned model must reproduce when its removal is exact.

On a copy of the analysed graph (node i of the copy is node i of the analysis), every
consumer that contracts over removed channels (a Conv over its input channels, a Gemm or
MatMul over its input features: where a weight's input axis is tied) reads them
multiplied by 0 — a constant 0/1 mask, the probe's mask made permanent, so no weight is
copied — and the residual branch of every dropped block is multiplied by 0. When the
channel analysis is right and the removal is exact, the pruned model computes exactly
this (up to float rounding): nothing downstream reads the removed channels any more,
and ``x + 0·f(x)`` is ``x``. A consumer that reads the channels as its axis 0 gets the
slices of its weight zeroed instead (copy-on-write).

What it does not do: judge inexact removals (LayerNorm, Softmax or a reduction over the
removed channels change their statistics), which have no such reference.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx_ir as ir

from onnxprune.passes.blocks import Block
from onnxprune.passes.channel_analysis import ChannelAnalysis
from onnxprune.passes.constants import (
    const_array,
    fresh_name,
    new_initializer,
    set_const_input,
)
from onnxprune.passes.probe_graph import consumers


class ExactReferencePass(ir.passes.InPlacePass):
    def __init__(self, an: ChannelAnalysis | None, removed: set[int], blocks: Iterable[Block] = ()):
        super().__init__()
        self.an, self.removed, self.blocks = an, removed, list(blocks)

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        nodes = list(model.graph)
        if self.an is not None and self.removed:
            if len(nodes) != len(self.an.nodes):
                raise ValueError("ExactReferencePass must run on a copy of the graph its analysis was made on")
            self._zero_consumers(model.graph, nodes)
        by_name = {n.name: n for n in nodes}
        for block in self.blocks:
            _silence_branch(model.graph, by_name[block.add], block.entry)
        return ir.passes.PassResult(model, modified=bool(self.removed or self.blocks))

    def _zero_consumers(self, graph: ir.Graph, nodes: list[ir.Node]) -> None:
        removed = np.array(sorted(self.removed), dtype=np.int64)
        masked: set[tuple[int, int]] = set()
        for ni, j, axis, var in consumers(self.an):
            classes = self.an.classes_of(var)
            keep = None if classes is None else ~np.isin(classes, removed)
            rank = len(self.an.shape_of(self.an.nodes[ni].inputs[j]) or ())
            if keep is None or keep.all() or axis % max(rank, 1) == 0:
                continue
            _mask_input(graph, nodes[ni], j, keep, axis % rank, rank)
            masked.add(ni)
        for m in self.an.const_members:
            if m.role != "in" or m.node_index in masked:
                continue
            classes = self.an.classes_of(m.var)
            kill = None if classes is None else np.isin(classes, removed)
            if kill is None or not kill.any():
                continue
            node = nodes[m.node_index]
            arr = np.array(const_array(node.inputs[m.input_index]), copy=True)
            index = [slice(None)] * arr.ndim
            index[m.axis] = kill
            arr[tuple(index)] = 0
            set_const_input(graph, node, m.input_index, arr)


def _mask_input(graph: ir.Graph, node: ir.Node, j: int, keep: np.ndarray, axis: int, rank: int) -> None:
    """Input `j` of `node` times a constant 0/1 mask along `axis`."""
    value = node.inputs[j]
    dtype = value.dtype.numpy() if value.dtype is not None else np.float32
    shape = [1] * rank
    shape[axis] = len(keep)
    mask = new_initializer(graph, f"{node.name}_reference_mask", keep.astype(dtype).reshape(shape))
    mul = ir.node("Mul", [value, mask], name=f"{node.name}_reference_mask_mul_{j}")
    mul.outputs[0].name = fresh_name(graph, f"{value.name}_reference_masked")
    graph.insert_before(node, mul)
    node.replace_input_with(j, mul.outputs[0])


def _silence_branch(graph: ir.Graph, add: ir.Node, entry: str) -> None:
    """Add(x, f(x)) becomes Add(x, f(x)·0)."""
    k = 1 if add.inputs[0].name == entry else 0
    branch = add.inputs[k]
    dtype = branch.dtype.numpy() if branch.dtype is not None else np.float32
    zero = new_initializer(graph, f"{add.name}_reference_zero", np.zeros((), dtype=dtype))
    mul = ir.node("Mul", [branch, zero], name=f"{add.name}_reference_zero_mul")
    mul.outputs[0].name = fresh_name(graph, f"{branch.name}_times_zero")
    graph.insert_before(add, mul)
    add.replace_input_with(k, mul.outputs[0])
