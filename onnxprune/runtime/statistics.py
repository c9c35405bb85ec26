"""Calibration statistics for recovery, from one ONNX Runtime run over the calibration
data with the values recovery needs as extra outputs:
- at the inputs of the layers that are refit (passes/recovery.py), each unfolded the
  way its layer reads it (a Conv's input into kh·kw patches, padding included; a dense
  layer's rows) and summed into `Moments` (count, Σx, Σxxᵀ in float64);
- around each run of dropped blocks (passes/block_recovery.py): the branch output and
  shortcut of the block before it and the run's last output, summed into `FoldMoments`;
- for sequential recovery, one layer at a time: its input in the pruned model (as
  refit so far) against its input in the original, summed into `CrossMoments`.

What this does not do: keep the activations (only their sums).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import onnx_ir as ir

from onnxprune.passes.block_recovery import Fold, FoldMoments
from onnxprune.passes.block_recovery import accumulate as accumulate_fold
from onnxprune.passes.conv_geometry import conv_geometry, conv_pads
from onnxprune.passes.recovery import MAX_COLUMNS, Consumer, CrossMoments, Moments
from onnxprune.runtime.session import run_tapped, tapped_session


def collect_moments(model: ir.Model, consumers: list[Consumer], batches: Iterable[Mapping[str, np.ndarray]],
                    *, gram: bool = True, folds: list[Fold] = ()) -> tuple[dict[str, Moments], dict[str, FoldMoments]]:
    """Moments of every consumer's input over `batches`, by consumer (node) name
    (without Σxxᵀ when `gram` is False: bias compensation needs only the means), and the
    sums each fold needs, by the first Add of its run."""
    if not consumers and not folds:
        return {}, {}
    names = sorted({c.activation for c in consumers} | {v for f in folds for v in (f.branch, f.shortcut, f.target)})
    session = tapped_session(model, names)
    nodes = {n.name: n for n in model.graph}
    sums: dict[str, Moments] = {}
    fold_sums: dict[str, FoldMoments] = {}
    for feeds in batches:
        arrays = dict(zip(names, run_tapped(session, feeds)))
        for c in consumers:
            rows = unfold(nodes[c.node], arrays[c.activation], c)
            _accumulate(sums, c.node, rows, gram)
        for f in folds:
            accumulate_fold(fold_sums, f, arrays[f.branch], arrays[f.shortcut], arrays[f.target])
    return sums, fold_sums


# Each batch's Σxxᵀ is one float32 GEMM (twice the speed of float64, and no float64 copy
# of the unfolded rows) on rows centred by the batch mean, so that a large offset (a
# bias of 50 on unit variance) does not cancel away float32's digits; the offset terms
# are added back in float64.
GRAM_DTYPE = np.float32


def _accumulate(sums: dict[str, Moments], name: str, rows: np.ndarray, with_gram: bool) -> None:
    rows = rows.astype(GRAM_DTYPE, copy=False)
    squares = (rows * rows).sum(axis=0, dtype=np.float64)
    total = rows.sum(axis=0, dtype=np.float64)
    gram = None
    if with_gram and rows.shape[1] <= MAX_COLUMNS:
        with np.errstate(invalid="ignore", over="ignore"):  # overflowing activations: RecoveryPass skips the layer
            gram = _gram(rows, rows, total, total)
    old = sums.get(name)
    if old is None:
        sums[name] = Moments(len(rows), total, gram, squares)
    else:
        old.n += len(rows)
        old.total += total
        old.squares += squares
        if old.gram is not None:
            old.gram += gram


def _gram(a: np.ndarray, b: np.ndarray, sa: np.ndarray, sb: np.ndarray) -> np.ndarray:
    """Σ a bᵀ over rows in float64 (`sa`, `sb`: the column sums, float64) from a float32
    GEMM on rows centred by their means, the offsets added back in float64."""
    n = len(a)
    ca, cb = (sa / max(n, 1)).astype(GRAM_DTYPE), (sb / max(n, 1)).astype(GRAM_DTYPE)
    ra, rb = sa - n * ca.astype(np.float64), sb - n * cb.astype(np.float64)  # Σ(x - shift), not exactly 0
    ca64, cb64 = ca.astype(np.float64), cb.astype(np.float64)
    return ((a - ca).T @ (b - cb)).astype(np.float64) + np.outer(ca64, rb) + np.outer(ra, cb64) \
        + n * np.outer(ca64, cb64)


def unfold(node: ir.Node, x: np.ndarray, consumer: Consumer) -> np.ndarray:
    """The rows a layer multiplies by its weight: [positions, channels · kernel]."""
    if consumer.op != "Conv":
        return x.reshape(-1, x.shape[-1])
    w_shape = node.inputs[1].const_value.shape if node.inputs[1].const_value is not None else None
    kernel = list(node.attributes.get_ints("kernel_shape", None) or (w_shape[2:] if w_shape else ()))
    spatial = len(kernel)
    strides, dilations = conv_geometry(node, kernel)
    pads = conv_pads(node, x.shape[2:], kernel, strides, dilations)
    padded = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + spatial]) for i in range(spatial)])
    windows = np.lib.stride_tricks.sliding_window_view(
        padded, [(k - 1) * d + 1 for k, d in zip(kernel, dilations)], axis=tuple(range(2, 2 + spatial))
    )
    # windows: [N, C, *out_positions_before_stride, *window]; take strides and dilations.
    index = [slice(None), slice(None)] + [slice(None, None, s) for s in strides]
    index += [slice(None, None, d) for d in dilations]
    windows = windows[tuple(index)]
    c = windows.shape[1]
    out_axes = tuple(range(2, 2 + spatial))
    win_axes = tuple(range(2 + spatial, 2 + 2 * spatial))
    rows = np.transpose(windows, (0, *out_axes, 1, *win_axes))
    return rows.reshape(-1, c * int(np.prod(kernel)))


def collect_cross(pruned: ir.Model, node: ir.Node, orig_node: ir.Node, consumer: Consumer, target: np.ndarray,
                  batches: Iterable[Mapping[str, np.ndarray]], taps: OriginalTaps) -> CrossMoments:
    """Sums for refitting `consumer` (`node` of `pruned`, `orig_node` of the original) to
    the output the original layer (`target` = [W, b] as [out, columns + 1]) gives on the
    same samples: with z = [x, 1] the layer's unfolded input in each model, Σ z_p z_pᵀ and
    Σ z_p z_oᵀ, and Σ y, Σ‖y‖² of y = target · z_o (float64). The original's input comes
    from `taps`."""
    j = next(i for i, v in enumerate(orig_node.inputs) if v is not None and v.name == consumer.activation)
    session = tapped_session(pruned, [node.inputs[j].name])
    sums = None
    w, b = target[:, :-1].astype(GRAM_DTYPE), target[:, -1]
    for k, feeds in enumerate(batches):
        a_p = run_tapped(session, feeds)[0]
        xo = unfold(orig_node, taps.get(k, feeds, consumer.activation), consumer).astype(GRAM_DTYPE, copy=False)
        xp = unfold(node, a_p, consumer).astype(GRAM_DTYPE, copy=False)
        y = (xo @ w.T).astype(np.float64) + b
        part = CrossMoments(len(xo), _with_ones(xp, xp), _with_ones(xp, xo), y.sum(axis=0), float(np.sum(y * y)))
        sums = part if sums is None else sums.add(part)
    return sums


class OriginalTaps:
    """The original model's activations at the refit layers' inputs, batch by batch: run
    once and kept while they fit in `budget` bytes, else recomputed for each layer."""

    def __init__(self, original: ir.Model, names: list[str], budget: int = 1 << 30):
        self.names, self.budget = sorted(set(names)), budget
        self.session = tapped_session(original, self.names)
        self.kept: dict[int, dict[str, np.ndarray]] = {}
        self.used = 0

    def get(self, k: int, feeds: Mapping[str, np.ndarray], name: str) -> np.ndarray:
        if k in self.kept:
            return self.kept[k][name]
        arrays = dict(zip(self.names, run_tapped(self.session, feeds)))
        size = sum(a.nbytes for a in arrays.values())
        if self.used + size <= self.budget:
            self.kept[k] = arrays
            self.used += size
        return arrays[name]


def _with_ones(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Σ [a, 1][b, 1]ᵀ in float64 over the rows of `a` and `b` (see `_gram`)."""
    sa = a.sum(axis=0, dtype=np.float64)
    sb = sa if b is a else b.sum(axis=0, dtype=np.float64)  # Σ z_p z_pᵀ: the same rows twice
    out = np.empty((a.shape[1] + 1, b.shape[1] + 1))
    with np.errstate(invalid="ignore", over="ignore"):  # overflowing activations: the layer is skipped
        out[:-1, :-1] = _gram(a, b, sa, sb)
    out[:-1, -1], out[-1, :-1], out[-1, -1] = sa, sb, len(a)
    return out
