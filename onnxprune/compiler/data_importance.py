"""Importance criteria that use the calibration data, group-level like the magnitude ones
(compiler/importance.py): a channel class is scored where it is consumed, by every
linear layer that reads it (passes/recovery.py's `linear_consumers`), from one ONNX
Runtime run (runtime/statistics.py). For a layer with weight W [out, columns] reading x
(a Conv's input unfolded into patches: a channel owns its kernel's columns):

- ``wanda`` (Wanda, Sun et al. 2023; its structured form as in Wanda-sp / FLAP's
  baseline): Σ over the channel's columns of ‖W[:, j]‖₁ · √E[x_j²];
- ``fluctuation`` (FLAP, An et al. 2024): Σ of Var(x_j) · ‖W[:, j]‖₂² — what the layer's
  output loses beyond the mean, which bias compensation restores;
- ``obs`` (Optimal Brain Surgeon, block form; the reconstruction-error criterion of
  SlimGPT / ZipLM): tr(W_S (H⁻¹)_SS⁻¹ W_Sᵀ) with H the covariance of x (ridge as in
  recovery), S the channel's columns: the output error left after removing the channel
  and refitting the rest by least squares, i.e. what recovery cannot repair. Layers
  wider than `recovery.MAX_COLUMNS` use ``fluctuation``.

Each layer's scores are divided by their mean (a wide layer does not drown a narrow
one) and summed over the layers that read the class. A group that no linear layer
reads falls back to ``l1``; the report's per-group criterion says which was used.

What this does not do: look at nonlinear consumers (a channel read only by an
attention's softmax is scored by magnitude), or update the scores as channels go
(one-shot, like the magnitude criteria).
"""

from __future__ import annotations

import numpy as np

from onnxprune.compiler.importance import class_scores
from onnxprune.compiler.workspace import Workspace
from onnxprune.errors import OnnxPruneError
from onnxprune.passes.constants import const_array
from onnxprune.passes.recovery import (
    DAMPING,
    Consumer,
    Moments,
    as_matrix,
    linear_consumers,
)
from onnxprune.runtime.statistics import collect_moments

DATA_CRITERIA = ("wanda", "fluctuation", "obs")


def data_scores(ws: Workspace, criterion: str) -> tuple[dict[int, float], dict[int, str]]:
    """(score per class, criterion used per group id). Higher = more important."""
    if criterion not in DATA_CRITERIA:
        raise OnnxPruneError(f"unknown data criterion {criterion!r}; choose one of {', '.join(DATA_CRITERIA)}")
    calib = ws.options.calibration
    if calib is None:
        raise OnnxPruneError(f"criterion {criterion} needs calibration data: pass --calib DATA")
    an = ws.analysis
    prunable = {c for g in an.groups for c in g.prunable}
    consumers = linear_consumers(an, prunable)
    moments, _ = collect_moments(ws.model, consumers, calib.batches(), gram=criterion == "obs")
    nodes = {n.name: n for n in ws.model.graph}
    totals: dict[int, float] = {}
    for c in consumers:
        if c.node not in moments or c.classes is None:
            continue
        w = as_matrix(const_array(nodes[c.node].inputs[c.weight]), c.out_axis, c.in_axis)
        per_channel = _channel_scores(criterion, w, moments[c.node], c)
        if per_channel is None:
            continue
        mean = per_channel.mean()
        if mean > 0:
            per_channel = per_channel / mean
        for cls, value in zip(c.classes.tolist(), per_channel.tolist()):
            if cls >= 0:
                totals[cls] = totals.get(cls, 0.0) + value
    fallback, _ = class_scores(an, "l1")
    scores: dict[int, float] = {}
    used: dict[int, str] = {}
    for g in an.groups:
        scored = all(c in totals for c in g.classes)
        used[g.id] = criterion if scored else "l1"
        for c in g.classes:
            scores[c] = totals[c] if scored else fallback.get(c, 0.0)
    return scores, used


def _channel_scores(criterion: str, w: np.ndarray, m: Moments, c: Consumer) -> np.ndarray | None:
    """One score per input channel of the layer (its kernel's columns together)."""
    n = max(m.n, 1)
    if not (np.isfinite(m.total).all() and np.isfinite(m.squares).all()):
        return None
    mean, second = m.total / n, m.squares / n
    if criterion == "obs" and m.gram is not None and np.isfinite(m.gram).all():
        return _obs(w, m.gram / n - np.outer(mean, mean), c.kernel)
    if criterion == "wanda":
        per_column = np.abs(w).sum(axis=0) * np.sqrt(np.maximum(second, 0.0))
    else:  # fluctuation (also obs on a layer too wide for its covariance)
        per_column = np.maximum(second - mean * mean, 0.0) * (w * w).sum(axis=0)
    return per_column.reshape(-1, c.kernel).sum(axis=1)


def _obs(w: np.ndarray, cov: np.ndarray, kernel: int) -> np.ndarray:
    """tr(W_S (H⁻¹)_SS⁻¹ W_Sᵀ) per channel S (its `kernel` consecutive columns)."""
    h = cov.copy()
    damp = DAMPING * float(np.mean(np.diag(h))) or 1e-12
    h[np.diag_indices_from(h)] += damp
    inv = np.linalg.pinv(h, hermitian=True)
    channels = w.shape[1] // kernel
    out = np.empty(channels)
    for k in range(channels):
        s = slice(k * kernel, (k + 1) * kernel)
        ws = w[:, s]
        block = np.linalg.pinv(inv[s, s], hermitian=True)
        out[k] = float(np.einsum("oi,ij,oj->", ws, block, ws, optimize=True))
    return out
