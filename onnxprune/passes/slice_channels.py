"""Rewrite: physically remove the chosen channel classes from the graph.

`slice_channels(analysis, removed)` does, in order:
1. per-op rewrites (each op record's `rewrite`): attributes and shape constants (Conv `group`, Split
   sizes, Slice bounds, Reshape/Expand targets, Resize sizes) — read from the
   original constants, replaced copy-on-write;
2. every constant use whose axes lose positions is sliced; a constant shared by uses
   that end up sliced differently is copied per distinct slicing;
3. value shapes inside the graph are cleared so that shape inference re-derives them.

4. graph inputs and outputs the analysis was told are resizable (a KV cache, outputs
   the user allowed) get their declared static dims shrunk; `interface_changes` says
   which, for the report and the caller's cache allocation.

What it does not do: remove dead nodes, re-infer shapes or check the model — the
pipeline runs cleanup, inference and verification after it. Interface axes not named
resizable are frozen by the analysis, so they are never touched.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxprune.passes.channel_analysis import ChannelAnalysis
from onnxprune.passes.constants import (
    const_array,
    is_const,
    new_initializer,
    set_const_input,
    set_value_array,
)
from onnxprune.passes.rules import record
from onnxprune.passes.shape_values import ShapeValues, privatize, write_entry


class RewriteContext:
    """What a per-op rewrite sees: keep masks of its axes and ways to edit the node."""

    def __init__(self, an: ChannelAnalysis, node: ir.Node, index: int, removed: set[int]):
        self.an, self.node, self.index, self.removed = an, node, index, removed
        self.graph = an.graph
        self.opset = an.opset
        self._in_vals = list(node.inputs)
        self._out_vals = list(node.outputs)

    def attr(self, name: str, default=None):
        a = self.node.attributes.get(name)
        return default if a is None else a.value

    def set_attr_int(self, name: str, value: int) -> None:
        self.node.attributes[name] = ir.AttrInt64(name, int(value))

    def set_attr_ints(self, name: str, values) -> None:
        self.node.attributes[name] = ir.AttrInt64s(name, [int(v) for v in values])

    def const(self, i: int) -> np.ndarray | None:
        return const_array(self.node.inputs[i]) if i < len(self.node.inputs) else None

    def _mask(self, dims, axis):
        return None if dims is None else self.an.keep_mask(dims[axis], self.removed)

    def in_keep(self, i: int, axis: int) -> np.ndarray | None:
        value = self._in_vals[i]
        if is_const(value):
            return self._mask(self.an.const_dims.get((self.index, i)), axis)
        return self._mask(self.an.value_dims.get(value), axis)

    def out_keep(self, j: int, axis: int) -> np.ndarray | None:
        return self._mask(self.an.value_dims.get(self._out_vals[j]), axis)

    def in_shape(self, i: int) -> tuple:
        return self.an.shape_of(self._in_vals[i])

    def out_shape(self, j: int) -> tuple:
        return self.an.shape_of(self._out_vals[j])

    def out_size(self, j: int, axis: int) -> int:
        return self.out_shape(j)[axis]

    def entries(self, i: int, length: int):
        # A fresh analysis: earlier rewrites may have cloned or replaced shape tensors.
        return ShapeValues(self.an.shape_of).entries(self.node, i) or [None] * length

    def privatize(self, i: int) -> None:
        """Give input `i` a shape-tensor chain no other node reads before writing it."""
        privatize(self.graph, self.node, i, self.an.shape_of)

    def write_entry(self, entry, value: int) -> None:
        write_entry(self.graph, entry, value)

    def set_const_input(self, i: int, array: np.ndarray) -> None:
        set_const_input(self.graph, self.node, i, array)

    def add_const_input(self, i: int, array: np.ndarray) -> None:
        value = new_initializer(self.graph, f"{self.node.name or self.node.op_type}_{i}", array)
        if len(self.node.inputs) <= i:
            self.node.resize_inputs(i + 1)
        self.node.replace_input_with(i, value)


def _slice_key(an: ChannelAnalysis, key, removed) -> tuple:
    dims = an.const_dims.get(key)
    if dims is None:
        return ()
    out = []
    for axis, var in enumerate(dims):
        mask = an.keep_mask(var, removed)
        if mask is not None:
            out.append((axis, mask.tobytes(), mask))
    return tuple(out)


def _sliced(array: np.ndarray, key: tuple) -> np.ndarray:
    for axis, _, mask in key:
        array = np.compress(mask, array, axis=axis)
    return np.ascontiguousarray(array)


def _signature(key: tuple) -> tuple:
    return tuple((axis, raw) for axis, raw, _ in key)


def const_slicings(an: ChannelAnalysis, removed: set[int], nodes=None) -> dict:
    """How each constant will be sliced: value -> None (untouched), a slice key (all
    readers agree: sliced in place), or {use: key} for the readers that get a copy.
    `nodes` (indices) limits it to the constants those nodes read."""
    uses_by_value: dict[ir.Value, list[tuple[int, int]]] = {}
    if nodes is None:
        for ni, ii in an.const_dims:
            uses_by_value.setdefault(an.nodes[ni].inputs[ii], []).append((ni, ii))
    else:
        # Every analysed use of the constants these nodes read, found from the constants'
        # own uses: linear in what `nodes` touch, not in the graph (group_costs and the
        # neuron candidate's pricing ask once per group or step).
        wanted = {id(v): v for i in nodes for v in an.nodes[i].inputs if v is not None}
        for value in wanted.values():
            for use in value.uses():
                ni = an.node_index.get(id(use.node))
                if ni is not None and (ni, use.idx) in an.const_dims:
                    uses_by_value.setdefault(value, []).append((ni, use.idx))
    result = {}
    for value, keys in uses_by_value.items():
        slicings = {k: _slice_key(an, k, removed) for k in keys}
        if not any(slicings.values()):
            result[value] = None
            continue
        readers = {(id(u.node), u.idx) for u in value.uses()}
        known = {(id(an.nodes[ni]), ii) for ni, ii in keys}
        distinct = {_signature(s) for s in slicings.values()}
        if len(distinct) == 1 and readers <= known:
            result[value] = next(iter(slicings.values()))
        else:
            result[value] = {k: s for k, s in slicings.items() if s}
    return result


def predicted_shape(shape: tuple, key: tuple) -> tuple:
    shape = list(shape)
    for axis, _, mask in key:
        shape[axis] = int(mask.sum())
    return tuple(shape)


def slice_channels(an: ChannelAnalysis, removed: set[int]) -> bool:
    """Apply the removal; returns whether the graph changed."""
    if not removed:
        return False
    graph = an.graph
    slicings = const_slicings(an, removed)  # before any input is replaced
    # 1. Per-op rewrites of attributes and shape constants.
    for i, node in enumerate(an.nodes):
        rec = record(node)
        if rec is not None and rec.rewrite is not None:
            rec.rewrite(RewriteContext(an, node, i, removed))
    # 2. Slice constants, per use, sharing where the slicing agrees.
    for value, plan in slicings.items():
        if plan is None:
            continue
        original = const_array(value)
        if isinstance(plan, tuple):
            set_value_array(value, _sliced(original, plan))
            continue
        made: dict[tuple, ir.Value] = {}
        for (ni, ii), s in plan.items():
            sig = _signature(s)
            if sig not in made:
                made[sig] = new_initializer(graph, f"{value.name}_pruned", _sliced(original, s))
            an.nodes[ni].replace_input_with(ii, made[sig])
    # 3. Shapes inside the graph are stale now.
    io = set(graph.inputs) | set(graph.outputs)
    for node in graph:
        for out in node.outputs:
            if out not in io and out.const_value is None:
                out.shape = None
    # 4. Resizable interface values declare their new sizes.
    for change in interface_changes(an, removed):
        value = change["value"]
        if value.shape is not None:
            value.shape = ir.Shape(
                [new if isinstance(old, int) else old for old, new in zip(value.shape, change["shape_after"])]
            )
    return True


def interface_changes(an: ChannelAnalysis, removed: set[int]) -> list[dict]:
    """Graph inputs and outputs whose declared shape the removal changes: name, value,
    direction, declared shape before and after (symbolic dims as None), and per changed
    axis the original indices that stay (so a caller can slice a cache it holds)."""
    changes = []
    graph = an.graph
    for direction, values in (("input", graph.inputs), ("output", graph.outputs)):
        for value in values:
            dims = an.value_dims.get(value)
            if value.name not in an.resizable or dims is None:
                continue
            # Undeclared shape (an output added by hand): the analysed one stands in.
            declared = value.shape if value.shape is not None else an.shape_of(value)
            if declared is None:
                continue
            before = [d if isinstance(d, int) else None for d in declared]
            after, kept = list(before), {}
            for axis, var in enumerate(dims):
                mask = an.keep_mask(var, removed)
                if mask is not None and isinstance(before[axis], int):
                    after[axis] = int(mask.sum())
                    kept[axis] = np.flatnonzero(mask).tolist()
            if kept:
                changes.append({
                    "name": value.name, "value": value, "direction": direction,
                    "shape_before": before, "shape_after": after, "kept": kept,
                })
    return changes



class SliceChannelsPass(ir.passes.InPlacePass):
    """The rewrite as an onnx-ir pass over the model the analysis was made on."""

    def __init__(self, an: ChannelAnalysis, removed: set[int]):
        super().__init__()
        self.an, self.removed = an, removed

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        if model.graph is not self.an.graph:
            raise ValueError("SliceChannelsPass must run on the model its analysis was made on")
        return ir.passes.PassResult(model, modified=slice_channels(self.an, self.removed))
