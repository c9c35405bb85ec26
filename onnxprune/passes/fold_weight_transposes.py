"""FoldWeightTransposesPass: a weight read through `Transpose(constant)` becomes a
transposed constant.

Exports made without constant folding (TorchScript `do_constant_folding=False`, dynamo
`optimize=False`, some converters) write a Linear as ``MatMul(x, Transpose(W))``. The
channel rules see a MatMul whose weight is computed, not a weight, and freeze it, so
nothing behind such layers could be pruned. Folding the Transpose (a permutation: no
arithmetic, so the numbers are exactly those of the original) gives the MatMul its
weight back. The folded constant is named after the Transpose's output, so a saved plan
names it the same way each time the model is read; `apply_plan` maps it to the
framework's parameter by the node's module scope (compiler/state_dict.py).

What it folds: a Transpose in the default domain whose input is a constant (initializer
or Constant node, never a graph input) and whose every reader takes it in a weight slot
(an op record's `weights`: Conv, Gemm, MatMul, ...). What it does not do: fold other
ops on constants, or a Transpose whose output is a graph output; the original constant
stays if something else reads it (the cleanup pass drops it otherwise).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxprune.passes.constants import const_array, is_const
from onnxprune.passes.rules import record


def _weight_reads_only(value: ir.Value) -> bool:
    uses = value.uses()
    if not uses or value.is_graph_output():
        return False
    for use in uses:
        rec = record(use.node)
        if rec is None or rec.weights is None or use.idx not in rec.weights(use.node):
            return False
    return True


class FoldWeightTransposesPass(ir.passes.InPlacePass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        folded = 0
        for node in list(graph):
            if node.op_type != "Transpose" or node.domain not in ("", "ai.onnx") or not node.inputs:
                continue
            source, out = node.inputs[0], node.outputs[0]
            if not is_const(source) or not _weight_reads_only(out):
                continue
            array = const_array(source)
            perm = node.attributes.get("perm")
            axes = None if perm is None else list(perm.as_ints())
            data = np.ascontiguousarray(np.transpose(array, axes))
            name = out.name
            out.name = f"{name}.folded"  # freed for the constant that replaces it
            weight = ir.Value(name=name, shape=ir.Shape(data.shape), type=ir.TensorType(ir.DataType.from_numpy(data.dtype)),
                              const_value=ir.tensor(data, name=name))
            graph.register_initializer(weight)
            ir.convenience.replace_all_uses_with(out, weight)
            graph.remove(node, safe=True)  # no reader left; it also stops reading the source
            folded += 1
        return ir.passes.PassResult(model, modified=folded > 0)
