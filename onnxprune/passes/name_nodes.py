"""NameNodesPass: every node gets a unique, stable name, its identity everywhere else.

Analysis, blocks, the probe, plans, reports and `--ignore` refer to a node by its name,
so each node needs one and no two may share it. Names that exist are kept (the first
node holding a name keeps it); an unnamed node is called ``<op_type>_<position>``, its
position in the graph, and a duplicate ``<name>_<k>`` — with a number appended until
the name is free. The same graph therefore always gets the same names.

What it does not do: rename values (a value's name is part of the model's interface
and of what its readers refer to), or name nodes inside subgraphs (control flow is
refused at load). Model-local functions get their nodes named too, since messages name
them.
"""
from __future__ import annotations

import onnx_ir as ir


def unique_name(base: str, taken: set[str], sep: str = "_") -> str:
    """`base`, or `base<sep><k>` with the smallest k that is free; marked taken."""
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}{sep}{k}"
    taken.add(name)
    return name


def name_nodes(nodes) -> bool:
    """Name the nodes of one graph or function in place; returns whether any changed."""
    nodes = list(nodes)
    taken: set[str] = set()
    duplicates: list[ir.Node] = []
    for node in nodes:
        if node.name and node.name not in taken:
            taken.add(node.name)
        elif node.name:
            duplicates.append(node)
    changed = False
    for position, node in enumerate(nodes):
        if not node.name:
            node.name = unique_name(f"{node.op_type}_{position}", taken)
            changed = True
    for node in duplicates:
        node.name = unique_name(node.name, taken)
        changed = True
    return changed


class NameNodesPass(ir.passes.InPlacePass):
    """See the module docstring."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        changed = name_nodes(model.graph)
        for function in model.functions.values():
            changed = name_nodes(function) or changed
        return ir.passes.PassResult(model, modified=changed)

