"""Recurrent ops: LSTM, GRU, RNN. Their hidden width is not pruned yet (no channel rule:
the channels they read freeze, with the reason), but they cost what they compute.

MACs: seq · batch · (elements of W + elements of R): every step multiplies the input by
W [directions, gates·hidden, input] and the previous hidden state by R [directions,
gates·hidden, hidden] (4 gates for LSTM, 3 for GRU, 1 for RNN); `layout` 1 puts the
batch first.
"""

from __future__ import annotations

import math

from onnxprune.passes.rules.costing import need
from onnxprune.passes.rules.registry import op


def recurrent_cost(node, shape_of):
    x = need(shape_of, node.inputs[0])
    seq, batch = (x[1], x[0]) if node.attributes.get_int("layout", 0) else (x[0], x[1])
    weights = math.prod(need(shape_of, node.inputs[1])) + math.prod(need(shape_of, node.inputs[2]))
    return seq * batch * weights, 0


op("LSTM", "GRU", "RNN", cost=recurrent_cost, weighted=True)
