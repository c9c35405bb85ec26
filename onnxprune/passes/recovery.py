"""Recovery without training: after channels are removed, refit the layers that read them
so that they reproduce, on calibration data, what they computed before.

For a linear consumer (Conv with one group, Gemm, MatMul with a constant weight) whose
input loses channels, with x its input as the consumer sees it (a Conv's input unfolded
into kh·kw patches, padding included), W its weight as [out, columns] and b its bias:

- **least squares** (He et al. 2017, ThiNet; the OBS update): the kept columns and a
  bias are refit to the original output, W', b' = argmin E‖x_K W'ᵀ + b' − (x Wᵀ + b)‖²
  + λ‖W' − W_K‖², from the moments E[x], E[x xᵀ] (float64) of one calibration run. The bias
  absorbs the removed channels' mean contribution, which is also FLAP's compensation.
- **bias** (FLAP): b' = b + W_removed · E[x_removed], the kept weights unchanged; used
  when the input is too wide for its second moment (`MAX_COLUMNS`).
- **sequential** (`refit_cross`, driven by compiler/recover.py): the same least squares
  from the pruned model's own input x_p (earlier layers already refit) to the original
  output, W x_o + b, from the cross moments E[z_p z_pᵀ], E[z_p z_oᵀ].

`linear_consumers` says which layers to refit (from the analysis: where a removed class
is consumed, and the op record's weight layout); `runtime/statistics.py` gathers the
moments; `RecoveryPass` writes the refit weights and biases into the pruned model (a
MatMul without a bias gets an Add). Each refit is reported with the relative error of
the layer's output before (plain removal) and after the refit.

What this does not do: refit grouped or depthwise convs (whole groups go, with their
outputs), quantized weights (DequantizeLinear), fused attention or recurrent ops, or
layers whose channels are removed only at their output (nothing they read changes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from onnxprune.passes.channel_analysis import ChannelAnalysis
from onnxprune.passes.constants import (
    const_array,
    fresh_name,
    is_const,
    new_initializer,
    set_const_input,
)
from onnxprune.passes.name_nodes import unique_name
from onnxprune.passes.probe_graph import consumers
from onnxprune.passes.rules import record

MAX_COLUMNS = 4096  # wider inputs: bias compensation only (their second moment would be too large)
# Ridge, relative to the mean of the kept columns' second moments: enough to solve when
# channels are collinear or dead; on the digits ResNet-56 at -61.5 % MACs, 1e-2 / 1e-3 /
# 1e-5 kept 97.2 / 97.8 / 98.1 % when the ridge pulled towards zero (it now pulls
# towards the original kept weights, which keeps what too few samples cannot determine).
DAMPING = 1e-5


@dataclass
class Consumer:
    """A layer to refit: its name, op, the activation it reads (name), the index of its
    weight input, the weight's output and input axes, which input channels stay, and
    the kernel's spatial size (1 for dense layers)."""

    node: str
    op: str
    activation: str
    weight: int
    out_axis: int
    in_axis: int
    keep: np.ndarray
    kernel: int
    classes: np.ndarray | None = None  # the class of each input channel (-1: not prunable)

    @property
    def columns(self) -> int:
        return len(self.keep) * self.kernel

    def kept_columns(self) -> np.ndarray:
        """Columns of the unfolded input that stay (channel-major, as W's [out, C·k] layout)."""
        return np.repeat(self.keep, self.kernel)


def linear_consumers(an: ChannelAnalysis, removed: set[int]) -> list[Consumer]:
    """The layers whose input loses channels of `removed` and that recovery can refit."""
    found: dict[str, Consumer] = {}
    for ni, j, axis, var in consumers(an):
        node = an.nodes[ni]
        keep = an.keep_mask(var, removed)
        if keep is None or node.name in found:
            continue
        consumer = _consumer(node, j, axis, keep)
        if consumer is not None:
            consumer.classes = an.classes_of(var)
            found[node.name] = consumer
    return list(found.values())


