"""The probe model: one copy of a model that evaluates any set of pruning candidates in
one ONNX Runtime session, without a rewrite or a new session per candidate.

`ProbeModel(model, ...)` builds the copy with
- **taps**: extra graph outputs at the representation CKA compares (by default the
  input of the final classifier layer, `default_tap`), or any values the caller names;
- **block gates**: per removable residual block, an input `onnxprune_gate_<id>` of shape
  [N, 1, ...] that multiplies the block's branch f before its Add: `Add(x, f(x)·g)`.
  Gate 0 computes `x`, exactly what `RemoveBlocksPass` leaves;
- **channel masks** (when given a channel analysis): one input `onnxprune_mask` of
  shape [N, T + 1] holding a 0/1 entry per prunable class of the masked groups (and a
  trailing constant 1 for positions that are not masked). Every consumer that contracts
  over a masked axis (a Conv, Gemm, MatMul or fused attention reading it through a
  weight's input axis) gets its input multiplied by the entries of its positions. For an
  exact group, mask 0 computes what physically removing those channels computes.

Candidates share one run by stacking along the batch: K candidates × B samples run as
one batch of K·B, each sample with its candidate's gates and masks. This needs axis 0 of
every gated value to be the batch (true for the CNNs and transformers exported by the
usual tools); `stack=1` runs one candidate per call otherwise.

What this does not do: mask a group whose consumer reads the channel axis as axis 0
(such groups are listed in `unmaskable`), or gate projection blocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from onnxprune.errors import OnnxPruneError
from onnxprune.model_io import graph_inputs, load_model
from onnxprune.passes.blocks import Block, find_blocks
from onnxprune.passes.constants import is_const
from onnxprune.passes.rules import record
from onnxprune.passes.shapes import symbolic_shapes
from onnxprune.runtime.session import default_providers, ort_session

GATE_PREFIX = "onnxprune_gate_"
MASK_INPUT = "onnxprune_mask"


@dataclass(frozen=True)
class Candidate:
    """One candidate: the blocks it removes and, per group id, the classes it removes."""

    blocks: frozenset[int] = frozenset()
    channels: Mapping[int, frozenset[int]] = field(default_factory=dict)


def default_tap(model: ir.Model) -> str:
    """The input of the final classifier layer: walking back from the first graph
    output, the activation input of the first standard op with weight inputs (its
    record's `weights`: Gemm, MatMul, Conv, ConvTranspose) that has a constant weight."""
    start = model.graph.outputs[0]
    seen, frontier = set(), [start]
    while frontier:
        value = frontier.pop(0)
        node = value.producer()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        rec = record(node)
        if rec is not None and rec.weights is not None and rec.domain == "":
            consts = [is_const(v) for v in node.inputs[:2]]
            if any(consts) and not all(consts):
                return node.inputs[consts.index(False)].name
        frontier.extend(v for v in node.inputs if v is not None and not is_const(v))
    raise OnnxPruneError(
        f"no classifier layer found behind output '{start.name}': name the representation with --tap VALUE"
    )


class ProbeModel:
    """See the module docstring. `analysis` (a ChannelAnalysis of `model` as given, e.g.
    from `compiler.pipeline.analyze` on the same file) enables channel masks for the
    groups in `groups` (default: every group with a prunable class)."""

    def __init__(
        self,
        model: ir.Model,
        *,
        taps: Sequence[str] | None = None,
        blocks: Iterable[Block] | None = None,
        analysis=None,
        groups: Iterable[int] | None = None,
        keep_outputs: bool = False,
        providers: list | None = None,
        threads: int = 0,
    ):
        # With an analysis, the probe is built from the very model it analysed (after its
        # shape folding), so node i of the copy is node i of the analysis.
        source = analysis.model if analysis is not None else model
        self.model = load_model(ir.serde.serialize_model(source))
        graph = self.model.graph
        nodes = list(graph)
        self.taps = list(taps) if taps else [default_tap(self.model)]
        values = {v.name: v for n in graph for v in n.outputs if v is not None}
        values.update({v.name: v for v in graph.inputs})
        missing = [t for t in self.taps if t not in values]
        if missing:
            raise OnnxPruneError(f"tap {missing[0]!r} is no value of the model: `onnxprune inspect` lists node outputs")
        self.inputs = [v.name for v in graph_inputs(self.model)]
        ranks = {k: len(v) for k, v in symbolic_shapes(self.model).items()}
        if blocks is None:
            blocks = find_blocks(self.model)
        self.blocks = {b.id: b for b in blocks if b.removable}
        self._gate_ranks: dict[int, int] = {}
        self._gate(ranks)
        self.mask_index: dict[int, dict[int, int]] = {}  # group -> class -> column
        self.unmaskable: dict[int, str] = {}
        self.mask_width = 0
        self._masked_taps: dict[str, ir.Value] = {}
        if analysis is not None:
            self._mask(analysis, groups, ranks, nodes)
        # A tap that a mask multiplies on its way to the classifier is read after the
        # mask, so removed channels read as zeros (which linear CKA ignores, as it
        # would their absence).
        outputs = [self._masked_taps.get(t, values[t]) for t in self.taps]
        if keep_outputs:
            outputs += [v for v in graph.outputs if v.name not in self.taps]
        graph.outputs.clear()
        graph.outputs.extend(outputs)
        self.output_names = [v.name for v in outputs]
        self.session = ort_session(self.model, providers=providers or default_providers(), intra_op_num_threads=threads)

    # -- building -----------------------------------------------------------------
    def _gate(self, ranks: dict[str, int]) -> None:
        graph = self.model.graph
        adds = {n.name: n for n in graph if n.op_type == "Add"}
        for bid, block in self.blocks.items():
            add = adds.get(block.add)
            if add is None:
                raise OnnxPruneError(f"block {bid}: Add '{block.add}' not found in the model")
            k = 1 if add.inputs[0].name == block.entry else 0
            branch = add.inputs[k]
            rank = ranks.get(branch.name) or ranks.get(add.outputs[0].name) or 1
            gate = ir.Value(
                name=f"{GATE_PREFIX}{bid}", type=ir.TensorType(branch.dtype or ir.DataType.FLOAT),
                shape=ir.Shape(["probe_batch"] + [1] * (rank - 1)),
            )
            graph.inputs.append(gate)
            self._gate_ranks[bid] = rank
            mul = ir.node("Mul", [branch, gate], name=f"onnxprune_gate_mul_{bid}")
            mul.outputs[0].name = f"{branch.name}_gated"
            graph.insert_before(add, mul)
            add.replace_input_with(k, mul.outputs[0])

    def _mask(self, an, groups, ranks: dict[str, int], nodes: list[ir.Node]) -> None:
        wanted = {g.id for g in an.groups if g.prunable} if groups is None else set(groups)
        column = 0
        for g in an.groups:
            if g.id in wanted:
                self.mask_index[g.id] = {c: column + i for i, c in enumerate(g.classes)}
                column += len(g.classes)
        self.mask_width = column
        if not column:
            return
        graph = self.model.graph
        mask = ir.Value(name=MASK_INPUT, type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape(["probe_batch", column + 1]))
        graph.inputs.append(mask)
        done: dict[tuple, ir.Value] = {}
        for ni, j, axis, var in _consumers(an):
            classes = an.classes_of(var)
            if classes is None:
                continue  # a fixed axis: nothing to mask
            cols = np.array([self._column(an, c) for c in classes.tolist()], dtype=np.int64)
            if (cols == column).all():
                continue  # no position of this axis is masked
            target = nodes[ni]
            value = target.inputs[j]
            rank = ranks.get(value.name) or len(an.shape_of(an.nodes[ni].inputs[j]) or ())
            axis = axis % rank if rank else axis
            if axis == 0:
                for c in set(classes.tolist()) - {-1}:
                    gid = an.class_group.get(c)
                    if gid in self.mask_index:
                        self.unmaskable[gid] = f"{target.op_type} reads the channels as axis 0"
                continue
            key = (value.name, axis, cols.tobytes())
            masked = done.get(key)
            if masked is None:
                masked = self._masked_value(graph, target, value, mask, cols, axis, rank, len(done))
                done[key] = masked
            target.replace_input_with(j, masked)
            if value.name in self.taps:
                self._masked_taps.setdefault(value.name, masked)
        for gid in self.unmaskable:
            self.mask_index.pop(gid, None)

    def _column(self, an, cls: int) -> int:
        if cls < 0:
            return self.mask_width
        return self.mask_index.get(an.class_group.get(cls), {}).get(cls, self.mask_width)

    @staticmethod
    def _masked_value(graph, before: ir.Node, value, mask, cols, axis, rank, k) -> ir.Value:
        idx = ir.Value(name=f"onnxprune_mask_idx_{k}", const_value=ir.tensor(cols, name=f"onnxprune_mask_idx_{k}"))
        shape = np.array([0] + [1] * (axis - 1) + [len(cols)] + [1] * (rank - 1 - axis), dtype=np.int64)
        shp = ir.Value(name=f"onnxprune_mask_shape_{k}", const_value=ir.tensor(shape, name=f"onnxprune_mask_shape_{k}"))
        graph.register_initializer(idx)
        graph.register_initializer(shp)
        gather = ir.node("Gather", [mask, idx], attributes={"axis": 1}, name=f"onnxprune_mask_gather_{k}")
        reshape = ir.node("Reshape", [gather.outputs[0], shp], name=f"onnxprune_mask_reshape_{k}")
        nodes = [gather, reshape]
        factor = reshape.outputs[0]
        if value.dtype is not None and value.dtype != ir.DataType.FLOAT:
            cast = ir.node("Cast", [factor], attributes={"to": value.dtype}, name=f"onnxprune_mask_cast_{k}")
            nodes.append(cast)
            factor = cast.outputs[0]
        mul = ir.node("Mul", [value, factor], name=f"onnxprune_mask_mul_{k}")
        mul.outputs[0].name = f"{value.name}_masked_{k}"
        nodes.append(mul)
        graph.insert_before(before, nodes)
        return mul.outputs[0]

    # -- running ------------------------------------------------------------------
    def feeds_for(self, feeds: Mapping[str, np.ndarray], candidates: Sequence[Candidate]) -> dict[str, np.ndarray]:
        """The session's feeds for `candidates` stacked along the batch over `feeds`."""
        k = len(candidates)
        batch = len(next(iter(feeds.values())))
        out = {name: np.concatenate([feeds[name]] * k, axis=0) if k > 1 else feeds[name] for name in self.inputs}
        for bid in self.blocks:
            gate = np.ones(k * batch, dtype=np.float32)
            for i, cand in enumerate(candidates):
                if bid in cand.blocks:
                    gate[i * batch:(i + 1) * batch] = 0.0
            out[f"{GATE_PREFIX}{bid}"] = gate.reshape((k * batch,) + (1,) * (self._gate_ranks[bid] - 1))
        if self.mask_width:
            mask = np.ones((k * batch, self.mask_width + 1), dtype=np.float32)
            for i, cand in enumerate(candidates):
                for gid, classes in cand.channels.items():
                    index = self.mask_index.get(gid)
                    if index is None:
                        raise OnnxPruneError(f"group {gid} is not masked in this probe ({self.unmaskable.get(gid, 'not asked for')})")
                    mask[i * batch:(i + 1) * batch, [index[c] for c in classes]] = 0.0
            out[MASK_INPUT] = mask
        return out

    def run(self, feeds: Mapping[str, np.ndarray], candidates: Sequence[Candidate]) -> list[dict[str, np.ndarray]]:
        """Tapped values (and kept outputs) per candidate, for one batch of `feeds`."""
        unknown = [b for c in candidates for b in c.blocks if b not in self.blocks]
        if unknown:
            raise OnnxPruneError(f"block {unknown[0]} is not gated in this probe (not removable, or not given)")
        batch = len(next(iter(feeds.values())))
        arrays = self.session.run(self.output_names, self.feeds_for(feeds, candidates))
        names = self.taps + self.output_names[len(self.taps):]  # tapped values by their own names
        return [{name: a[i * batch:(i + 1) * batch] for name, a in zip(names, arrays)} for i in range(len(candidates))]

    def features(
        self, batches: Iterable[Mapping[str, np.ndarray]], candidates: Sequence[Candidate], *, stack: int = 8,
        tap: str | None = None,
    ) -> list[np.ndarray]:
        """The tapped representation of every candidate over all `batches`, as one
        [n, features] float32 array per candidate (candidates run `stack` at a time)."""
        tap = tap or self.taps[0]
        parts: list[list[np.ndarray]] = [[] for _ in candidates]
        for feeds in batches:
            for start in range(0, len(candidates), max(1, stack)):
                chunk = candidates[start:start + stack]
                for i, result in enumerate(self.run(feeds, chunk)):
                    a = result[tap]
                    parts[start + i].append(a.reshape(len(a), -1))
        return [np.concatenate(p, axis=0) if p else np.zeros((0, 0), np.float32) for p in parts]


def _consumers(an):
    """(node index, input index, axis, variable) for every activation axis a weight's
    input axis is tied to: where the channels of a group are consumed."""
    seen = set()
    for m in an.const_members:
        if m.role != "in":
            continue
        node = an.nodes[m.node_index]
        root = an.dims.find(m.var)
        for j, value in enumerate(node.inputs):
            if value is None or j == m.input_index or is_const(value):
                continue
            for axis, var in enumerate(an.value_dims.get(value, ())):
                if an.dims.find(var) == root and (m.node_index, j, axis) not in seen:
                    seen.add((m.node_index, j, axis))
                    yield m.node_index, j, axis, var
