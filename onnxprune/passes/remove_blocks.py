"""Rewrite: physically remove chosen residual blocks.

For each chosen block (found by `onnxprune.passes.blocks.find_blocks` on the model the
pass runs on), `RemoveBlocksPass`:
1. rewires every reader of the Add's output to the block's entry x. When the Add's output
   is a graph output, an ``Identity(x)`` takes over the output's name, so the graph's
   interface keeps its names, dtypes and declared shapes;
2. deletes the Add and every node of the residual branch f;
3. deletes what only the removed nodes used: Constant nodes, initializers, and side
   computations left without readers (e.g. a shape chain or a mask only that branch read).

The result computes exactly what the original computes with the branch's output
multiplied by 0.

What it does not do: remove projection blocks or any block `find_blocks` reports as not
removable (it raises `OnnxPruneError` instead, as for an unknown id), touch dead code
outside the removed branches (dead readers of branch values go with the branch), re-infer shapes (removing an identity block changes no
shape), or renumber the blocks: ids refer to `find_blocks` on the model as it is when the
pass starts, so run `find_blocks` again before a second pass.
"""
from __future__ import annotations

from collections.abc import Iterable

import onnx_ir as ir

from onnxprune.errors import OnnxPruneError
from onnxprune.passes.blocks import Block, _Region, find_regions


class RemoveBlocksPass(ir.passes.InPlacePass):
    """Remove the given blocks (ids or `Block`s of `find_blocks(model)`) from the model.

    A `Block` is matched by its Add (output name and node), so a list found on an equal
    copy of the model works; an int by id. Every choice is checked before anything is
    changed: one unknown or non-removable block refuses the whole pass.
    """

    def __init__(self, blocks: Iterable[int | Block]):
        super().__init__()
        self.blocks = list(blocks)

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        regions = find_regions(model)
        chosen = _resolve(regions, self.blocks)
        graph = model.graph
        for region in chosen:
            if region.add.graph is not graph:
                continue  # inside the branch of a block removed just before (nested blocks)
            _remove(graph, region)
        return ir.passes.PassResult(model, modified=bool(chosen))


def _resolve(regions: list[_Region], wanted: list[int | Block]) -> list[_Region]:
    by_id = {r.block.id: r for r in regions}
    by_exit = {r.block.exit: r for r in regions}  # value names are unique in a graph
    chosen: dict[int, _Region] = {}
    for item in wanted:
        if isinstance(item, Block):
            region = by_exit.get(item.exit)
            if region is None or region.block.add != item.add:
                raise OnnxPruneError(
                    f"block {item.id} (Add '{item.add}') is not a block of this model: "
                    "run find_blocks on the model you pass to RemoveBlocksPass"
                )
        elif isinstance(item, int) and not isinstance(item, bool):
            region = by_id.get(item)
            if region is None:
                span = f"ids 0..{len(regions) - 1}" if regions else "no blocks"
                raise OnnxPruneError(f"no block with id {item}: this model has {span}")
        else:
            raise OnnxPruneError(f"blocks are given as ids or Blocks, not {type(item).__name__}")
        if not region.block.removable:
            raise OnnxPruneError(
                f"block {region.block.id} (Add '{region.block.add}', {region.block.kind}) is not removable: "
                f"{region.block.reason}"
            )
        chosen[region.block.id] = region
    return [chosen[k] for k in sorted(chosen)]


def _remove(graph: ir.Graph, region: _Region) -> None:
    add = region.add
    x = add.inputs[region.entry_index]  # read now: an earlier removal may have rewired it
    out = add.outputs[0]
    if out.is_graph_output():
        _hand_output_to_identity(graph, add, x, out)
    else:
        out.replace_all_uses_with(x)
    removed = [add, *(n for n in region.nodes if n.graph is graph)]
    freed = [v for node in removed for v in node.inputs if v is not None]
    graph.remove(removed, safe=True)  # safe: refuses if anything outside still reads them
    _remove_unused(graph, freed)


def _hand_output_to_identity(graph: ir.Graph, add: ir.Node, x: ir.Value, out: ir.Value) -> None:
    name = out.name
    identity = ir.Node("", "Identity", [x], name=f"{add.name or name}_removed_block")
    graph.insert_after(add, identity)
    new = identity.outputs[0]
    new.type, new.shape = out.type, out.shape
    out.replace_all_uses_with(new, replace_graph_outputs=True)
    out.name = f"{name}__removed"
    new.name = name


def _remove_unused(graph: ir.Graph, values: list[ir.Value]) -> None:
    """Delete the producers (and initializers) of `values` that nothing reads any more,
    then theirs, and so on."""
    outputs = set(graph.outputs)
    inputs = set(graph.inputs)
    stack = list(values)
    while stack:
        value = stack.pop()
        if value.uses() or value in outputs or value in inputs:
            continue
        if value.is_initializer():
            if graph.initializers.get(value.name) is value:
                del graph.initializers[value.name]
            continue
        producer = value.producer()
        if producer is None or producer.graph is not graph:
            continue
        if any(v is not None and (v.uses() or v in outputs) for v in producer.outputs):
            continue
        stack.extend(v for v in producer.inputs if v is not None)
        graph.remove(producer, safe=True)


__all__ = ["RemoveBlocksPass"]