def _consumer(node: ir.Node, j: int, axis: int, keep: np.ndarray) -> Consumer | None:
    rec = record(node)
    slots = rec.weights(node) if rec is not None and rec.weights is not None else {}
    weight = 1 - j if node.op_type in ("Gemm", "MatMul") and j in (0, 1) else 1
    slot = slots.get(weight)
    value = node.inputs[weight] if weight < len(node.inputs) else None
    if slot is None or slot.in_axis is None or not is_const(value) or const_array(value).dtype.kind != "f":
        return None  # not a float constant weight (a QDQ weight, a computed operand)
    w = const_array(value)
    if node.op_type == "Conv":
        attr = node.attributes.get("group")
        if (attr.value if attr is not None else 1) != 1 or axis != 1:
            return None
        kernel = int(np.prod(w.shape[2:]))
    elif node.op_type == "Gemm":
        if any(node.attributes.get_float(k, 1.0) != 1.0 for k in ("alpha", "beta")) or w.ndim != 2:
            return None
        if node.attributes.get_int("transA", 0):
            return None
        kernel = 1
    elif node.op_type == "MatMul":
        if w.ndim != 2 or j != 0:
            return None
        kernel = 1
    else:
        return None
    return Consumer(node.name, node.op_type, node.inputs[j].name, weight, slot.out_axis % w.ndim,
                    slot.in_axis % w.ndim, keep, kernel)


@dataclass
class Moments:
    """Sums over calibration rows x of a consumer's unfolded input: count, Σx, Σxxᵀ
    (None when the input is wider than MAX_COLUMNS, or not asked for) and Σx² per column."""

    n: int
    total: np.ndarray
    gram: np.ndarray | None
    squares: np.ndarray | None = None


@dataclass
class CrossMoments:
    """Sums for sequential recovery over rows z = [x, 1] of a layer's unfolded input in
    the pruned model (p: kept columns only) and in the original (o), and the original
    layer's output y = W x_o + b: count, Σ z_p z_pᵀ, Σ z_p z_oᵀ, Σ y, Σ ‖y‖²."""

    n: int
    pp: np.ndarray
    po: np.ndarray
    y: np.ndarray
    yy: float

    def add(self, other: CrossMoments) -> CrossMoments:
        return CrossMoments(self.n + other.n, self.pp + other.pp, self.po + other.po, self.y + other.y,
                            self.yy + other.yy)


def refit_cross(w: np.ndarray, b: np.ndarray, keep_cols: np.ndarray, m: CrossMoments) -> tuple[np.ndarray, np.ndarray, dict]:
    """Like `refit`, but to the original layer's output on the original's input, from the
    pruned model's own input (earlier layers pruned and refit): W', b' = argmin
    E‖W' x_p + b' − (W x_o + b)‖² + λ‖W' − W_K‖² (SparseGPT / SlimGPT's order)."""
    n = max(m.n, 1)
    pp, po = m.pp / n, m.po / n
    target = np.concatenate([w, b[:, None]], axis=1)  # [out, cols + 1]
    prior = np.concatenate([w[:, keep_cols], b[:, None]], axis=1)  # the plain cut
    kept = int(keep_cols.sum())
    damp = DAMPING * float(np.mean(np.diag(pp)[:kept])) if kept else 0.0
    a = pp.copy()
    a[np.arange(kept), np.arange(kept)] += damp
    cross = po @ target.T  # E[z_p yᵀ]
    rhs = cross + damp * np.append(np.ones(kept), 0.0)[:, None] * prior.T
    try:
        theta = np.linalg.solve(a, rhs).T
    except np.linalg.LinAlgError:
        theta = np.linalg.lstsq(a, rhs, rcond=None)[0].T
    mean_y = m.y / n
    variance = (m.yy / n - float(mean_y @ mean_y)) or 1.0

    def error(t: np.ndarray) -> float:  # E‖t z_p − y‖² / Var(y)
        value = np.sum((t @ pp) * t) - 2 * np.sum(t.T * cross) + m.yy / n
        return max(float(value), 0.0) / variance

    return theta[:, :-1], theta[:, -1], {"refit": "least squares, sequential", "error_before": round(error(prior), 6),
                                         "error_after": round(error(theta), 6)}


def as_matrix(w: np.ndarray, out_axis: int, in_axis: int) -> np.ndarray:
    """A weight as [out, in·kernel] (the unfolded input's column order)."""
    rest = [a for a in range(w.ndim) if a not in (out_axis, in_axis)]
    return np.transpose(w, [out_axis, in_axis, *rest]).reshape(w.shape[out_axis], -1).astype(np.float64)


def from_matrix(m: np.ndarray, like: tuple, out_axis: int, in_axis: int) -> np.ndarray:
    """Inverse of `as_matrix` for a weight of shape `like` (with fewer input channels)."""
    rest = [a for a in range(len(like)) if a not in (out_axis, in_axis)]
    order = [out_axis, in_axis, *rest]
    shape = [like[a] for a in order]
    shape[1] = m.shape[1] // int(np.prod(shape[2:], dtype=np.int64))
    return np.transpose(m.reshape(shape), np.argsort(order))


