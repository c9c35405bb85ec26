"""The shape-value analysis: what every small integer tensor of a graph holds, element
by element — its value where known statically, where it comes from (a literal in a
constant, or an axis of a runtime shape), and which runtime axes it carries.

One analysis with one evaluator per op (registered in the op's `OpRecord`, like
onnxscript's partial evaluators for constant folding) serves three clients:
- **folding** (`passes/fold_shapes.py`): values fully known from constants and static
  dims become constants;
- **provenance** (`entries`): the channel rules see which element of a Reshape/Expand
  target or Resize sizes is a literal they may rewrite, or a runtime shape read;
- **readers** (`unchecked_reads`): where a runtime channel count reaches a node that no
  rule checks (arithmetic on data, a Range, a graph output), so its axis is frozen.

Values are computed on demand and memoised, so one instance must not outlive an edit of
the graph it reads (the rewrite makes a fresh one per node). `shape_of(value)` gives the
static shapes the IR may not carry: concrete ones for the channel analysis, the model's
symbolic ones for folding (so a batch dim is never baked in).

What this does not do: evaluate float math, tensors over `MAX_ELEMENTS` elements, nodes
with several outputs, or anything inside subgraphs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import onnx_ir as ir

from onnxprune.passes.constants import (
    const_array,
    fresh_name,
    is_const,
    set_const_input,
)
from onnxprune.passes.rules import record
from onnxprune.passes.shape_elements import (
    MAX_ELEMENTS,
    UNKNOWN,
    ConstEntry,
    Elem,
    ShapeEntry,
    ShapeVal,
)

ShapeOf = Callable[[ir.Value], "tuple | None"]
_MAX_DEPTH = 64  # producer chains deeper than this are not shape arithmetic


class ShapeValues:
    """See the module docstring."""

    def __init__(self, shape_of: ShapeOf | None = None):
        self.shape_of = shape_of or (lambda value: None)
        self._values: dict[ir.Value, ShapeVal | None] = {}
        self._produced: dict[ir.Value, ShapeVal | None] = {}
        self._depth = 0

    # -- static shapes ---------------------------------------------------------------
    def shape(self, value: ir.Value | None) -> tuple | None:
        """The static shape of `value` (None entries for unknown dims), or None."""
        if value is None:
            return None
        shape = self.shape_of(value)
        if shape is None and value.shape is not None:
            shape = tuple(d if isinstance(d, int) else None for d in value.shape)
        return None if shape is None else tuple(shape)

    # -- values ------------------------------------------------------------------------
    def of_input(self, node: ir.Node, i: int) -> ShapeVal | None:
        """What input `i` of `node` holds (a constant's literals are located at this use)."""
        value = node.inputs[i] if i < len(node.inputs) else None
        if value is None:
            return None
        if is_const(value):
            return _constant(node, i, value)
        return self.of_value(value)

    def of_value(self, value: ir.Value) -> ShapeVal | None:
        """What a computed value holds: its producer's evaluation, else unknown elements
        of its static length (a 0-D or 1-D tensor), else None."""
        if value not in self._values:
            result = self.produced(value)
            self._values[value] = result if result is not None else self._unknown(value)
        return self._values[value]

    def produced(self, value: ir.Value) -> ShapeVal | None:
        """The producer's evaluation of `value` alone (None when it has no evaluator or
        cannot say)."""
        if value in self._produced:
            return self._produced[value]
        prod = value.producer()
        rec = None if prod is None or len(prod.outputs) != 1 else record(prod)
        if rec is None or rec.shape_eval is None or self._too_big(value) or self._depth > _MAX_DEPTH:
            return None
        self._depth += 1
        try:
            ins = [self.of_input(prod, j) for j in range(len(prod.inputs))]
            result = rec.shape_eval(prod, ins, self.shape)
        finally:
            self._depth -= 1
        if result is not None and len(result.elems) > MAX_ELEMENTS:
            result = None
        self._produced[value] = result
        return result

    def _too_big(self, value: ir.Value) -> bool:
        shape = self.shape(value)
        return shape is not None and None not in shape and math.prod(shape) > MAX_ELEMENTS

    def _unknown(self, value: ir.Value) -> ShapeVal | None:
        shape = self.shape(value)
        if shape is None or len(shape) > 1:
            return None
        length = 1 if not shape else shape[0]
        if length is None or length > MAX_ELEMENTS:
            return None
        return ShapeVal(tuple(shape), (UNKNOWN,) * length)

    # -- provenance --------------------------------------------------------------------
    def entries(self, node: ir.Node, i: int) -> list | None:
        """Per element of input `i` of `node` (a shape tensor): a `ConstEntry`, a
        `ShapeEntry`, or None (computed at runtime); None when even its length is unknown."""
        val = self.of_input(node, i)
        return None if val is None else [e.entry for e in val.elems]

    # -- readers -----------------------------------------------------------------------
    def unchecked_reads(self, source: ir.Node) -> list[tuple[frozenset, str]]:
        """Where the sizes a Shape/Size node reads from its input reach a node no rule
        checks: ``[(axes of the input, reader description)]``. Ops that only move
        elements (Gather, Slice, Concat, Unsqueeze, ...) pass them on; inputs a channel
        rule checks (`checked_shape_inputs`) report the axes it cannot trace back."""
        found: list[tuple[frozenset, str]] = []
        self._walk(source.inputs[0], source.outputs[0], found, set())
        return found

    def _walk(self, x: ir.Value, value: ir.Value, found: list, seen: set) -> None:
        if value in seen:
            return
        seen.add(value)
        val = self.of_value(value)
        every = frozenset(a for e in (val.elems if val else ()) for v, a in e.reads if v is x)
        if not every:
            return
        if value.is_graph_output():
            found.append((every, f"graph output '{value.name}'"))
        for use in value.uses():
            node, idx = use.node, use.idx
            rec = record(node)
            label = f"{node.op_type} '{node.name}'"
            if rec is not None and idx in rec.checked_shape_inputs:
                traced = {e.entry.axis for e in val.elems if isinstance(e.entry, ShapeEntry) and e.entry.value is x}
                if every - traced:
                    found.append((every - traced, label))
                continue
            out = node.outputs[0] if len(node.outputs) == 1 else None
            produced = self.produced(out) if out is not None and rec is not None and rec.moves(idx) else None
            if produced is None:
                found.append((every, label))
                continue
            # An op that moves elements may also combine several into one (a ReduceProd
            # of dims): the combination is a read by this op, and is followed further.
            combined = frozenset(
                a for e in produced.elems if not any(e is m for m in val.elems) for v, a in e.reads if v is x
            )
            if combined:
                found.append((combined, label))
            self._walk(x, out, found, seen)


def _constant(node: ir.Node, i: int, value: ir.Value) -> ShapeVal | None:
    arr = const_array(value)
    if arr is None or arr.dtype.kind not in "iu" or arr.size > MAX_ELEMENTS:
        return None
    flat = arr.reshape(-1).tolist()
    return ShapeVal(tuple(arr.shape), tuple(Elem(int(v), ConstEntry(node, i, k, int(v))) for k, v in enumerate(flat)))


def entries_of_input(node: ir.Node, i: int, shape_of: ShapeOf | None = None) -> list | None:
    """`ShapeValues(shape_of).entries(node, i)`, for a one-off question."""
    return ShapeValues(shape_of).entries(node, i)


# -- rewriting shape tensors ------------------------------------------------------------


def privatize(graph: ir.Graph, node: ir.Node, i: int, shape_of: ShapeOf | None = None, _depth: int = 0) -> None:
    """Give `node.inputs[i]` a shape-tensor chain of its own before its entries are
    written: a producer that moves elements (Concat, Gather, ...) whose output is read
    elsewhere too is cloned for this reader. Without it, two Reshapes sharing
    Concat(Shape(x)[:1], [8], [-1]) (dynamic batch) would both see the literal written
    for whichever was rewritten last. Constants themselves need no clone: `write_entry`
    replaces them copy-on-write. Clones keep the originals' shapes (from `shape_of`
    when the IR has none), so that tracing through them still knows each piece's length."""
    value = node.inputs[i] if i < len(node.inputs) else None
    if value is None or is_const(value) or _depth > 16:
        return
    prod = value.producer()
    rec = None if prod is None else record(prod)
    if rec is None or not rec.shape_moves:
        return
    if len(value.uses()) > 1 or value.is_graph_output():
        prod = _clone_for(graph, node, i, prod, value, shape_of)
    for j in range(len(prod.inputs)):
        privatize(graph, prod, j, shape_of, _depth + 1)


def _clone_for(graph: ir.Graph, node: ir.Node, i: int, prod: ir.Node, value: ir.Value, shape_of) -> ir.Node:
    clone = ir.Node(
        prod.domain, prod.op_type, list(prod.inputs),
        [ir.Attr(a.name, a.type, a.value) for a in prod.attributes.values()],
        num_outputs=len(prod.outputs),
    )
    for old, new in zip(prod.outputs, clone.outputs):
        new.name = fresh_name(graph, f"{old.name or 'shape'}_private")
        if old.type is not None:
            new.type = old.type
        shape = old.shape
        if shape is None and shape_of is not None and shape_of(old) is not None:
            shape = ir.Shape(shape_of(old))
        new.shape = shape
    graph.insert_after(prod, clone)
    node.replace_input_with(i, clone.outputs[value.index()])
    return clone


def write_entry(graph: ir.Graph, entry: ConstEntry, new_value: int) -> None:
    """Replace one element of a traced constant (copy-on-write)."""
    arr = const_array(entry.node.inputs[entry.input_index]).copy()
    flat = arr.reshape(-1)
    flat[entry.flat_index] = new_value
    set_const_input(graph, entry.node, entry.input_index, flat.reshape(arr.shape))


__all__ = ["ConstEntry", "ShapeEntry", "ShapeValues", "entries_of_input", "privatize", "write_entry"]
