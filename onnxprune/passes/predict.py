"""Predicted cost of a removal, before rewriting: the cost model run on the shapes the
rewrite will produce (runtime axes shrink by their keep masks, constants exactly as
`slice_channels` will slice or copy them). The prediction must equal the cost model on
the emitted model; the tests hold it to that.
"""

from __future__ import annotations

import math

import onnx_ir as ir

from onnxprune.passes.channel_analysis import ChannelAnalysis
from onnxprune.passes.constants import is_const
from onnxprune.passes.cost import is_parameter, node_cost
from onnxprune.passes.slice_channels import const_slicings, predicted_shape


class Predictor:
    """Shapes and costs after removing `removed`; `nodes` limits the constants it
    prepares to those read by these node indices (enough to price just them)."""

    def __init__(self, an: ChannelAnalysis, removed: set[int], nodes=None):
        self.an = an
        self.removed = removed
        self.slicings = const_slicings(an, removed, nodes)
        self._runtime: dict[str, tuple] = {}

    def runtime_shape(self, value: ir.Value) -> tuple | None:
        name = value.name
        if name in self._runtime:
            return self._runtime[name]
        shape = self.an.shape_of(value)
        dims = self.an.value_dims.get(value)
        if shape is not None and dims is not None and self.removed:
            shape = list(shape)
            for axis, var in enumerate(dims):
                mask = self.an.keep_mask(var, self.removed)
                if mask is not None:
                    shape[axis] = int(mask.sum())
            shape = tuple(shape)
        self._runtime[name] = shape
        return shape

    def const_shape(self, value: ir.Value, use: tuple[int, int] | None) -> tuple:
        shape = self.an.shape_of(value)
        plan = self.slicings.get(value)
        if plan is None:
            return shape
        if isinstance(plan, tuple):
            return predicted_shape(shape, plan)
        key = plan.get(use) if use is not None else None
        return shape if key is None else predicted_shape(shape, key)

    def shape_of_for(self, index: int):
        node = self.an.nodes[index]

        def shape_of(value: ir.Value):
            if value is None:
                return None
            if is_const(value):
                use = next((i for i, v in enumerate(node.inputs) if v is value), None)
                return self.const_shape(value, (index, use) if use is not None else None)
            return self.runtime_shape(value)

        return shape_of

    def node_macs(self, index: int) -> int:
        return node_cost(self.an.nodes[index], self.shape_of_for(index)).macs

    def total_macs(self) -> int:
        return sum(self.node_macs(i) for i in range(len(self.an.nodes)))

    def total_params(self, exclude: set[int] = frozenset()) -> int:
        """Parameters left; constants read only by the nodes (indices) in `exclude` — a
        dropped block's branch — are not counted."""
        graph = self.an.graph
        constants = list(graph.initializers.values())
        constants += [n.outputs[0] for n in graph if n.op_type == "Constant"]
        excluded = {id(self.an.nodes[i]) for i in exclude}
        total = 0
        for value in constants:
            if not is_parameter(value):
                continue
            if excluded and value.uses() and all(id(u.node) in excluded for u in value.uses()):
                continue
            producer = value.producer()
            if excluded and producer is not None and id(producer) in excluded:
                continue
            shape = self.an.shape_of(value)
            plan = self.slicings.get(value)
            if plan is None:
                total += math.prod(shape)
            elif isinstance(plan, tuple):
                total += math.prod(predicted_shape(shape, plan))
            else:
                distinct = {}
                for key in plan.values():
                    distinct[tuple((a, r) for a, r, _ in key)] = predicted_shape(shape, key)
                total += sum(math.prod(s) for s in distinct.values())
                readers = {(id(u.node), u.idx) for u in value.uses()}
                sliced = {(id(self.an.nodes[ni]), ii) for ni, ii in plan}
                if readers - sliced:
                    total += math.prod(shape)  # some reader keeps the original
        return total


def predicted_cost(an: ChannelAnalysis, removed: set[int], skip: set[int] = frozenset()) -> tuple[int, int]:
    """MACs and parameters after removing `removed`, without the nodes (indices) in
    `skip` — the Adds and branches of dropped blocks — and the constants only they read."""
    pred = Predictor(an, removed)
    macs = sum(pred.node_macs(i) for i in range(len(an.nodes)) if i not in skip)
    return macs, pred.total_params(exclude=skip)


def group_costs(an: ChannelAnalysis) -> dict[int, dict]:
    """MACs and parameters one class of each group accounts for (removing one).

    Only nodes that read or write the group's tensors are re-priced, so this stays
    linear in the graph size.
    """
    producers: dict[str, list[int]] = {}
    for i, node in enumerate(an.nodes):
        for v in (*node.inputs, *node.outputs):
            if v is not None:
                producers.setdefault(v.name, []).append(i)
    base = Predictor(an, set())
    out = {}
    for g in an.groups:
        if not g.prunable:
            continue
        one = {g.prunable[0]}
        nodes = sorted({i for _, name, _, _ in g.members for i in producers.get(name, [])})
        pred = Predictor(an, one, nodes)  # only these nodes: linear over all groups
        macs = sum(base.node_macs(i) - pred.node_macs(i) for i in nodes)
        consts = {an.nodes[i].inputs[j] for i in nodes for j in range(len(an.nodes[i].inputs))}
        params = 0
        for v in consts:
            if v is not None and is_const(v) and is_parameter(v):
                params += math.prod(base.const_shape(v, None)) - math.prod(pred.const_shape(v, None))
        out[g.id] = {"macs_per_channel": macs, "params_per_channel": params}
    return out