def refit(w: np.ndarray, b: np.ndarray, keep_cols: np.ndarray, moments: Moments) -> tuple[np.ndarray, np.ndarray, dict]:
    """W' (kept columns) and b' for `w` [out, cols], `b` [out]; and the relative output
    errors of plain removal and of the refit."""
    n = max(moments.n, 1)
    mean = moments.total / n
    if moments.gram is None:
        removed = ~keep_cols
        new_b = b + w[:, removed] @ mean[removed]
        return w[:, keep_cols], new_b, {"refit": "bias", "error_before": None, "error_after": None}
    second = moments.gram / n
    k = keep_cols
    z = np.block([[second, mean[:, None]], [mean[None, :], np.ones((1, 1))]])  # E[z zᵀ], z = [x, 1]
    kz = np.append(k, True)
    a = z[np.ix_(kz, kz)].copy()
    damp = DAMPING * float(np.mean(np.diag(second)[k])) if k.any() else 0.0
    a[np.arange(a.shape[0] - 1), np.arange(a.shape[0] - 1)] += damp
    target = np.concatenate([w, b[:, None]], axis=1)  # y = [W, b] z
    # The ridge pulls towards the original kept weights, not towards zero: directions the
    # calibration data never excites (few samples, dead channels) keep their weights.
    rhs = z[kz, :] @ target.T + damp * np.append(np.ones(int(k.sum())), 0.0)[:, None] * target[:, kz].T
    try:
        theta = np.linalg.solve(a, rhs).T  # [out, kept + 1]
    except np.linalg.LinAlgError:  # every kept column is zero: a least-norm answer still exists
        theta = np.linalg.lstsq(a, rhs, rcond=None)[0].T
    new_w, new_b = theta[:, :-1], theta[:, -1]
    cov = second - np.outer(mean, mean)
    variance = float(np.einsum("oi,ij,oj->", w, cov, w, optimize=True)) or 1.0

    def error(w_kept: np.ndarray, bias: np.ndarray) -> float:
        full = np.zeros_like(target)
        full[:, :-1][:, k] = w_kept
        full[:, -1] = bias
        delta = full - target
        return max(float(np.einsum("oi,ij,oj->", delta, z, delta, optimize=True)), 0.0) / variance

    return new_w, new_b, {"refit": "least squares", "error_before": round(error(w[:, k], b), 6),
                          "error_after": round(error(new_w, new_b), 6)}


class RecoveryPass(ir.passes.InPlacePass):
    """Refit `consumers` of the pruned model from `moments` (by consumer name), reading
    their original weights and biases from `original` (same node names). `out_keep`
    maps a consumer to the keep mask of its weight's output axis (its own outputs may
    be pruned too). `self.records` says what was done, per layer."""

    def __init__(self, consumers: list[Consumer], moments: dict[str, Moments], original: ir.Model,
                 out_keep: dict[str, np.ndarray | None], *, why_not: dict[str, str] | None = None,
                 label: str | None = None):
        super().__init__()
        self.consumers, self.moments, self.original, self.out_keep = consumers, moments, original, out_keep
        self.why_not = dict(why_not or {})  # consumers without moments, and why (recorded, not refit)
        self.label = label  # what the report calls the refit (default: refit's own name)
        self.records: list[dict] = []

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        before = {n.name: n for n in self.original.graph}
        after = {n.name: n for n in model.graph}
        for c in self.consumers:
            node, old = after.get(c.node), before.get(c.node)
            if node is None or old is None:
                continue
            if c.node not in self.moments:
                if c.node in self.why_not:
                    self.records.append({**not_refit(c.node, c.op), "why": self.why_not[c.node]})
                continue
            w0 = const_array(old.inputs[c.weight])
            w = as_matrix(w0, c.out_axis, c.in_axis)
            b = bias_of(old, w.shape[0])
            m = self.moments[c.node]
            if not (np.isfinite(m.total).all() and (m.gram is None or np.isfinite(m.gram).all())):
                self.records.append(not_refit(c.node, c.op))
                continue
            new_w, new_b, info = refit(w, b, c.kept_columns(), m)
            if not (np.isfinite(new_w).all() and np.isfinite(new_b).all()):
                self.records.append(not_refit(c.node, c.op))  # the plain cut stays
                continue
            added = write_refit(model.graph, node, c, w0, new_w, new_b, self.out_keep.get(c.node))
            if self.label:
                info["refit"] = self.label
            self.records.append({"node": c.node, "op": c.op, **info, "params_added": added})
        return ir.passes.PassResult(model, modified=bool(self.records))


