"""What the HTML page shows, as one JSON-ready dict: the graph (nodes, edges, residual
blocks for collapsing), the channel groups with the nodes each touches, MACs and
parameters per node, and for a prune the widths before and after, the plan, the
interface changes and the iteration trajectory.

The page (`tools/html_page.py`) draws this; nothing here knows about HTML. Counts come
from the same places as `inspect --json` (`pipeline.inspect`, `Workspace.blocks`), so the
page and the JSON agree by construction, and the browser test checks that they do.

Node ids are positions in the analysed working copy's node list (named by
`passes/name_nodes.py`), the same list the cost rows and channel members refer to.
"""

from __future__ import annotations

import itertools
import math
import os

import onnx_ir as ir

from onnxprune.compiler.pipeline import describe
from onnxprune.compiler.workspace import Options, Workspace
from onnxprune.passes.blocks import block_macs
from onnxprune.passes.fold_shapes import shape_only_values
from onnxprune.passes.rules import record
from onnxprune.tools.inspect_blocks import blocks_json

FORMAT = "onnxprune.page/1"


def _dims(shape) -> list:
    return [d if isinstance(d, int) else None for d in shape] if shape is not None else []


def _width_slot(node: ir.Node):
    """The input index and layout of the weight that makes `node`'s features (a Conv,
    Gemm or MatMul weight, not a bias), or None."""
    rec = record(node)
    if rec is None or rec.weights is None:
        return None
    for index, slot in rec.weights(node).items():
        if slot.in_axis is not None and index < len(node.inputs) and node.inputs[index] is not None:
            return index, slot
    return None


def widths(model: ir.Model) -> dict[str, dict]:
    """Output and input features of every node with a weight, by node name."""
    out = {}
    for node in model.graph:
        found = _width_slot(node)
        if found is None:
            continue
        index, slot = found
        shape = node.inputs[index].shape
        if shape is None or not all(isinstance(d, int) for d in shape):
            continue
        out[node.name] = {"op": node.op_type, "out": int(shape[slot.out_axis]), "in": int(shape[slot.in_axis])}
    return out


COLLAPSE_ABOVE = 200  # units on the first view beyond which name scopes collapse too


def _scope(name: str, depth: int) -> tuple[str, ...] | None:
    """The first `depth` name scopes of a node (`/layer1/layer1.0/conv1/Conv` at depth 2:
    ("layer1", "layer1.0")), or None when its name has fewer."""
    parts = [p for p in name.split("/") if p][:-1]
    return tuple(parts[:depth]) if len(parts) >= depth else None


