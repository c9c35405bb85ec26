"""Importance of each channel class: magnitude of every weight slice that goes with it.

Criteria:
- ``l1`` / ``l2``: for every constant member of the group (producer weights, consumer
  weights, per-channel parameters; not BatchNorm running statistics) the L1 norm or
  L2 norm of the slice at each class, divided by that member's mean so that a large
  tensor does not drown a small one, then summed over members.
- ``bn``: |gamma| of the BatchNorm scales in the group (Network Slimming). Groups with
  no BatchNorm fall back to ``l1``; `scores_for` reports which criterion each used.

It does not look at activations or data; the data-driven criteria live in runtime/.
"""

from __future__ import annotations

import numpy as np

from onnxprune.passes.channel_analysis import ChannelAnalysis
from onnxprune.passes.constants import weight_array

CRITERIA = ("l1", "l2", "bn")
MAGNITUDE_ROLES = ("out", "in", "param", "bn_scale")


def _member_scores(an: ChannelAnalysis, member, criterion: str) -> dict[int, float]:
    cls = an.classes_of(member.var)
    if cls is None:
        return {}
    value = an.nodes[member.node_index].inputs[member.input_index]
    arr = np.asarray(weight_array(value), dtype=np.float64)  # a QDQ weight dequantized
    rows = np.moveaxis(arr, member.axis, 0).reshape(len(cls), -1)
    per_pos = np.abs(rows).sum(axis=1) if criterion in ("l1", "bn") else (rows**2).sum(axis=1)
    live = cls >= 0
    roots, inverse = np.unique(cls[live], return_inverse=True)
    sums = np.bincount(inverse, weights=per_pos[live], minlength=len(roots))
    if criterion == "l2":
        sums = np.sqrt(sums)
    mean = sums.mean() if len(sums) else 0.0
    if mean > 0:
        sums = sums / mean
    return dict(zip(roots.tolist(), sums.tolist()))


def class_scores(an: ChannelAnalysis, criterion: str = "l1") -> tuple[dict[int, float], dict[int, str]]:
    """(score per class, criterion used per group id). Higher = more important."""
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; choose one of {', '.join(CRITERIA)}")
    seen = set()
    members = []
    for m in an.const_members:
        key = (m.node_index, m.input_index, m.axis)
        if key not in seen:
            seen.add(key)
            members.append(m)
    magnitude: dict[int, float] = {}
    bn: dict[int, float] = {}
    base = "l2" if criterion == "l2" else "l1"
    for m in members:
        if m.role in MAGNITUDE_ROLES:
            for c, s in _member_scores(an, m, base).items():
                magnitude[c] = magnitude.get(c, 0.0) + s
        if criterion == "bn" and m.role == "bn_scale":
            for c, s in _member_scores(an, m, "bn").items():
                bn[c] = bn.get(c, 0.0) + s
    scores: dict[int, float] = {}
    used: dict[int, str] = {}
    for g in an.groups:
        use_bn = criterion == "bn" and all(c in bn for c in g.classes)
        used[g.id] = "bn" if use_bn else base
        for c in g.classes:
            scores[c] = (bn if use_bn else magnitude).get(c, 0.0)
    return scores, used