def write_refit(graph: ir.Graph, node: ir.Node, c: Consumer, w0: np.ndarray, new_w: np.ndarray, new_b: np.ndarray,
                rows: np.ndarray | None) -> int:
    """Write a refit [out, kept columns] weight and bias into `node` of the pruned graph
    (`w0`: the original weight; `rows`: the output rows the pruned layer keeps, or
    None); the parameters added (a new bias)."""
    if rows is not None:
        new_w, new_b = new_w[rows], new_b[rows]
    shape = list(w0.shape)
    shape[c.out_axis] = new_w.shape[0]
    set_const_input(graph, node, c.weight, from_matrix(new_w, tuple(shape), c.out_axis, c.in_axis).astype(w0.dtype))
    return len(new_b) if set_bias(graph, node, new_b.astype(w0.dtype)) else 0


def bias_of(node: ir.Node, rows: int) -> np.ndarray:
    """A Conv or Gemm node's bias as float64 [rows] (zeros without one, and for MatMul)."""
    value = node.inputs[2] if node.op_type in ("Conv", "Gemm") and len(node.inputs) > 2 else None
    if value is None:
        return np.zeros(rows)
    return np.broadcast_to(np.asarray(const_array(value), dtype=np.float64).reshape(-1), (rows,)).copy()


def not_refit(node: str, op: str) -> dict:
    return {"node": node, "op": op, "refit": None, "error_before": None, "error_after": None, "params_added": 0,
            "why": "the calibration activations overflow (not finite): the plain cut stays"}


def set_bias(graph: ir.Graph, node: ir.Node, bias: np.ndarray) -> bool:
    """Conv and Gemm take a bias input (`bias` replaces it; added when missing). A MatMul
    has none: `bias` is added to the constant of the Add that follows it (a framework's
    bias, or one an earlier recovery made), or a new Add carries it. True when the model
    gains parameters."""
    if node.op_type in ("Conv", "Gemm"):
        if len(node.inputs) > 2 and node.inputs[2] is not None and is_const(node.inputs[2]):
            old = const_array(node.inputs[2])
            set_const_input(graph, node, 2, bias.reshape(old.shape) if old.size == bias.size else bias)
            return False
        value = new_initializer(graph, f"{node.name}_recovered_bias", bias)
        if len(node.inputs) < 3:
            node.resize_inputs(3)
        node.replace_input_with(2, value)
        return True
    out = node.outputs[0]
    readers = list(out.uses())
    follower = _following_bias(out, len(bias))
    if follower is not None:
        add, i = follower
        old = const_array(add.inputs[i])
        set_const_input(graph, add, i, (old.astype(np.float64) + bias.reshape((1,) * (old.ndim - 1) + (-1,))).astype(old.dtype))
        return False
    taken = {n.name for n in graph}
    add = ir.node("Add", [out, new_initializer(graph, f"{node.name}_recovered_bias", bias)],
                  name=unique_name(f"{node.name}_recovered_bias_add", taken))
    result = add.outputs[0]
    result.name = fresh_name(graph, f"{out.name}_recovered")
    result.type, result.shape = out.type, out.shape
    graph.insert_after(node, add)
    for use in readers:
        use.node.replace_input_with(use.idx, result)
    if out.is_graph_output():  # the interface keeps its name: the Add's output takes it
        index = list(graph.outputs).index(out)
        name, out.name = out.name, fresh_name(graph, f"{out.name}_before_bias")
        result.name = name
        graph.outputs[index] = result
    return True


def _following_bias(out: ir.Value, size: int) -> tuple[ir.Node, int] | None:
    """The Add (and its constant's input index) that adds a per-feature constant of
    `size` to `out`, when it is `out`'s only reader."""
    uses = list(out.uses())
    if len(uses) != 1 or out.is_graph_output():
        return None
    add = uses[0].node
    if add.op_type != "Add" or add.domain not in ("", "ai.onnx") or len(add.inputs) != 2:
        return None
    i = 1 - uses[0].idx
    arr = const_array(add.inputs[i]) if is_const(add.inputs[i]) else None
    if arr is None or arr.dtype.kind != "f" or arr.ndim == 0 or arr.shape[-1] != size or arr.size != size:
        return None
    return add, i
