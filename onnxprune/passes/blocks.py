"""Analysis: residual blocks, i.e. the single-entry single-exit regions that end in
``Add(x, f(x))`` where x is the region's entry (an identity shortcut), and which of them
can be removed by rewiring the Add's output to x.

How blocks are found (`find_blocks`):

1. The *activation graph*: one vertex per node that depends on a graph input (constants,
   initializers and nodes computing only from constants are left out: they are
   parameters, not data flow), one pseudo-vertex per graph input, a ROOT before the inputs
   and an EXIT after every node with a graph output that nothing else reads. (A graph
   output that is also read, like a KV cache's ``present.*``, is followed through its
   readers, so the layer around it is still found — and reported as escaping.)
2. Dominators (`nx.immediate_dominators` from ROOT) and post-dominators (the same on the
   reversed graph from EXIT), each tree numbered by an Euler tour so that "a
   (post-)dominates b" is two integer comparisons.
3. For an ``Add(a, b)`` of two activations, with x = a (then x = b): the candidate
   region R is every node post-dominated by the Add but not by x's producer P — the nodes
   whose every path to the outputs goes through the Add, minus what lies before x. The
   branch f is the part of R reachable from x inside R. If it reaches the Add's other
   input y, the Add is an identity block. Post-dominance means no value of R leaks out
   except through the Add; a graph output among the branch values is the one escape it
   lets through (step 1), and is reported. A branch node may read values from outside
   (constants, graph inputs, an attention mask, rotary tables, a shape tensor): accepted
   when they do not depend on x. One that does depends on it through a path leaving the
   region — a value escaping the block, or a branch that is not single-entry: the block
   is reported not removable, naming the escaping value.
   When no path from x to y stays inside R (every one passes an escaping value), the
   nodes between x and y are found by a walk back from y that does not cross the Add of
   an earlier block, and the Add is reported as a non-removable identity block when they
   connect (the walk's limit keeps an attention mask, which every later layer's scores
   depend on through the residual stream, from looking like a block entry).
4. An Add that is no identity block is a projection block when its immediate dominator
   D dominates it and it post-dominates D, both of its inputs are computed inside that
   region, and the region holds a weighted op (``Add(g(x), f(x))``).
5. Stages: blocks in order; a block opens a new stage when it is a projection block,
   when its entry is not the previous block's exit after shape-keeping single-input ops
   (ReLU, LayerNorm, ...: their records' `keeps_shape`), or when the exit shape differs (where shapes are known).
   Consecutive blocks of equal width form one stage even where the source framework had
   two modules (digits_resnet's layer1 and layer2, both 32 wide, are one stage of 6).

A region must contain at least one weighted op (its op record says `weighted`: Conv,
ConvTranspose, Gemm, MatMul, Einsum, a fused contrib attention/matmul): ``x + 0.044715·x³``
inside a tanh-GELU is an Add of x and a function of x, but not a residual block.

Complexity: building the graph and both dominator trees is linear in practice
(networkx's Cooper-Harvey-Kennedy iteration; its worst case is quadratic, not met by
feed-forward networks); each Add then costs the size of its own branch, plus walks
bounded by the nodes between x and the Add for branch inputs produced after x and for
Adds without a clean path. Nested blocks are counted once per nesting level. Measured:
~13 us per node, flat from 5k to 50k nodes (a chain of 10,000 blocks, 50k nodes: 0.64 s).

What this does not do: see blocks hidden inside fused ops (ORT's SkipLayerNormalization
holds the residual Add, so ``bert_fused.onnx`` has no blocks), treat ``Sum`` or a
``Concat`` as a residual merge, or look inside model-local functions or subgraphs.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
from collections.abc import Iterable, Mapping

import networkx as nx
import onnx_ir as ir

from onnxprune.passes.cost import model_cost, node_cost
from onnxprune.passes.name_nodes import name_nodes
from onnxprune.passes.rules import record
from onnxprune.passes.shapes import ShapeOf, shape_lookup

Shape = tuple[int, ...]

_STANDARD = frozenset({"", "ai.onnx"})
_ROOT, _EXIT = -1, -2
# How far back (in shape-keeping ops) a block's entry may lie from the previous exit.
_CHAIN_STEPS = 16


@dataclasses.dataclass(frozen=True)
class Block:
    """One residual block. Names refer to the model `find_blocks` ran on."""

    id: int  # index in topological order of the Add, among all blocks
    add: str  # the Add node's name (unique: see passes/name_nodes.py)
    entry: str  # x: the value entering the block (the shortcut's source)
    exit: str  # the Add's output
    branch: tuple[str, ...]  # nodes of f (topological order); what removal deletes
    kind: str  # "identity" or "projection"
    removable: bool
    reason: str = ""  # why not removable ("" when removable)
    stage: int = 0  # index of the run of chained blocks of one width this block is in
    first_in_stage: bool = False
    shortcut: tuple[str, ...] = ()  # projection blocks: the nodes of g

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "branch": list(self.branch), "shortcut": list(self.shortcut)}


@dataclasses.dataclass
class _Region:
    """A block with live references into the model (for the rewrite)."""

    block: Block
    add: ir.Node
    entry_index: int  # which input of the Add is x
    nodes: list[ir.Node]  # the branch, topological order


def find_blocks(model: ir.Model, shapes: Mapping[str, Shape] | None = None) -> list[Block]:
    """Every residual block of the top-level graph, ordered by the Add's position.

    `shapes` (value name -> shape, e.g. `static_shapes(model)`) is optional: where it,
    or the model's own annotations, give both shapes, an Add that broadcasts x is not
    removable, and a change of width starts a new stage. A Block names its nodes, so
    unnamed or duplicate-named nodes of `model` are named first (`name_nodes`, as
    `load_model` does); nothing else of `model` is changed.
    """
    return [r.block for r in find_regions(model, shapes)]


def find_regions(model: ir.Model, shapes: Mapping[str, Shape] | None = None) -> list[_Region]:
    """`find_blocks` with the IR nodes of each branch (used by RemoveBlocksPass)."""
    name_nodes(model.graph)
    with _cycle_collector_paused():
        return _Analysis(model, shapes).run()


@contextlib.contextmanager
def _cycle_collector_paused():
    # The analysis allocates a few objects per node and makes no reference cycles; with
    # the collector on, its full-heap passes over the model made a 50k-node graph take
    # 2.5 s instead of 0.8 s (super-linear in the model's size).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# --------------------------------------------------------------------------- analysis


class _Analysis:
    def __init__(self, model: ir.Model, shapes: Mapping[str, Shape] | None):
        self.graph = model.graph
        self.shapes = shapes or {}
        self.nodes = _topological(self.graph)
        self.index = {node: i for i, node in enumerate(self.nodes)}
        self.outputs = set(self.graph.outputs)
        init_names = set(self.graph.initializers)
        self.inputs = [v for v in self.graph.inputs if v.name not in init_names]
        self.input_vertex = {v: len(self.nodes) + k for k, v in enumerate(self.inputs)}
        self.active = self._active_nodes()

    # ------------------------------------------------------------------ graph

    def _active_nodes(self) -> list[bool]:
        """Whether each node computes from a graph input (transitively)."""
        active = [False] * len(self.nodes)
        live = set(self.inputs)
        for i, node in enumerate(self.nodes):
            if any(v is not None and v in live for v in node.inputs):
                active[i] = True
                live.update(v for v in node.outputs if v is not None)
        return active

    def is_activation(self, value: ir.Value | None) -> bool:
        if value is None:
            return False
        if value in self.input_vertex:
            return True
        producer = value.producer()
        return producer is not None and producer in self.index and self.active[self.index[producer]]

    def vertex(self, value: ir.Value) -> int:
        """The vertex producing an activation value."""
        if value in self.input_vertex:
            return self.input_vertex[value]
        return self.index[value.producer()]

    def _build(self) -> nx.DiGraph:
        edges = []
        for value, vertex in self.input_vertex.items():
            edges.append((_ROOT, vertex))
            if value in self.outputs and not value.uses():
                edges.append((vertex, _EXIT))
        for i, node in enumerate(self.nodes):
            if not self.active[i]:
                continue
            edges.extend((self.vertex(v), i) for v in node.inputs if self.is_activation(v))
            # Only outputs nothing reads end a path: a graph output that is also read
            # (a KV cache's present.*) is followed through its readers, so the region
            # around it is still found; the escape is reported by `_escape`.
            if any(v in self.outputs and not v.uses() for v in node.outputs if v is not None):
                edges.append((i, _EXIT))
        g = nx.DiGraph()
        g.add_nodes_from((_ROOT, _EXIT))
        g.add_edges_from(edges)
        return g

    # ------------------------------------------------------------------ driver

    def run(self) -> list[_Region]:
        g = self._build()
        self.dom = _Tree(nx.immediate_dominators(g, _ROOT), _ROOT)
        self.pdom = _Tree(nx.immediate_dominators(g.reverse(copy=False), _EXIT), _EXIT)
        found: list[tuple[int, dict]] = []
        self.block_adds: set[int] = set()
        for i, node in enumerate(self.nodes):
            if node.op_type != "Add" or node.domain not in _STANDARD or not self.active[i]:
                continue
            if len(node.inputs) != 2 or not all(self.is_activation(v) for v in node.inputs):
                continue
            if node.inputs[0] is node.inputs[1]:
                continue
            hit = self._identity(i, 0) or self._identity(i, 1) or self._projection(i)
            if hit is not None:
                found.append((i, hit))
                self.block_adds.add(i)
        return self._finish(found)

    # ------------------------------------------------------------------ identity

    def _in_region(self, add: int, p: int, n: int) -> bool:
        return n != add and self.pdom.dominates(add, n) and not self.pdom.dominates(p, n)

    def _identity(self, a: int, entry_index: int) -> dict | None:
        add = self.nodes[a]
        x, y = add.inputs[entry_index], add.inputs[1 - entry_index]
        p = self.vertex(x)
        p_pos = p if p < len(self.nodes) else -1
        y_vertex = self.vertex(y)
        if y_vertex == p or y in self.input_vertex:
            return None
        branch = self._clean_branch(a, x, p)
        if y_vertex in branch:
            if not self._weighted(branch):
                return None
            reason = self._escape(a, x, p, p_pos, branch)
        else:
            # No path from x to y stays inside the region: every one passes a value that is
            # also read elsewhere. Still a block (not removable) when y is computed from x
            # without crossing the Add of a block found before (which keeps an attention
            # mask, read by every layer, from looking like the entry of a later layer).
            branch = self._x_to_y(a, x, p_pos, stop_at_adds=True)
            if y_vertex not in branch or not self._weighted(branch):
                return None
            reason = self._describe_escape(a, x, p_pos, branch)
        if not reason and not self._same_shape(x, add.outputs[0]):
            reason = f"the Add broadcasts '{x.name}' to a larger shape: removing it would change the shape"
        return {"kind": "identity", "entry_index": entry_index, "branch": branch,
                "removable": not reason, "reason": reason}

    def _clean_branch(self, a: int, x: ir.Value, p: int) -> set[int]:
        """What x reaches inside R (plus dead readers of branch values, removed with it)."""
        branch: set[int] = set()
        stack = [self.index[u.node] for u in x.uses() if u.node in self.index]
        stack = [n for n in stack if self.active[n] and self._in_region(a, p, n)]
        while stack:
            n = stack.pop()
            if n in branch:
                continue
            branch.add(n)
            for out in self.nodes[n].outputs:
                if out is None:
                    continue
                for use in out.uses():
                    c = self.index.get(use.node)
                    if c is None or c == a or c in branch:
                        continue
                    if self._in_region(a, p, c) or not self.pdom.has(c):
                        stack.append(c)
        return branch

    def _escape(self, a: int, x: ir.Value, p: int, p_pos: int, branch: set[int]) -> str:
        """Why a branch with a clean path from x to the Add is not self-contained ("" when it is)."""
        for n in sorted(branch):
            for out in self.nodes[n].outputs:
                if out is not None and out in self.outputs:
                    return f"branch value '{out.name}' escapes the block: it is a graph output"
        memo: dict[int, bool] = {}
        for n in sorted(branch):
            for value in self.nodes[n].inputs:
                if value is None or value is x or not self.is_activation(value) or value in self.input_vertex:
                    continue
                q = self.index[value.producer()]
                if q in branch or q < p_pos:
                    continue  # inside, or computed before x: available at the entry
                if self._depends_on(q, x, p, p_pos, memo):
                    return self._describe_escape(a, x, p_pos, self._x_to_y(a, x, p_pos))
        return ""

    def _depends_on(self, start: int, x: ir.Value, p: int, p_pos: int, memo: dict[int, bool]) -> bool:
        """Whether node `start` reads x, transitively, looking only at nodes after x's producer."""
        stack = [start]
        order: list[int] = []
        while stack:
            n = stack.pop()
            if n in memo:
                continue
            memo[n] = False
            order.append(n)
            for value in self.nodes[n].inputs:
                if value is x:
                    memo[n] = True
                if value is None or not self.is_activation(value) or value in self.input_vertex:
                    continue
                q = self.index[value.producer()]
                if q == p:
                    memo[n] = True
                elif q > p_pos and q not in memo:
                    stack.append(q)
        # Settle dependence bottom-up (producers have smaller indices than their readers).
        for n in sorted(order):
            if memo[n]:
                continue
            for value in self.nodes[n].inputs:
                if value is not None and self.is_activation(value) and value not in self.input_vertex:
                    if memo.get(self.index[value.producer()], False):
                        memo[n] = True
                        break
        return memo[start]

    def _x_to_y(self, a: int, x: ir.Value, p_pos: int, *, stop_at_adds: bool = False) -> set[int]:
        """Nodes on a path from x to the Add's other input: ancestors of it after x's
        producer that are computed from x. With `stop_at_adds`, the walk back does not
        cross the Add of a block found before."""
        add = self.nodes[a]
        y = add.inputs[1] if add.inputs[0] is x else add.inputs[0]
        ancestors: set[int] = set()
        stack = [self.index[y.producer()]]
        while stack:
            n = stack.pop()
            if n in ancestors or n <= p_pos:
                continue
            ancestors.add(n)
            node = self.nodes[n]
            if stop_at_adds and n in self.block_adds and node is not y.producer():
                continue
            for value in node.inputs:
                if value is x or value in self.input_vertex or not self.is_activation(value):
                    continue
                stack.append(self.index[value.producer()])
        region: set[int] = set()
        for n in sorted(ancestors):
            node = self.nodes[n]
            if any(v is x or (v is not None and v.producer() in self.index and self.index[v.producer()] in region)
                   for v in node.inputs):
                region.add(n)
        return region

    def _describe_escape(self, a: int, x: ir.Value, p_pos: int, region: set[int]) -> str:
        """Name a value computed from x on the way to the Add that is also read elsewhere."""
        for n in sorted(region):
            for out in self.nodes[n].outputs:
                if out is None:
                    continue
                if out in self.outputs:
                    return f"branch value '{out.name}' escapes the block: it is a graph output"
                for use in out.uses():
                    c = self.index.get(use.node)
                    if c is not None and c != a and c not in region and self.pdom.has(c):
                        return (
                            f"branch value '{out.name}' escapes the block: it is also read by node "
                            f"'{use.node.name}' outside it"
                        )
        return "the branch reads a value computed from its entry outside the block (not single-entry)"

    # ------------------------------------------------------------------ projection

    def _projection(self, a: int) -> dict | None:
        d = self.dom.idom.get(a)
        if d is None or d == _ROOT or not self.pdom.has(d) or not self.pdom.dominates(a, d):
            return None
        add = self.nodes[a]
        if d < len(self.nodes):
            candidates = [v for v in self.nodes[d].outputs if v is not None and v.uses()]
            entry = next((v for v in candidates if self._float(v)), None)
        else:
            entry = next(v for v, vertex in self.input_vertex.items() if vertex == d)
            entry = entry if self._float(entry) else None
        if entry is None:
            return None
        region = self._dominated_region(d, a)
        sides = []
        for value in add.inputs:
            v = self.vertex(value)
            if v not in region:
                return None
            sides.append(self._cone(v, region))
        if not self._weighted(region):
            return None
        # The longer side is the residual branch f, the other the shortcut g.
        branch, shortcut = sorted(sides, key=len, reverse=True)
        shortcut = shortcut - branch
        ops = ", ".join(sorted({self.nodes[n].op_type for n in shortcut})) or "shared nodes"
        return {
            "kind": "projection",
            "entry": entry,
            "branch": branch,
            "shortcut": shortcut,
            "removable": False,
            "reason": (
                f"projection shortcut ({ops}) from '{entry.name}': not an identity, the Add cannot be rewired to x"
            ),
        }

    def _dominated_region(self, d: int, a: int) -> set[int]:
        """Nodes dominated by d and post-dominated by a, found by walking forward from d."""
        seen: set[int] = set()
        stack = [d]
        while stack:
            n = stack.pop()
            outs = self.inputs_of_vertex(n)
            for out in outs:
                for use in out.uses():
                    c = self.index.get(use.node)
                    if c is None or c == a or c in seen or not self.active[c]:
                        continue
                    if self.dom.dominates(d, c) and self.pdom.has(c) and self.pdom.dominates(a, c):
                        seen.add(c)
                        stack.append(c)
        return seen

    def inputs_of_vertex(self, vertex: int) -> list[ir.Value]:
        if vertex < len(self.nodes):
            return [v for v in self.nodes[vertex].outputs if v is not None]
        return [v for v, k in self.input_vertex.items() if k == vertex]

    def _cone(self, vertex: int, region: set[int]) -> set[int]:
        """The ancestors of `vertex` inside `region`, itself included."""
        cone: set[int] = set()
        stack = [vertex]
        while stack:
            n = stack.pop()
            if n in cone or n not in region:
                continue
            cone.add(n)
            for value in self.nodes[n].inputs:
                if self.is_activation(value):
                    stack.append(self.vertex(value))
        return cone

    # ------------------------------------------------------------------ helpers

    def _weighted(self, vertices: Iterable[int]) -> bool:
        return any(_record_says(self.nodes[n], "weighted") for n in vertices)

    def _float(self, value: ir.Value) -> bool:
        return value.dtype is None or value.dtype.is_floating_point()

    def shape(self, value: ir.Value) -> Shape | None:
        shape = self.shapes.get(value.name)
        if shape is not None:
            return tuple(shape)
        if value.shape is not None and all(isinstance(d, int) for d in value.shape):
            return tuple(value.shape)
        return None

    def _same_shape(self, a: ir.Value, b: ir.Value) -> bool:
        sa, sb = self.shape(a), self.shape(b)
        return sa is None or sb is None or sa == sb

    # ------------------------------------------------------------------ blocks and stages

    def _finish(self, found: list[tuple[int, dict]]) -> list[_Region]:
        regions: list[_Region] = []
        previous_exit: ir.Value | None = None
        stage = -1
        for block_id, (a, info) in enumerate(found):
            add = self.nodes[a]
            if info["kind"] == "identity":
                entry = add.inputs[info["entry_index"]]
                entry_index = info["entry_index"]
            else:
                entry = info["entry"]
                entry_index = -1
            exit_value = add.outputs[0]
            chained = previous_exit is not None and self._chains(previous_exit, entry)
            if info["kind"] == "projection" or not chained or not self._same_shape(previous_exit, exit_value):
                stage += 1
                first = True
            else:
                first = False
            nodes = [self.nodes[n] for n in sorted(info["branch"])]
            shortcut = [self.nodes[n] for n in sorted(info.get("shortcut", ()))]
            block = Block(
                id=block_id,
                add=add.name,
                entry=entry.name or "",
                exit=exit_value.name or "",
                branch=tuple(n.name for n in nodes),
                kind=info["kind"],
                removable=info["removable"],
                reason=info["reason"],
                stage=stage,
                first_in_stage=first,
                shortcut=tuple(n.name for n in shortcut),
            )
            regions.append(_Region(block=block, add=add, entry_index=entry_index, nodes=nodes))
            previous_exit = exit_value
        return regions

    def _chains(self, previous_exit: ir.Value, entry: ir.Value) -> bool:
        """Whether `entry` is `previous_exit` after shape-keeping single-input ops."""
        value = entry
        for _ in range(_CHAIN_STEPS):
            if value is previous_exit:
                return True
            producer = value.producer()
            if producer is None or not _record_says(producer, "keeps_shape"):
                return False
            data = [v for v in producer.inputs if self.is_activation(v)]
            if len(data) != 1:
                return False
            value = data[0]
        return False


