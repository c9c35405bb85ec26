"""Channel-group analysis: which channels of which tensors must be removed together.

`analyze_channels(model, shapes)` walks the graph once in topological order and lets
each node's rule (``passes/rules``) tie, derive or freeze the dimension variables of
its inputs and outputs. The result, `ChannelAnalysis`, holds every axis's owner array
(which unit sits at each position) and the groups built from the unit classes.

What it does: analysis only; it writes nothing onto the model.
What it does not do: decide what to remove (compiler/selection.py) or rewrite
(passes/slice_channels.py). It never guesses: an op without a rule freezes every
axis it touches and records why.

Constants (initializers and Constant-node outputs) get their own variables per use
(node, input index), so a tensor shared by two unrelated consumers — exporters
deduplicate identical biases — does not force their groups to prune alike; the
rewrite makes a copy where uses end up sliced differently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from onnxprune.passes.constants import const_array, is_const, is_weight, weight_storage
from onnxprune.passes.dims import FIXED, DimTable, UnitTable
from onnxprune.passes.name_nodes import name_nodes
from onnxprune.passes.rules import default_rule, record
from onnxprune.passes.shape_values import ShapeValues


@dataclass
class ConstMember:
    """One axis of one constant use that pruning slices."""

    node_index: int
    input_index: int
    axis: int
    var: int
    role: str  # out | in | param | bn_scale | stat


@dataclass
class ChannelGroup:
    """Channels that must lose the same indices together.

    `classes` are the prunable units (root ids); `frozen` maps a class to why it must
    stay. `sources` are the weights whose output features the group consists of.
    """

    id: int
    classes: list[int]
    frozen: dict[int, list[str]]
    inexact: dict[int, list[str]]
    sources: list[dict]
    members: list[tuple] = field(default_factory=list)  # (kind, name, axis, role)

    kind: str = "channels"  # heads | hidden | channels (conv channels, MLP neurons)

    @property
    def size(self) -> int:
        return len(self.classes)

    @property
    def prunable(self) -> list[int]:
        return [c for c in self.classes if c not in self.frozen]

    @property
    def exact(self) -> bool:
        return not self.inexact

    def reasons(self) -> list[str]:
        seen: list[str] = []
        for lst in self.frozen.values():
            for r in lst:
                if r not in seen:
                    seen.append(r)
        return seen


def _kind(tags: set[str]) -> str:
    """What a group is, for reports and per-kind ratios: `heads` when its units are
    blocks cut from a feature axis and batched through attention's MatMuls; `hidden`
    when a norm or reduction runs over it (a transformer's residual stream, ConvNeXt's
    channels-last stream); otherwise `channels` (conv channels, MLP neurons, norm groups).
    """
    if "attention" in tags and "block" in tags:
        return "heads"
    if "normalized" in tags:
        return "hidden"
    return "channels"


class ChannelAnalysis:
    """Runs the rules over a graph; see the module docstring."""

    def __init__(self, model: ir.Model, shapes: dict[str, tuple]):
        self.model = model
        self.graph = model.graph
        name_nodes(self.graph)  # rules, reasons and plans name nodes (load_model did it already)
        self.shapes = shapes
        self.units = UnitTable()
        self.dims = DimTable(self.units)
        self.value_dims: dict[ir.Value, list[int]] = {}
        self.const_dims: dict[tuple[int, int], list[int]] = {}
        self.const_members: list[ConstMember] = []
        self.nodes: list[ir.Node] = list(self.graph)
        self.node_index = {id(n): i for i, n in enumerate(self.nodes)}
        self.opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 1))
        self.groups: list[ChannelGroup] = []
        self.resizable: frozenset[str] = frozenset()
        # What the small integer tensors hold: shape provenance for the rules.
        self.shape_values = ShapeValues(self.shape_of)

    # -- shapes and variables -------------------------------------------------
    def shape_of(self, value: ir.Value | None) -> tuple | None:
        if value is None:
            return None
        arr = None
        if is_const(value):
            if value.const_value is not None:
                return tuple(int(d) for d in value.const_value.shape)
            arr = const_array(value)
            return tuple(arr.shape)
        shp = self.shapes.get(value.name)
        if shp is None and value.shape is not None:
            shp = tuple(d if isinstance(d, int) else None for d in value.shape)
        return shp

    def runtime_dims(self, value: ir.Value) -> list[int] | None:
        dims = self.value_dims.get(value)
        if dims is None:
            shp = self.shape_of(value)
            if shp is None:
                return None
            # A value no rule described (graph input, unsupported producer): fixed.
            dims = [self.dims.fixed(s) for s in shp]
            self.value_dims[value] = dims
        return dims

    def const_use_dims(self, node_i: int, input_i: int, value: ir.Value) -> list[int]:
        key = (node_i, input_i)
        dims = self.const_dims.get(key)
        if dims is None:
            dims = [self.dims.new(int(s)) for s in self.shape_of(value)]
            self.const_dims[key] = dims
        return dims

    # -- the walk --------------------------------------------------------------
    def run(self, ignore: tuple[str, ...] = (), resizable=frozenset()) -> ChannelAnalysis:
        """`resizable`: names of graph inputs and outputs whose static axes may change
        size (a KV cache, or outputs the user allowed); all other interface axes are
        fixed, so whatever they are tied to is frozen."""
        self.resizable = frozenset(resizable)
        for value in self.graph.inputs:
            if value.name in self.resizable:
                self._resizable_input_dims(value)
            self.runtime_dims(value)
        for i, node in enumerate(self.nodes):
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                continue
            ctx = NodeContext(self, node, i)
            rec = record(node)
            if rec is None or rec.analyze is None:
                default_rule(ctx, f"{node.op_type} has no pruning rule")
            else:
                rec.analyze(ctx)
            ctx.finish()
        self._freeze_ignored(ignore)
        for value in self.graph.outputs:
            dims = self.runtime_dims(value)
            if value.name in self.resizable:
                continue
            for axis, v in enumerate(dims or []):
                own = self.dims.get(v)
                if isinstance(own, np.ndarray):
                    self.units.freeze(own, f"graph output '{value.name}' exposes axis {axis}")
                elif own is None:
                    self.dims.set_owner(v, FIXED)
        self._build_groups()
        # Classes are final from here on: remember each axis's (the cost predictor asks
        # for the same few hundred axes thousands of times per search).
        self._classes: dict[int, np.ndarray | None] = {}
        return self

    def _resizable_input_dims(self, value: ir.Value) -> None:
        """Axes the model declares with a fixed size (a cache's heads and head_dim) start
        pending, so they take the owner of whatever they are tied to; symbolic axes
        (batch, sequence) stay fixed."""
        shp = self.shape_of(value)
        declared = list(value.shape) if value.shape is not None else [None] * len(shp or ())
        if shp is None:
            return
        self.value_dims[value] = [
            self.dims.new(s) if isinstance(d, int) and s is not None else self.dims.fixed(s)
            for s, d in zip(shp, declared)
        ]

    def _freeze_ignored(self, names) -> None:
        """Nodes the user asked to leave alone keep every channel they read or write."""
        if not names:
            return
        by_name = {n.name: i for i, n in enumerate(self.nodes)}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            from onnxprune.errors import OnnxPruneError

            raise OnnxPruneError(
                f"--ignore names no node {', '.join(map(repr, unknown))}: "
                "`onnxprune inspect MODEL` lists the node names"
            )
        for name in names:
            i = by_name[name]
            node = self.nodes[i]
            variables = [v for (ni, _), d in self.const_dims.items() if ni == i for v in d]
            for value in node.outputs:
                variables += self.value_dims.get(value, [])
            for v in variables:
                own = self.dims.get(v)
                if isinstance(own, np.ndarray):
                    self.units.freeze(own, f"node '{name}' is ignored by request")

    def _build_groups(self) -> None:
        units = self.units
        # Classes that contain at least one unit born at a weight.
        class_sources: dict[int, set[int]] = {}
        for u, sid in enumerate(units.source):
            if sid >= 0:
                class_sources.setdefault(units.find(u), set()).add(sid)
        # Sources sharing a class are one group (union-find over source ids).
        parent = list(range(len(units.sources)))

        def find(s: int) -> int:
            while parent[s] != s:
                parent[s] = parent[parent[s]]
                s = parent[s]
            return s

        for sids in class_sources.values():
            first, *rest = sorted(sids)
            for s in rest:
                a, b = find(first), find(s)
                if a != b:
                    parent[max(a, b)] = min(a, b)
        by_group: dict[int, list[int]] = {}
        for root in sorted(class_sources):
            by_group.setdefault(find(min(class_sources[root])), []).append(root)
        self.class_group: dict[int, int] = {}
        self.groups = []
        for gi, (sroot, classes) in enumerate(sorted(by_group.items())):
            srcs = sorted({s for c in classes for s in class_sources[c]})
            group = ChannelGroup(
                id=gi,
                classes=classes,
                frozen={c: units.frozen[c] for c in classes if c in units.frozen},
                inexact={c: units.inexact[c] for c in classes if c in units.inexact},
                sources=[units.sources[s] for s in srcs],
                kind=_kind({t for c in classes for t in units.tags.get(c, ())}),
            )
            self.groups.append(group)
            for c in classes:
                self.class_group[c] = gi
        self._collect_members()

    def _collect_members(self) -> None:
        """Record which tensors and axes each group touches (for reports and costs)."""
        seen: set[tuple] = set()

        def add(var: int, kind: str, name: str, axis: int, role: str) -> None:
            own = self.dims.get(var)
            if not isinstance(own, np.ndarray):
                return
            gids = {self.class_group.get(self.units.find(int(u))) for u in own if u >= 0}
            for gid in sorted(g for g in gids if g is not None):
                key = (gid, kind, name, axis)
                if key not in seen:
                    seen.add(key)
                    self.groups[gid].members.append((kind, name, axis, role))

        for value, dims in self.value_dims.items():
            for axis, var in enumerate(dims):
                add(var, "value", value.name, axis, "act")
        for m in self.const_members:
            node = self.nodes[m.node_index]
            add(m.var, "const", node.inputs[m.input_index].name, m.axis, m.role)

    # -- queries used by selection and rewrite ---------------------------------
    def classes_of(self, var: int) -> np.ndarray | None:
        """Class id at each position of an axis (-1 fixed), or None if not owned."""
        cache = getattr(self, "_classes", None)
        if cache is not None and var in cache:
            return cache[var]
        own = self.dims.get(var)
        found = self.units.roots(own) if isinstance(own, np.ndarray) else None
        if cache is not None:
            if found is not None:
                found.flags.writeable = False  # shared: callers must copy to change it
            cache[var] = found
        return found

    def keep_mask(self, var: int, removed: set[int]) -> np.ndarray | None:
        """Positions kept on an axis after removing `removed` classes; None = all kept."""
        if not removed:
            return None
        cls = self.classes_of(var)
        if cls is None:
            return None
        mask = np.array([c < 0 or c not in removed for c in cls.tolist()], dtype=bool)
        return None if mask.all() else mask


class NodeContext:
    """What a rule sees: the node, its inputs' variables, and ways to tie them."""

    def __init__(self, an: ChannelAnalysis, node: ir.Node, index: int):
        self.an = an
        self.node = node
        self.index = index
        self.dims = an.dims
        self.units = an.units
        self.label = node.name
        self.opset = an.opset
        self._outs: dict[int, list[int]] = {}

    # inputs
    def n_inputs(self) -> int:
        return len(self.node.inputs)

    def input(self, i: int) -> ir.Value | None:
        return self.node.inputs[i] if i < len(self.node.inputs) else None

    def is_const(self, i: int) -> bool:
        return is_const(self.input(i))

    def const(self, i: int) -> np.ndarray | None:
        return const_array(self.input(i))

    def shape(self, i: int) -> tuple | None:
        return self.an.shape_of(self.input(i))

    def out_shape(self, j: int = 0) -> tuple | None:
        if j >= len(self.node.outputs):
            return None
        return self.an.shape_of(self.node.outputs[j])

    def in_dims(self, i: int) -> list[int] | None:
        value = self.input(i)
        if value is None:
            return None
        if is_const(value):
            return self.an.const_use_dims(self.index, i, value)
        return self.an.runtime_dims(value)

    def is_weight(self, i: int) -> bool:
        """A constant, or a quantized constant made float by DequantizeLinear (QDQ)."""
        return is_weight(self.input(i))

    def role(self, i: int, axis: int, role: str) -> None:
        """Tag a weight input's axis for importance scoring (and the reports)."""
        if not self.is_weight(i):
            return
        dims = self.in_dims(i)
        self.an.const_members.append(ConstMember(self.index, i, axis, dims[axis], role))

    def attr(self, name: str, default=None):
        a = self.node.attributes.get(name)
        return default if a is None else a.value

    def axis_attr(self, name: str, default: int, rank: int) -> int:
        """An axis attribute, counted from the front."""
        axis = self.attr(name, default)
        return axis + rank if axis < 0 else axis

    def list_arg(self, name: str, i: int):
        """A list given as attribute `name` (older opsets) or as constant input `i`:
        the ints, None when neither is given, or "runtime" when input `i` is computed."""
        value = self.attr(name)
        if value is not None:
            return list(value)
        if i < self.n_inputs() and self.input(i) is not None:
            arr = self.const(i)
            return "runtime" if arr is None else arr.reshape(-1).tolist()
        return None

    def data_dims(self, min_rank: int = 0) -> list[int] | None:
        """The variables of input 0; None (after freezing what the node reads) when its
        rank is unknown or below `min_rank`."""
        dims = self.in_dims(0)
        if dims is None or len(dims) < min_rank:
            default_rule(self, "input rank unknown")
            return None
        return dims

    # shape tensors
    def entries(self, i: int) -> list | None:
        """Where each element of shape-tensor input `i` comes from (`shape_values.py`)."""
        return self.an.shape_values.entries(self.node, i)

    def shape_value(self, j: int):
        """What output `j` holds, element by element, if it is a small integer tensor."""
        return self.an.shape_values.of_value(self.node.outputs[j])

    def shape_readers(self) -> list[tuple[frozenset, str]]:
        """For a Shape/Size node: where the sizes it reads reach a reader no rule checks."""
        return self.an.shape_values.unchecked_reads(self.node)

    # outputs
    def set_out(self, j: int, dims: list[int]) -> None:
        self._outs[j] = list(dims)

    def finish(self) -> None:
        for j, value in enumerate(self.node.outputs):
            if value is None or not value.name:
                continue
            dims = self._outs.get(j)
            if dims is None:
                shp = self.an.shape_of(value)
                dims = None if shp is None else [self.dims.fixed(s) for s in shp]
            if dims is not None:
                self.an.value_dims[value] = dims

    # coupling
    def why(self, text: str = "") -> str:
        return f"{self.node.op_type} '{self.label}'" + (f": {text}" if text else "")

    def tie(self, a: int, b: int, text: str = "") -> int:
        return self.dims.tie(a, b, self.why(text or "couples it to a fixed axis"))

    def fixed(self, size: int | None) -> int:
        return self.dims.fixed(size)

    def derived(self, owner: np.ndarray | None, size: int | None = None) -> int:
        """A new axis whose positions are given units (copied: arrays are never shared)."""
        if owner is None:
            return self.dims.fixed(size)
        return self.dims.new(len(owner), np.array(owner, dtype=np.int64, copy=True))

    def freeze(self, var: int, reason: str) -> None:
        own = self.dims.get(var)
        if isinstance(own, np.ndarray):
            self.units.freeze(own, self.why(reason))
        elif own is None:
            self.dims.set_owner(var, FIXED)

    def freeze_inputs(self, reason: str) -> None:
        for i in range(self.n_inputs()):
            for v in self.in_dims(i) or []:
                if not self.is_const(i):
                    self.freeze(v, reason)

    def inexact(self, var: int, reason: str) -> None:
        own = self.dims.get(var)
        if isinstance(own, np.ndarray):
            self.units.mark_inexact(own, self.why(reason))

    def tag(self, var: int, tag: str) -> None:
        """Say what kind of unit an axis carries (block, attention, normalized)."""
        own = self.dims.get(var)
        if isinstance(own, np.ndarray):
            self.units.tag(own, tag)

    def source(self, i: int, axis: int) -> None:
        """Mark a weight input's axis as creating features (a producer weight). A plan
        names the constant the weight is stored in (a QDQ model's quantized one)."""
        if not self.is_weight(i):
            return
        var = self.in_dims(i)[axis]
        self.dims.make_source(
            var, {"tensor": weight_storage(self.input(i)).name, "axis": axis, "node": self.label}
        )


def analyze_channels(model: ir.Model, shapes: dict[str, tuple], ignore=(), resizable=()) -> ChannelAnalysis:
    return ChannelAnalysis(model, shapes).run(tuple(ignore), frozenset(resizable))
