"""Where the numbers in a shape tensor come from, so pruning can rewrite them.

A Reshape target may be a constant, or be assembled at runtime:
``Concat(Unsqueeze(Gather(Shape(x), 0)), [12], [64])`` (PyTorch's exporters emit this
for dynamic batch). `trace_entries` returns, for each element of such a 1-D int64
tensor, either a `ConstEntry` (which constant, which flat index, and which node input
reads it — so it can be replaced copy-on-write) or None when the element is computed
at runtime. It follows Constant nodes, initializers, Concat, Unsqueeze/Reshape/Cast/
Identity of a constant, Gather and Slice by constants; anything else is runtime.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx_ir as ir

from onnxprune.passes.constants import const_array, is_const, set_const_input

PASS_THROUGH = ("Unsqueeze", "Squeeze", "Reshape", "Cast", "Identity")


@dataclass(frozen=True)
class ShapeEntry:
    """An element read from a tensor's runtime shape: it follows pruning by itself."""

    value: ir.Value
    axis: int


@dataclass(frozen=True)
class ConstEntry:
    node: ir.Node  # the node whose input reads the constant
    input_index: int
    flat_index: int
    value: int


def entries_of_input(node: ir.Node, i: int, shape_of=None, _depth: int = 0):
    """Provenance of each element of `node.inputs[i]` (a 1-D shape tensor).

    Returns a list with a `ConstEntry` or None (computed at runtime) per element, or
    None when even the length is unknown. `shape_of(value)` supplies static shapes
    the IR may not carry.
    """
    value = node.inputs[i] if i < len(node.inputs) else None
    if value is None:
        return None
    if is_const(value):
        arr = const_array(value).reshape(-1)
        return [ConstEntry(node, i, k, int(arr[k])) for k in range(len(arr))]
    prod = value.producer()
    if prod is not None and _depth < 16:
        if prod.op_type == "Concat":
            parts = [entries_of_input(prod, j, shape_of, _depth + 1) for j in range(len(prod.inputs))]
            if all(p is not None for p in parts):
                return [e for p in parts for e in p]
        elif prod.op_type in PASS_THROUGH and prod.inputs and is_const(prod.inputs[0]):
            return entries_of_input(prod, 0, shape_of, _depth + 1)
        elif prod.op_type in ("Unsqueeze", "Squeeze", "Cast", "Identity"):
            inner = entries_of_input(prod, 0, shape_of, _depth + 1)
            if inner is not None and len(inner) == 1:
                return inner
        elif prod.op_type == "Shape":
            entries = _shape_entries(prod, shape_of)
            if entries is not None:
                return entries
        elif prod.op_type == "Slice" and const_slice(prod) is not None:
            # Older exporters cut Shape(x)[:2] with a Slice; follow it like a Gather so
            # the entries it keeps stay traceable (and rewritable) instead of "runtime".
            source = entries_of_input(prod, 0, shape_of, _depth + 1)
            if source is not None:
                return source[const_slice(prod)]
        elif prod.op_type == "Gather" and is_const(prod.inputs[1]):
            source = entries_of_input(prod, 0, shape_of, _depth + 1)
            idx = const_array(prod.inputs[1]).reshape(-1).tolist()
            if source is not None and all(-len(source) <= k < len(source) for k in idx):
                return [source[k] for k in idx]
    shape = shape_of(value) if shape_of is not None else None
    if shape is None and value.shape is not None:
        shape = tuple(d if isinstance(d, int) else None for d in value.shape)
    if shape is None or len(shape) > 1:
        return None
    length = 1 if len(shape) == 0 else shape[0]
    return None if length is None else [None] * length


def const_slice(node: ir.Node) -> slice | None:
    """A Slice of a 1-D tensor along axis 0 with constant bounds, as a Python slice."""
    if len(node.inputs) < 3 or any(v is not None and not is_const(v) for v in node.inputs[1:5]):
        return None
    vals = [None if v is None else const_array(v).reshape(-1).tolist() for v in node.inputs[1:5]]
    vals += [None] * (4 - len(vals))
    starts, ends, axes, steps = vals
    if len(starts) != 1 or len(ends) != 1 or axes not in (None, [0], [-1]):
        return None
    return slice(int(starts[0]), int(ends[0]), 1 if steps is None else int(steps[0]))


def _shape_entries(node: ir.Node, shape_of) -> list | None:
    shape = shape_of(node.inputs[0]) if shape_of is not None else None
    if shape is None:
        return None
    rank = len(shape)
    start = node.attributes.get("start")
    end = node.attributes.get("end")
    axes = range(rank)[slice(start.value if start else None, end.value if end else None)]
    return [ShapeEntry(node.inputs[0], a) for a in axes]


TRACED = ("Concat", "Gather", "Slice", *PASS_THROUGH)


def privatize(graph: ir.Graph, node: ir.Node, i: int, shape_of=None, _depth: int = 0) -> None:
    """Give `node.inputs[i]` a shape-tensor chain of its own before its entries are
    written: a traced producer whose output is read elsewhere too is cloned for this
    reader. Without it, two Reshapes sharing Concat(Shape(x)[:1], [8], [-1]) (dynamic
    batch) would both see the literal written for whichever was rewritten last.
    Constants themselves need no clone: `write_entry` replaces them copy-on-write.
    Clones keep the originals' shapes (from `shape_of` when the IR has none), so that
    tracing through them still knows each piece's length."""
    value = node.inputs[i] if i < len(node.inputs) else None
    if value is None or is_const(value) or _depth > 16:
        return
    prod = value.producer()
    if prod is None or prod.op_type not in TRACED or prod.domain not in ("", "ai.onnx"):
        return
    if len(value.uses()) > 1 or value.is_graph_output():
        from onnxprune.passes.constants import fresh_name

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
        prod = clone
    for j in range(len(prod.inputs)):
        privatize(graph, prod, j, shape_of, _depth + 1)


def write_entry(graph: ir.Graph, entry: ConstEntry, new_value: int) -> None:
    """Replace one element of a traced constant (copy-on-write)."""
    arr = const_array(entry.node.inputs[entry.input_index]).copy()
    flat = arr.reshape(-1)
    flat[entry.flat_index] = new_value
    set_const_input(graph, entry.node, entry.input_index, flat.reshape(arr.shape))