def _record_says(node: ir.Node, flag: str) -> bool:
    rec = record(node)
    return rec is not None and getattr(rec, flag)


class _Tree:
    """A (post-)dominator tree from networkx's idom dict, with Euler-tour numbers."""

    def __init__(self, idom: dict[int, int], root: int):
        self.idom = idom
        children: dict[int, list[int]] = {}
        for node, parent in idom.items():
            if node != root:
                children.setdefault(parent, []).append(node)
        self.tin: dict[int, int] = {}
        self.tout: dict[int, int] = {}
        clock = 0
        stack = [(root, False)]
        while stack:
            node, done = stack.pop()
            if done:
                self.tout[node] = clock
                continue
            self.tin[node] = clock
            clock += 1
            stack.append((node, True))
            stack.extend((c, False) for c in children.get(node, ()))

    def has(self, node: int) -> bool:
        return node in self.tin

    def dominates(self, a: int, b: int) -> bool:
        """a dominates b (a == b included); False when either is not in the tree."""
        ta, tb = self.tin.get(a), self.tin.get(b)
        return ta is not None and tb is not None and ta <= tb and self.tout[b] <= self.tout[a]


def _topological(graph: ir.Graph) -> list[ir.Node]:
    """The graph's nodes in a topological order: the stored order when it is one."""
    nodes = list(graph)
    position = {node: i for i, node in enumerate(nodes)}
    if all(
        v is None or v.producer() is None or position.get(v.producer(), -1) < i
        for i, node in enumerate(nodes)
        for v in node.inputs
    ):
        return nodes
    g = nx.DiGraph()
    g.add_nodes_from(range(len(nodes)))
    for i, node in enumerate(nodes):
        for v in node.inputs:
            if v is not None and v.producer() in position:
                g.add_edge(position[v.producer()], i)
    return [nodes[i] for i in nx.lexicographical_topological_sort(g)]


