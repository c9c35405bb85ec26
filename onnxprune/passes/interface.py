"""Which graph inputs and outputs may change size when the model is pruned.

By default every axis of the interface is fixed: a caller feeds and reads tensors of the
declared shapes, so pruning must not change them. One exception is on by default: a
decoder's key-value cache. A cache output is the Concat of a cache input with the new
keys or values, and the concatenation feeds attention: a MatMul whose scores go through
a Softmax (keys), or one that mixes Softmax probabilities (values), or a fused attention
op. When heads are removed, both must shrink together, and a caller must allocate the
cache at the new size (the report lists the change). A Concat of a graph input that
feeds no attention (a CNN's skip concatenation exposed as an output) is no cache: its
axes stay fixed. Users may name more values (e.g. a hidden-state output) to allow them
to shrink as well.

What this does not do: follow a cache through ops between the graph input and the
attention that reads it (a Cast, a Transpose): such caches stay fixed, and so do their
heads.
"""

from __future__ import annotations

import onnx_ir as ir

from onnxprune.errors import OnnxPruneError
from onnxprune.passes.rules import record


def kv_cache_io(model: ir.Model) -> set[str]:
    """Names of cache pairs: a graph output made by Concat of a graph input (past →
    present), or a fused attention's past input and present output when both are graph
    inputs/outputs."""
    graph = model.graph
    inputs = {v.name for v in graph.inputs}
    outputs = {v.name for v in graph.outputs}
    names: set[str] = set()
    for node in graph:
        rec = record(node)
        for i, j in rec.cache if rec is not None else ():
            past = node.inputs[i] if i < len(node.inputs) else None
            present = node.outputs[j] if j < len(node.outputs) else None
            if past is not None and present is not None and past.name in inputs and present.name in outputs:
                names.update((past.name, present.name))
    for out in graph.outputs:
        node = out.producer()
        if node is None or node.op_type != "Concat" or node.domain not in ("", "ai.onnx"):
            continue
        past = [v.name for v in node.inputs if v is not None and v.name in inputs]
        if past and feeds_attention(out):
            names.add(out.name)
            names.update(past)
    return names


# Ops a cache passes through on its way to attention (layout, GQA's repeat_kv), and
# those between attention scores and their Softmax (scale, mask, casts).
_TO_ATTENTION = frozenset({"Transpose", "Reshape", "Expand", "Unsqueeze", "Squeeze", "Cast", "Identity", "Slice",
                           "Concat", "Tile"})
_AROUND_SOFTMAX = frozenset({"Mul", "Div", "Add", "Sub", "Where", "Cast", "Identity", "Dropout"})
_SEARCH_DEPTH = 8


def feeds_attention(value: ir.Value) -> bool:
    """Whether `value` reaches, through layout ops, a fused attention op or a MatMul
    whose output becomes a Softmax's input or whose other operand is a Softmax's output."""
    frontier, seen = [(value, 0)], set()
    while frontier:
        v, depth = frontier.pop()
        for use in v.uses():
            node = use.node
            if node in seen:
                continue
            seen.add(node)
            rec = record(node)
            if rec is not None and rec.cache:
                return True  # a fused attention op (it has cache slots)
            if node.op_type == "MatMul" and _is_attention_matmul(node, use.idx):
                return True
            if node.op_type in _TO_ATTENTION and depth < _SEARCH_DEPTH:
                frontier.extend((o, depth + 1) for o in node.outputs if o is not None)
    return False


def _is_attention_matmul(node: ir.Node, idx: int) -> bool:
    other = node.inputs[1 - idx] if len(node.inputs) == 2 else None
    return _reaches_softmax(node.outputs[0], 0) or _from_softmax(other, 0)


def _reaches_softmax(value: ir.Value, depth: int) -> bool:
    for use in value.uses():
        if use.node.op_type == "Softmax":
            return True
        if use.node.op_type in _AROUND_SOFTMAX and depth < 4 and _reaches_softmax(use.node.outputs[0], depth + 1):
            return True
    return False


def _from_softmax(value: ir.Value | None, depth: int) -> bool:
    node = None if value is None else value.producer()
    if node is None:
        return False
    if node.op_type == "Softmax":
        return True
    return node.op_type in _AROUND_SOFTMAX and depth < 4 and any(
        _from_softmax(v, depth + 1) for v in node.inputs if v is not None
    )


def resizable_io(model: ir.Model, names=(), *, cache: bool = True) -> set[str]:
    """The interface values that may change size: the KV cache (unless `cache` is
    False) plus the user's `names`, which must be graph inputs or outputs."""
    graph = model.graph
    known = {v.name for v in graph.inputs} | {v.name for v in graph.outputs}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise OnnxPruneError(
            f"--resize-io names no graph input or output {', '.join(map(repr, unknown))}: "
            f"the model's are {', '.join(sorted(known))}"
        )
    result = set(names)
    if cache:
        result |= kv_cache_io(model)
    return result
