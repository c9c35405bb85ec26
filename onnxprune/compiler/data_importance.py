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
attention's softmax is scored by magnitude; ``kl`` excepted), update the scores as
channels go (one-shot, like the magnitude criteria), or score a model whose outputs are
not logits by anything more apt than their softmax (a regression or embedding output).
"""

from __future__ import annotations

import numpy as np

from onnxprune.compiler.importance import class_scores
from onnxprune.compiler.progress import Progress
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
from onnxprune.runtime.probe import Candidate, ProbeModel
from onnxprune.runtime.statistics import collect_moments

DATA_CRITERIA = ("wanda", "fluctuation", "obs", "kl")
KL_STACK = 8  # candidates per probe run (each a copy of the calibration batch)


def data_scores(ws: Workspace, criterion: str) -> tuple[dict[int, float], dict[int, str]]:
    """(score per class, criterion used per group id). Higher = more important."""
    if criterion not in DATA_CRITERIA:
        raise OnnxPruneError(f"unknown data criterion {criterion!r}; choose one of {', '.join(DATA_CRITERIA)}")
    calib = ws.options.calibration
    if calib is None:
        raise OnnxPruneError(f"criterion {criterion} needs calibration data: pass --calib DATA")
    if criterion == "kl":
        return kl_scores(ws)
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


def kl_scores(ws: Workspace) -> tuple[dict[int, float], dict[int, str]]:
    """KL of the output when each class alone is removed (see the module docstring)."""
    an = ws.analysis
    outputs = [v.name for v in an.model.graph.outputs if v.dtype is None or v.dtype.is_floating_point()]
    if not outputs:
        raise OnnxPruneError("criterion kl needs a floating-point output (logits) to compare")
    probe = ProbeModel(an.model, taps=outputs, analysis=an)
    candidates = [(g.id, c) for g in an.groups if g.id in probe.mask_index for c in g.prunable]
    totals = np.zeros(len(candidates))
    rows = 0
    calib = ws.options.calibration
    chunks = -(-len(candidates) // KL_STACK)
    progress = Progress(chunks * -(-calib.n // (calib.fixed_batch or calib.batch_size)))
    for feeds in calib.batches():
        reference = [_log_softmax(a) for a in probe.run(feeds, [Candidate()])[0].values()]
        rows += len(next(iter(feeds.values())))
        for start in range(0, len(candidates), KL_STACK):
            chunk = candidates[start:start + KL_STACK]
            runs = probe.run(feeds, [Candidate(channels={gid: frozenset({c})}) for gid, c in chunk])
            for i, result in enumerate(runs):
                totals[start + i] += sum(_kl(ref, _log_softmax(a)) for ref, a in zip(reference, result.values()))
            progress.update(progress.step + 1, f"kl: removing each of {len(candidates)} channels, {rows} samples")
    progress.close()
    scored = {c: float(t) / max(rows, 1) for (_, c), t in zip(candidates, totals)}
    fallback, _ = class_scores(an, "l1")
    scores: dict[int, float] = {}
    used: dict[int, str] = {}
    for g in an.groups:
        masked = g.id in probe.mask_index
        used[g.id] = "kl" if masked else "l1"
        for c in g.classes:
            scores[c] = scored.get(c, 0.0) if masked else fallback.get(c, 0.0)
    return scores, used


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64).reshape(len(logits), -1, logits.shape[-1] if logits.ndim > 1 else 1)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _kl(log_p: np.ndarray, log_q: np.ndarray) -> float:
    """Σ over samples of KL(p ‖ q), averaged over each sample's positions."""
    per_row = (np.exp(log_p) * (log_p - log_q)).sum(axis=-1)  # [samples, positions]
    return float(np.maximum(per_row, 0.0).mean(axis=1).sum())
