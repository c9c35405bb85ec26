"""Which graph inputs and outputs may change size when the model is pruned.

By default every axis of the interface is fixed: a caller feeds and reads tensors of the
declared shapes, so pruning must not change them. One exception is on by default: a
decoder's key-value cache. A cache output is the Concat of a cache input with the new
keys or values; when heads are removed, both must shrink together, and a caller must
allocate the cache at the new size (the report lists the change). Users may name more
values (e.g. a hidden-state output) to allow them to shrink as well.

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
        if past:
            names.add(out.name)
            names.update(past)
    return names


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
