"""ExactReferencePass: the model a pruned model must reproduce when its removal is exact.

On a copy of the analysed graph (node i of the copy is node i of the analysis), it
zeroes, for every removed channel class, the slices of the consumer weights that read it
(the "in" members: a Conv's input channels, a Gemm's input features) — copy-on-write, so
a constant shared with other readers keeps its values for them — and multiplies the
residual branch of every dropped block by 0. When the channel analysis is right and the
removal is exact, the pruned model computes exactly this (up to float rounding):
nothing downstream reads the removed channels any more, and ``x + 0·f(x)`` is ``x``.

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
        for m in self.an.const_members:
            if m.role != "in":
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
