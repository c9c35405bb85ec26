"""Shape and Size: where runtime sizes enter shape arithmetic.

Reading a shape couples nothing by itself, but a prunable axis whose size is read at
runtime changes whatever is computed from it. Reshape/Expand targets and Resize sizes
check the sizes they read (their rules tie or freeze both sides: their
`checked_shape_inputs`); any other reader (ConstantOfShape, Range, arithmetic, a graph
output) freezes the axis. The shape-value analysis finds those readers, following the
elements through ops that only move them. Sizes of static axes were folded into
constants before the analysis, so this sees only shape tensors that also carry a
symbolic dim (dynamic batch). Both cost nothing.
"""

from __future__ import annotations

import math

from onnxprune.passes.dims import FIXED
from onnxprune.passes.rules.costing import free
from onnxprune.passes.rules.registry import register
from onnxprune.passes.shape_elements import Elem, ShapeEntry, ShapeVal


def eval_shape(node, ins, shape) -> ShapeVal | None:
    x = node.inputs[0]
    dims = shape(x)
    if dims is None:
        return None
    start, end = node.attributes.get("start"), node.attributes.get("end")
    axes = range(len(dims))[slice(start.value if start else None, end.value if end else None)]
    elems = tuple(Elem(dims[a], ShapeEntry(x, a), frozenset({(x, a)})) for a in axes)
    return ShapeVal((len(elems),), elems)


def eval_size(node, ins, shape) -> ShapeVal | None:
    x = node.inputs[0]
    dims = shape(x)
    if dims is None:
        return None
    value = None if None in dims else math.prod(dims)
    return ShapeVal((), (Elem(value, None, frozenset((x, a) for a in range(len(dims)))),))


def shape_query(ctx) -> None:
    """Freeze the axes whose size reaches a reader no rule checks."""
    x = ctx.in_dims(0)
    if x is None:
        return
    read = {a for e in ctx.shape_value(0).elems for _, a in e.reads} if ctx.shape_value(0) else set()
    # Pending axes count too: they may be tied to a prunable one later in the walk.
    if all(ctx.dims.get(x[a]) is FIXED for a in read):
        return
    for axes, reader in ctx.shape_readers():
        for a in sorted(axes):
            ctx.freeze(x[a], f"the size of axis {a} is read at runtime by {reader}")


register("Shape", cost=free, shape_eval=eval_shape)(shape_query)
register("Size", cost=free, shape_eval=eval_size)(shape_query)