# --------------------------------------------------------------------------- cost


def block_macs(
    model: ir.Model, blocks: Iterable[Block], shapes: Mapping[str, Shape] | ShapeOf | None = None
) -> dict[int, int]:
    """MACs of each block's nodes (branch, plus the shortcut of a projection block), by
    block id, under `onnxprune.passes.cost.node_cost`'s convention. `shapes` is a
    `shape_of` callback, a value name -> shape mapping (e.g. `static_shapes(model)`), or
    None to compute `static_shapes(model)` here. Does not modify `model`."""
    shape_of = shape_lookup(model, shapes)
    by_name = {node.name: node for node in model.graph}
    result = {}
    for block in blocks:
        names = (*block.branch, *block.shortcut)
        result[block.id] = sum(node_cost(by_name[n], shape_of).macs for n in names if n in by_name)
    return result


@dataclasses.dataclass
class BlockCosts:
    macs: dict[int, int]
    params: dict[int, int]
    total_macs: int
    total_params: int


def block_costs(model: ir.Model, blocks: list[Block], shapes: dict) -> BlockCosts:
    """MACs (branch nodes) and parameters (weights only the branch reads) per block."""
    macs = block_macs(model, blocks, shapes)
    cost = model_cost(model, shapes)
    by_name = {n.name: n for n in model.graph if n.name}
    params: dict[int, int] = {}
    for b in blocks:
        names = set(b.branch)
        own = 0
        seen = set()
        for name in names:
            node = by_name.get(name)
            for v in node.inputs if node is not None else ():
                if v is None or id(v) in seen or v.const_value is None:
                    continue
                seen.add(id(v))
                # A weight shared with nodes outside the branch stays after removal.
                if all((u.node.name in names) for u in v.uses()) and v.dtype is not None and v.dtype.is_floating_point():
                    own += int(math.prod(v.const_value.shape))
        params[b.id] = own
    return BlockCosts(macs, params, cost.total_macs, cost.total_params)


__all__ = ["Block", "BlockCosts", "block_costs", "block_macs", "find_blocks", "find_regions"]
