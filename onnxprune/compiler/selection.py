"""Choose which channel classes to remove, given scores.

Per group (default): each group loses floor(ratio × size) of its classes, the least
important first, never a frozen one. Global (`global_ranking=True`): one ranking of
all prunable classes (each score divided by its group's mean, so groups with more
members are not favoured) removes ratio × the total. Both keep at least one class
per group, round the kept count up to a multiple of `round_to`, and finally make sure
no tensor axis loses every position (a Split piece or Slice that would become empty).

It does not decide *how much* to prune per group beyond the ratio; strategies that
search (layers, everything-at-once) call it with their own ratios.
"""

from __future__ import annotations

import math

import numpy as np

from onnxprune.passes.channel_analysis import ChannelAnalysis

KINDS = ("heads", "hidden", "channels")


def _keep_count(size: int, n_remove: int, round_to: int) -> int:
    keep = max(1, size - n_remove)
    if round_to > 1:
        keep = min(size, math.ceil(keep / round_to) * round_to)
    return keep


def select_removed(
    an: ChannelAnalysis,
    scores: dict[int, float],
    ratio: float,
    *,
    global_ranking: bool = False,
    round_to: int = 1,
    kind_ratios: dict[str, float] | None = None,
) -> set[int]:
    """`kind_ratios` overrides `ratio` for groups of a kind (heads, hidden, channels):
    e.g. {"heads": 0.5} with ratio 0 prunes half the heads and nothing else. With
    global ranking, each kind is ranked on its own (a head and a neuron do not compare)."""
    ratios = {kind: ratio for kind in KINDS} | dict(kind_ratios or {})
    for kind, r in ratios.items():
        if kind not in KINDS:
            raise ValueError(f"unknown group kind {kind!r}; kinds are {', '.join(KINDS)}")
        if not 0.0 <= r < 1.0:
            raise ValueError(f"ratio for {kind} must be in [0, 1), got {r}")
    round_to = max(1, int(round_to))
    removed: set[int] = set()
    groups = [g for g in an.groups if g.prunable]
    if global_ranking:
        for kind in KINDS:
            _select_global(
                [g for g in groups if g.kind == kind], scores, ratios[kind], round_to, removed
            )
    else:
        for g in groups:
            keep = _keep_count(g.size, int(ratios[g.kind] * g.size), round_to)
            order = sorted(g.prunable, key=lambda c: (scores[c], c))
            removed.update(order[: max(0, g.size - keep)])
    for var in emptied_axes(an, removed):  # e.g. a whole Split piece ranked lowest
        present = set(an.classes_of(var).tolist())
        if present <= removed:
            removed.discard(max(present, key=lambda c: (scores.get(c, 0.0), c)))
    if round_to > 1:  # restoring may have broken the rounding: round up again
        for g in groups:
            gone = sorted((c for c in g.classes if c in removed), key=lambda c: -scores[c])
            kept = g.size - len(gone)
            target = min(g.size, math.ceil(kept / round_to) * round_to)
            for c in gone[: target - kept]:
                removed.discard(c)
    return removed


def _select_global(groups, scores, ratio: float, round_to: int, removed: set[int]) -> None:
    pool = []
    for g in groups:
        mean = np.mean([scores[c] for c in g.classes]) or 1.0
        pool.extend((scores[c] / mean, g.id, c) for c in g.prunable)
    pool.sort()
    budget = int(ratio * sum(g.size for g in groups))
    left = {g.id: g.size for g in groups}
    for _, gid, c in pool:
        if budget <= 0:
            break
        if left[gid] > 1:
            removed.add(c)
            left[gid] -= 1
            budget -= 1
    for g in groups:  # round each group's kept count up, restoring the best
        gone = sorted((c for c in g.classes if c in removed), key=lambda c: -scores[c])
        keep = _keep_count(g.size, len(gone), round_to)
        for c in gone[: max(0, keep - (g.size - len(gone)))]:
            removed.discard(c)


def emptied_axes(an: ChannelAnalysis, removed: set[int]) -> list[int]:
    """Variables of tensor axes that would lose every position (never allowed: a
    tensor with a zero-sized axis is not a pruned model)."""
    if not removed:
        return []
    variables = {an.dims.find(v) for dims in an.value_dims.values() for v in dims}
    variables |= {an.dims.find(v) for dims in an.const_dims.values() for v in dims}
    out = []
    for var in sorted(variables):
        cls = an.classes_of(var)
        if cls is None or len(cls) == 0 or (cls < 0).any():
            continue
        if set(cls.tolist()) <= removed:
            out.append(var)
    return out