def runs(node_rows: list[dict], blocks: list[dict], limit: int = COLLAPSE_ABOVE) -> list[dict]:
    """Runs of consecutive residual blocks of one stage, one box each, when a box per
    block still leaves more than `limit` (a 10k-node ResNet has some 1,400 blocks). Each
    run holds at most as many blocks as keeps the runs near `limit` / 2, and the nodes
    between its blocks (the Relu after each Add) that no block holds."""
    loose = sum(1 for n in node_rows if n["block"] is None and not n["plumbing"])
    # Only when the blocks themselves are many: loose nodes are for name scopes.
    if len(blocks) + loose <= limit or len(blocks) <= limit // 2:
        return []
    size = max(2, math.ceil(len(blocks) / max(1, limit // 2)))
    out: list[dict] = []
    taken: set[int] = set()
    ordered = sorted(blocks, key=lambda b: b["id"])
    for stage, group in itertools.groupby(ordered, key=lambda b: b["stage"]):
        group = list(group)
        step = math.ceil(len(group) / math.ceil(len(group) / size))  # equal parts, none of one left over
        for k in range(0, len(group), step):
            part = group[k:k + step]
            members = {i for b in part for i in b["nodes"]}
            if len(part) < 2 or not members:
                continue
            between = {i for i in range(min(members), max(members) + 1)
                       if node_rows[i]["block"] is None and i not in taken}
            nodes = sorted(members | between)
            taken.update(nodes)
            out.append({"id": len(out), "name": f"blocks {part[0]['id']}–{part[-1]['id']}", "stage": stage,
                        "blocks": [b["id"] for b in part], "nodes": nodes})
    return out


def scopes(node_rows: list[dict], visible_blocks: int, limit: int = COLLAPSE_ABOVE) -> list[dict]:
    """Name scopes to collapse when blocks alone leave more than `limit` units (a graph
    with few residual blocks: DenseNet, detection necks, Keras and TorchScript exports
    name their nodes by scope). The deepest depth that gets under `limit` is taken, else
    the shallowest; a scope of one node stays a node; nodes no name scope holds are cut
    into runs of consecutive nodes when still too many. Nodes in blocks are not scoped."""
    loose = [i for i, n in enumerate(node_rows) if n["block"] is None and n.get("run") is None]
    if len(loose) + visible_blocks <= limit:
        return []
    best = None
    for depth in (3, 2, 1):
        found: dict[tuple, list[int]] = {}
        for i in loose:
            key = _scope(node_rows[i]["name"], depth)
            if key is not None:
                found.setdefault(key, []).append(i)
        found = {k: v for k, v in found.items() if len(v) > 1}
        units = len(loose) - sum(len(v) for v in found.values()) + len(found) + visible_blocks
        best = found
        if units <= limit:
            break
    out = [{"id": k, "name": "/".join(key), "nodes": nodes} for k, (key, nodes) in enumerate(sorted(best.items()))]
    # Names without scopes (Paddle's `Conv.29`, dynamo's `node_*`): consecutive nodes in
    # graph order, so that no view starts with more than about `limit` boxes.
    scoped = {i for sc in out for i in sc["nodes"]}
    rest = [i for i in loose if i not in scoped]
    if len(rest) + len(out) + visible_blocks > limit:
        size = max(2, math.ceil(len(rest) / max(1, limit // 2)))
        for k in range(0, len(rest), size):
            part = rest[k:k + size]
            if len(part) > 1:
                name = f"nodes {node_rows[part[0]]['name']} … {node_rows[part[-1]]['name']}"
                out.append({"id": len(out), "name": name, "nodes": part})
    return out


def _wiring(nodes: list[ir.Node]) -> tuple[dict[str, int], dict[str, list[int]], set[tuple[int, int]]]:
    """Producer of each value, consumers of each non-constant value, and node-to-node edges."""
    producer: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for v in n.outputs:
            if v is not None and v.name:
                producer[v.name] = i
    edges = set()
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for v in n.inputs:
            if v is None or not v.name or v.const_value is not None:
                continue
            consumers.setdefault(v.name, []).append(i)
            if v.name in producer:
                edges.add((producer[v.name], i))
    return producer, consumers, edges


def _group_row(g: dict, producer: dict[str, int], readers: dict[str, list[int]]) -> dict:
    """`inspect`'s group row with the nodes it touches (producers of its activations,
    `readers` of its weights) instead of the member list."""
    touched = set()
    for m in g["members"]:
        if m["kind"] == "value":
            if m["tensor"] in producer:
                touched.add(producer[m["tensor"]])
        else:
            touched.update(readers.get(m["tensor"], ()))
    return {**{k: v for k, v in g.items() if k != "members"}, "members": len(g["members"]), "nodes": sorted(touched)}


def _block_owners(blocks, by_name: dict[str, int]) -> dict[int, int]:
    """Node id -> the largest block whose branch, shortcut or Add holds it: a collapsed
    block hides everything inside it, nested blocks included."""
    owner: dict[int, int] = {}
    for b in sorted(blocks, key=lambda b: -len(b.branch)):
        for i in (by_name[n] for n in (*b.branch, *b.shortcut, b.add) if n in by_name):
            owner.setdefault(i, b.id)
    return owner


def graph_data(source, *, input_shapes=None, resize_io=(), resize_cache: bool = True,
               collapse_above: int = COLLAPSE_ABOVE) -> tuple[dict, Workspace]:
    """The page's data for `source` (path or ir.Model), and the Workspace it came from."""
    ws = Workspace(source, Options(input_shapes=input_shapes, resize_io=tuple(resize_io), resize_cache=resize_cache))
    info = describe(ws)
    nodes = list(ws.analysis.nodes)  # the order of info["nodes"] and of the members
    by_name = {n.name: i for i, n in enumerate(nodes)}
    costs = block_macs(ws.model, ws.blocks, ws.shapes)
    blocks = blocks_json(ws.blocks, costs, total_macs=info["total"]["macs"])

    owner = _block_owners(ws.blocks, by_name)
    held: dict[int, list[int]] = {}
    for i, b in sorted(owner.items()):
        held.setdefault(b, []).append(i)
    for row in blocks:
        row["nodes"] = held.get(row["id"], [])
        row.pop("branch", None)  # node ids above say the same, in fewer bytes
        row.pop("shortcut", None)

    producer, consumers, edges = _wiring(nodes)
    graph_inputs = list(ws.model.graph.inputs)

    # Shape plumbing (Shape -> Gather -> Concat -> a Reshape's target: nodes whose every
    # output ends in shape slots) and Constant nodes (drawn no more than initializers are).
    # The page hides them by default: they carry no features.
    plumbing = shape_only_values(ws.model.graph)
    node_rows = []
    for i, (n, cost) in enumerate(zip(nodes, info["nodes"])):
        node_rows.append({
            "name": n.name, "op": n.op_type, "macs": cost["macs"], "params": cost["params"],
            "block": owner.get(i),
            "plumbing": n.op_type == "Constant" or (bool(n.outputs) and all(v in plumbing for v in n.outputs)),
            "in": [v.name for v in n.inputs if v is not None and v.name and v.const_value is None],
            "weights": [v.name for v in n.inputs if v is not None and v.const_value is not None],
            "out": [v.name for v in n.outputs if v is not None],
            # Static output shapes (None where unknown), as Netron shows them.
            "shapes": [None if (shape := ws.shapes.get(v.name)) is None else _dims(shape)
                       for v in n.outputs if v is not None],
        })

    run_rows = runs(node_rows, blocks, collapse_above)
    for row in node_rows:
        row["run"] = None
    for r in run_rows:
        for i in r["nodes"]:
            node_rows[i]["run"] = r["id"]
    in_runs = {b for r in run_rows for b in r["blocks"]}
    scope_rows = scopes(node_rows, len(run_rows) + len(blocks) - len(in_runs), collapse_above)
    for row in node_rows:
        row["scope"] = None
    for sc in scope_rows:
        for i in sc["nodes"]:
            node_rows[i]["scope"] = sc["id"]

    readers: dict[str, list[int]] = {}
    for i, row in enumerate(node_rows):
        for name in row["weights"]:
            readers.setdefault(name, []).append(i)
    groups = [_group_row(g, producer, readers) for g in info["groups"]]

    data = {
        "format": FORMAT,
        "model": os.path.basename(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else "model",
        "input_shapes": info["input_shapes"],
        "total": info["total"],
        "inputs": [{"name": v.name, "shape": _dims(v.shape), "to": consumers.get(v.name, [])} for v in graph_inputs],
        "outputs": [{"name": v.name, "shape": _dims(v.shape), "from": producer.get(v.name)}
                    for v in ws.model.graph.outputs],
        "nodes": node_rows,
        "edges": sorted(edges),
        "groups": groups,
        "blocks": blocks,
        "scopes": scope_rows,
        "runs": run_rows,
        "prune": None,
    }
    return data, ws


def prune_data(before: ir.Model, after: ir.Model, report: dict, plan: dict) -> dict:
    """What a prune did: widths per layer before and after (a node the prune deleted has
    `after` null), the plan, interface changes, costs, recovery and the iterations."""
    w_before, w_after = widths(before), widths(after)
    layers = []
    for name, w in w_before.items():
        a = w_after.get(name)
        layers.append({"node": name, "op": w["op"], "out_before": w["out"], "in_before": w["in"],
                       "out_after": None if a is None else a["out"], "in_after": None if a is None else a["in"]})
    keep = ("method", "settings", "cost", "latency", "interface", "verification", "iterations", "chosen",
            "target_reached", "stopped_because", "accuracy", "blocks", "groups")
    out = {k: report.get(k) for k in keep}
    if out.get("groups") is not None:
        out["groups"] = {k: v for k, v in out["groups"].items() if k != "detail"}
        out["groups"]["removed_by_group"] = {row["id"]: row["removed"] for row in report["groups"]["detail"]}
    rec = report.get("recovery") or {}
    out["recovery"] = {k: rec.get(k) for k in ("requested", "ran", "why_not", "data", "calibration_samples")}
    out["recovery"]["layers"] = [
        {k: r.get(k) for k in ("node", "error_before", "error_after", "refit", "iteration")} for r in rec.get("layers", [])
    ]
    out["widths"] = layers
    out["plan"] = plan
    return out
