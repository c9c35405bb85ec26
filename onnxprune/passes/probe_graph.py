"""ProbeGraphPass: turn a copy of a model into the probe's graph, so that one ONNX
Runtime session evaluates any set of pruning candidates (`runtime/probe.py` runs it).

It adds
- **taps**: graph outputs at the representation CKA compares (by default the input of
  the classifier, or the model's outputs where there is none: `default_taps`), or any
  values the caller names;
- **block gates**: per removable residual block, an input `onnxprune_gate_<id>` of shape
  [N, 1, ...] that multiplies the block's branch f before its Add: `Add(x, f(x)·g)`.
  Gate 0 computes `x`, exactly what `RemoveBlocksPass` leaves;
- **channel masks** (when given a channel analysis of this very graph): one input
  `onnxprune_mask` of shape [N, T + 1] holding a 0/1 entry per prunable class of the
  masked groups (and a trailing constant 1 for positions that are not masked). Every
  consumer that contracts over a masked axis (a Conv, Gemm, MatMul or fused attention
  reading it through a weight's input axis) gets its input multiplied by the entries of
  its positions. For an exact group, mask 0 computes what physically removing those
  channels computes.

What this does not do: mask a group whose consumer reads the channel axis as axis 0
(such groups are listed in `unmaskable`), gate projection blocks, or run anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from onnxprune.errors import OnnxPruneError
from onnxprune.model_io import graph_inputs
from onnxprune.passes.blocks import Block, find_blocks
from onnxprune.passes.constants import is_weight
from onnxprune.passes.shapes import symbolic_info

GATE_PREFIX = "onnxprune_gate_"
MASK_INPUT = "onnxprune_mask"
MASK_MUL_PREFIX = "onnxprune_mask_mul_"
MASK_IDX_PREFIX = "onnxprune_mask_idx_"


# Ops between a classifier layer and the graph output (activations, reshapes, casts,
# QDQ wrapping, a bias or scale by a constant): the classifier is still "last".
_HEAD_OPS = frozenset({
    "Softmax", "LogSoftmax", "Sigmoid", "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast",
    "QuantizeLinear", "DequantizeLinear", "Add", "Sub", "Mul", "Div",
})


def default_taps(model: ir.Model) -> list[str]:
    """The representation CKA compares by default: the input of the classifier where
    there is one — the last dense layer (Gemm or MatMul with a weight operand) behind the
    first graph output, reached only through activations, reshapes, casts and
    per-output constants — otherwise every floating-point graph output (an embedding
    model's output is its representation; a detector's boxes and scores are what it
    computes)."""
    value = model.graph.outputs[0]
    for _ in range(64):
        node = value.producer()
        if node is None:
            break
        data = [v for v in node.inputs if v is not None and not is_weight(v)]
        if node.op_type in ("Gemm", "MatMul") and node.domain in ("", "ai.onnx") and len(data) == 1:
            weighted = [v for v in node.inputs[:2] if is_weight(v)]
            if weighted:
                return [data[0].name]
        if node.op_type not in _HEAD_OPS or node.domain not in ("", "ai.onnx") or len(data) != 1:
            break
        value = data[0]
    outputs = [v.name for v in model.graph.outputs if v.dtype is None or v.dtype.is_floating_point()]
    if not outputs:
        raise OnnxPruneError("the model has no floating-point output to compare: name the representation with --tap VALUE")
    return outputs


@dataclass
class ProbeGraph:
    """What `ProbeGraphPass` built: the taps, gated blocks (with the rank of each gate),
    masked groups (group -> class -> mask column), the output names and the inputs a
    caller feeds."""

    taps: list[str]
    blocks: dict[int, Block]
    inputs: list[str]
    gate_ranks: dict[int, int] = field(default_factory=dict)
    gate_dtypes: dict[int, object] = field(default_factory=dict)  # numpy dtype of each gate (the branch's)
    mask_index: dict[int, dict[int, int]] = field(default_factory=dict)
    unmaskable: dict[int, str] = field(default_factory=dict)
    mask_width: int = 0
    output_names: list[str] = field(default_factory=list)
    # Candidates may share a run, stacked along axis 0, when every input's axis 0 is a
    # symbolic batch: "yes" when shape inference carries it to axis 0 of every gated,
    # masked or tapped value, "maybe" when it cannot tell (the probe then tries), "no"
    # (a fixed batch): one candidate runs at a time, its gates and masks fed as one row
    # that broadcasts over every axis.
    stackable: str = "no"


class ProbeGraphPass(ir.passes.InPlacePass):
    """See the module docstring. `analysis` must be a ChannelAnalysis of the graph the
    pass runs on (node i of the graph is node i of the analysis); `groups` limits the
    masked groups (default: every group with a prunable class). After the call,
    `self.probe` describes what was built."""

    def __init__(self, *, taps: Sequence[str] | None = None, blocks: Iterable[Block] | None = None, analysis=None,
                 groups: Iterable[int] | None = None, keep_outputs: bool = False):
        super().__init__()
        self.taps, self.given_blocks, self.analysis = taps, blocks, analysis
        self.groups, self.keep_outputs = groups, keep_outputs
        self.probe: ProbeGraph | None = None

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        nodes = list(graph)
        taps = list(self.taps) if self.taps else default_taps(model)
        values = {v.name: v for n in graph for v in n.outputs if v is not None}
        values.update({v.name: v for v in graph.inputs})
        missing = [t for t in taps if t not in values]
        if missing:
            raise OnnxPruneError(f"tap {missing[0]!r} is no value of the model: `onnxprune inspect` lists node outputs")
        blocks = self.given_blocks if self.given_blocks is not None else find_blocks(model)
        self.model = model
        self.probe = ProbeGraph(taps=taps, blocks={b.id: b for b in blocks if b.removable},
                                inputs=[v.name for v in graph_inputs(model)])
        dims, self._dtypes = symbolic_info(model)
        ranks = {k: len(v) for k, v in dims.items()}
        self._batched: list[str] = []  # values a per-sample gate or mask multiplies
        self._gate(ranks)
        self._masked_taps: dict[str, ir.Value] = {}
        if self.analysis is not None:
            self._mask(self.analysis, self.groups, ranks, nodes)
        # A tap that a mask multiplies on its way to the classifier is read after the
        # mask, so removed channels read as zeros (which linear CKA ignores, as it
        # would their absence).
        outputs = [self._masked_taps.get(t, values[t]) for t in taps]
        if self.keep_outputs:
            outputs += [v for v in graph.outputs if v.name not in taps]
        kept = [v.name for v in outputs[len(taps):]]  # names from before the surgery, as in `dims`
        self.probe.stackable = _batch_major(dims, self.probe.inputs, [*self._batched, *taps, *kept])
        graph.outputs.clear()
        graph.outputs.extend(outputs)
        self.probe.output_names = [v.name for v in outputs]
        return ir.passes.PassResult(model, modified=True)

    # -- building -----------------------------------------------------------------
    def _gate(self, ranks: dict[str, int]) -> None:
        graph = self.model.graph
        adds = {n.name: n for n in graph if n.op_type == "Add"}
        for bid, block in self.probe.blocks.items():
            add = adds.get(block.add)
            if add is None:
                raise OnnxPruneError(f"block {bid}: Add '{block.add}' not found in the model")
            k = 1 if add.inputs[0].name == block.entry else 0
            branch = add.inputs[k]
            self._batched.append(branch.name)
            rank = ranks.get(branch.name) or ranks.get(add.outputs[0].name) or 1
            gate = ir.Value(
                name=f"{GATE_PREFIX}{bid}", type=ir.TensorType(branch.dtype or ir.DataType.FLOAT),
                shape=ir.Shape(["probe_batch"] + [1] * (rank - 1)),
            )
            graph.inputs.append(gate)
            self.probe.gate_ranks[bid] = rank
            self.probe.gate_dtypes[bid] = (branch.dtype or ir.DataType.FLOAT).numpy()
            mul = ir.node("Mul", [branch, gate], name=f"onnxprune_gate_mul_{bid}")
            mul.outputs[0].name = f"{branch.name}_gated"
            graph.insert_before(add, mul)
            add.replace_input_with(k, mul.outputs[0])

    def _mask(self, an, groups, ranks: dict[str, int], nodes: list[ir.Node]) -> None:
        wanted = {g.id for g in an.groups if g.prunable} if groups is None else set(groups)
        column = 0
        for g in an.groups:
            if g.id in wanted:
                self.probe.mask_index[g.id] = {c: column + i for i, c in enumerate(g.classes)}
                column += len(g.classes)
        self.probe.mask_width = column
        if not column:
            return
        graph = self.model.graph
        mask = ir.Value(name=MASK_INPUT, type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape(["probe_batch", column + 1]))
        graph.inputs.append(mask)
        done: dict[tuple, ir.Value] = {}
        for ni, j, axis, var in consumers(an):
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
            dtype = value.dtype or self._dtypes.get(value.name)
            why = None
            if axis == 0:
                why = f"{target.op_type} reads the channels as axis 0"
            elif dtype is not None and not dtype.is_floating_point():
                # A quantized value's 0 is its zero point, not a product by 0.
                why = f"{target.op_type} reads them quantized ({dtype.name})"
            if why is not None:
                for c in set(classes.tolist()) - {-1}:
                    gid = an.class_group.get(c)
                    if gid in self.probe.mask_index:
                        self.probe.unmaskable[gid] = why
                continue
            self._batched.append(value.name)
            key = (value.name, axis, cols.tobytes())
            masked = done.get(key)
            if masked is None:
                masked = self._masked_value(graph, target, value, mask, cols, axis, rank, len(done))
                done[key] = masked
            target.replace_input_with(j, masked)
            if value.name in self.probe.taps:
                self._masked_taps.setdefault(value.name, masked)
        for gid in self.probe.unmaskable:
            self.probe.mask_index.pop(gid, None)

    def _column(self, an, cls: int) -> int:
        if cls < 0:
            return self.probe.mask_width
        return self.probe.mask_index.get(an.class_group.get(cls), {}).get(cls, self.probe.mask_width)

    @staticmethod
    def _masked_value(graph, before: ir.Node, value, mask, cols, axis, rank, k) -> ir.Value:
        idx = ir.Value(name=f"{MASK_IDX_PREFIX}{k}", const_value=ir.tensor(cols, name=f"{MASK_IDX_PREFIX}{k}"))
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
        mul = ir.node("Mul", [value, factor], name=f"{MASK_MUL_PREFIX}{k}")
        mul.outputs[0].name = f"{value.name}_masked_{k}"
        nodes.append(mul)
        graph.insert_before(before, nodes)
        return mul.outputs[0]

def _batch_major(dims: dict, inputs: list[str], values: list[str]) -> str:
    """"yes" when axis 0 of every input is a symbolic batch that ONNX shape inference
    carries to axis 0 of every one of `values`; "maybe" when it cannot tell; "no" when
    an input's axis 0 is not symbolic (ONNX Runtime accepts no other size there)."""
    batch = {dims.get(name, (None,))[0] for name in inputs}
    if not batch or not all(isinstance(b, str) for b in batch):
        return "no"
    return "yes" if all(dims.get(name) and dims[name][0] in batch for name in values) else "maybe"


def consumers(an):
    """(node index, input index, axis, variable) for every activation axis a weight's
    input axis is tied to: where the channels of a group are consumed."""
    seen = set()
    for m in an.const_members:
        if m.role != "in":
            continue
        node = an.nodes[m.node_index]
        root = an.dims.find(m.var)
        for j, value in enumerate(node.inputs):
            if value is None or j == m.input_index or is_weight(value):
                continue
            for axis, var in enumerate(an.value_dims.get(value, ())):
                if an.dims.find(var) == root and (m.node_index, j, axis) not in seen:
                    seen.add((m.node_index, j, axis))
                    yield m.node_index, j, axis, var
