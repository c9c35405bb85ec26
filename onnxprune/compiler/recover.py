"""The driver's recovery step: what to refit after a decision, the one calibration run
that gathers its statistics (on the model before the rewrite), and applying it after.

- Removed channels: the layers that read them are refit (passes/recovery.py: least
  squares, or bias compensation with recover="bias"). With recover="sequential" they
  are refit one at a time in graph order, each from the pruned model's own input as
  refit so far (one calibration run of both models per layer: slower, and errors do not
  accumulate the way one-pass fits let them).
- Dropped blocks: each run of them gets a linear compensation folded into the block
  before it (passes/block_recovery.py), with least squares (not with recover="bias").

The statistics come from the calibration data, or with recover="synthetic" (data-free,
the CLI's default without --calib) from synthesized inputs (runtime/calibration.py
`synthetic_calibration`), or with recover="batchnorm" (data-free, no run at all) from the
BatchNorm running statistics the model carries (passes/batchnorm_statistics.py: bias
compensation of the layers whose input a BatchNorm, optionally through a Relu, makes).

The report's "recovery" section says what was asked, what ran, why nothing ran, and
each refit layer or fold with its relative output error before (the plain cut) and
after; runs of blocks that could not be compensated are listed with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from onnxprune.compiler.workspace import Workspace
from onnxprune.passes.batchnorm_statistics import batchnorm_moments
from onnxprune.passes.block_recovery import BlockFoldPass, block_folds
from onnxprune.passes.constants import const_array
from onnxprune.passes.recovery import (
    Consumer,
    RecoveryPass,
    as_matrix,
    bias_of,
    linear_consumers,
    not_refit,
    refit_cross,
    write_refit,
)
from onnxprune.runtime.calibration import CalibrationData, synthetic_calibration
from onnxprune.runtime.statistics import OriginalTaps, collect_cross, collect_moments

MODES = ("auto", "ls", "bias", "synthetic", "batchnorm", "sequential", "none")


@dataclass
class Sequential:
    """Refit `consumers` one at a time in the pruned model's graph order, each to the
    original layer's output from the pruned model's own input (earlier layers already
    pruned and refit): SparseGPT / SlimGPT's order. `records` as RecoveryPass's."""

    consumers: list[Consumer]
    original: ir.Model
    calib: CalibrationData
    out_keep: dict
    records: list[dict] = field(default_factory=list)

    def __call__(self, model: ir.Model) -> None:
        order = {n.name: i for i, n in enumerate(model.graph)}
        before = {n.name: n for n in self.original.graph}
        after = {n.name: n for n in model.graph}
        taps = OriginalTaps(self.original, [c.activation for c in self.consumers])
        for c in sorted(self.consumers, key=lambda c: order.get(c.node, -1)):
            node, old = after.get(c.node), before.get(c.node)
            if node is None or old is None:
                continue
            w0 = const_array(old.inputs[c.weight])
            w = as_matrix(w0, c.out_axis, c.in_axis)
            b = bias_of(old, w.shape[0])
            m = collect_cross(model, node, old, c, np.concatenate([w, b[:, None]], axis=1), self.calib.batches(), taps)
            new_w, new_b, info = (None, None, None) if not np.isfinite(m.pp).all() or not np.isfinite(m.po).all() \
                else refit_cross(w, b, c.kept_columns(), m)
            if new_w is None or not (np.isfinite(new_w).all() and np.isfinite(new_b).all()):
                self.records.append(not_refit(c.node, c.op))  # the plain cut stays
                continue
            added = write_refit(model.graph, node, c, w0, new_w, new_b, self.out_keep.get(c.node))
            self.records.append({"node": c.node, "op": c.op, **info, "params_added": added})


@dataclass
class Recovery:
    channels: RecoveryPass | Sequential | None
    blocks: BlockFoldPass | None
    skipped: list[dict] = field(default_factory=list)
    samples: int | None = 0  # calibration samples the statistics came from (None: no data)
    data: str = "calibration"  # or "synthesized" inputs, or "batchnorm statistics" (data-free)

    def apply(self, model: ir.Model) -> int:
        """Refit `model` (the pruned one) in place; the parameters added (new biases)."""
        for p in (self.channels, self.blocks):
            if p is not None:
                p(model)
        return sum(r["params_added"] for r in self.records)

    @property
    def records(self) -> list[dict]:
        return [r for p in (self.channels, self.blocks) if p is not None for r in p.records]


def plan_recovery(ws: Workspace, removed: set[int], dropped: list[int], produced_model: bool) -> tuple[Recovery | None, str | None]:
    """The recovery of a decision, its statistics gathered now; or None and why not."""
    mode, calib = ws.options.recover, ws.options.calibration
    if mode == "none":
        return None, "off (recover='none')"
    if produced_model:
        return None, "the strategy produced the model itself (fine-tuning hook, or it recovered every iteration)"
    if not removed and not dropped:
        return None, "nothing removed"
    if mode == "batchnorm":
        return _batchnorm_recovery(ws, removed, dropped)
    if mode == "synthetic":  # data-free: least squares on synthesized inputs
        calib = synthetic_calibration(ws.original, ws.shapes_in)
    if calib is None:
        return None, "no calibration data (pass --calib DATA, or --recover synthetic for a data-free refit)"
    targets = linear_consumers(ws.analysis, removed) if removed else []
    folds, skipped = block_folds(ws.model, ws.blocks, dropped) if dropped and mode != "bias" else ([], [])
    if not targets and not folds:
        why = "; ".join(f"{', '.join(s['blocks'])}: {s['why']}" for s in skipped)
        return None, why or "no layer that reads a removed channel has a float Conv/Gemm/MatMul weight to refit"
    out_keep = _out_keep(ws, removed, [(c.node, c.weight, c.out_axis) for c in targets]) if removed else {}
    if removed:
        fold_keep = _out_keep(ws, removed, [(f.into, f.weight, f.out_axis) for f in folds])
        for f in folds:
            f.keep = fold_keep.get(f.into)
    sequential = mode == "sequential"
    moments, fold_moments = collect_moments(ws.model, [] if sequential else targets, calib.batches(),
                                            gram=mode != "bias", folds=folds)
    if sequential:
        channels = Sequential(targets, ws.original, calib, out_keep) if targets else None
    else:
        channels = RecoveryPass(targets, moments, ws.original, out_keep) if targets else None
    blocks = BlockFoldPass(folds, fold_moments) if folds else None
    data = "synthesized" if calib.source == "synthesized inputs" else "calibration"
    return Recovery(channels, blocks, skipped, calib.n, data), None


def _batchnorm_recovery(ws: Workspace, removed: set[int], dropped: list[int]) -> tuple[Recovery | None, str | None]:
    """Bias compensation from the BatchNorm statistics (no data, no run); dropped blocks
    cannot be compensated without data."""
    targets = linear_consumers(ws.analysis, removed) if removed else []
    by_id = {b.id: b for b in ws.blocks}
    skipped = [{"blocks": [by_id[b].add for b in dropped],
                "why": "a dropped block's compensation is fitted on data (--calib DATA or --recover synthetic)"}] \
        if dropped else []
    if not targets:
        why = skipped[0]["why"] if skipped and not removed else \
            "no layer that reads a removed channel has a float Conv/Gemm/MatMul weight to refit"
        return None, why
    moments, why = batchnorm_moments(ws.model, targets, ws.analysis.shapes)
    out_keep = _out_keep(ws, removed, [(c.node, c.weight, c.out_axis) for c in targets])
    channels = RecoveryPass(targets, moments, ws.original, out_keep, why_not=why, label="bias, batchnorm statistics")
    return Recovery(channels, None, skipped, None, "batchnorm statistics"), None


def _out_keep(ws: Workspace, removed: set[int], layers: list[tuple[str, int, int]]) -> dict:
    """For each (node, weight input, output axis): the keep mask of that axis, or None."""
    an = ws.analysis
    index = {n.name: i for i, n in enumerate(an.nodes)}
    out = {}
    for node, weight, axis in layers:
        dims = an.const_dims.get((index[node], weight)) if node in index else None
        out[node] = None if dims is None else an.keep_mask(dims[axis], removed)
    return out


def recovery_section(ws: Workspace, recovery: Recovery | None, not_recovered: str | None,
                     by_strategy: dict | None = None) -> dict:
    """The report's "recovery" (see the module docstring); `by_strategy`: the "layers"
    and "blocks_not_compensated" of a strategy that recovered as it went."""
    calib = ws.options.calibration
    samples = recovery.samples if recovery is not None else None if calib is None else calib.n
    records = by_strategy["layers"] if by_strategy is not None else [] if recovery is None else recovery.records
    skipped = by_strategy["blocks_not_compensated"] if by_strategy is not None else [] if recovery is None else recovery.skipped
    kinds = []
    for r in records:
        if r["refit"] is not None and r["refit"] not in kinds:
            kinds.append(r["refit"])
    return {
        "requested": ws.options.recover,
        "ran": ", ".join(kinds) or None,
        "why_not": None if kinds else not_recovered or next((r["why"] for r in records if r.get("why")), None),
        "calibration_samples": samples,
        "data": None if not records else recovery.data if recovery is not None else "calibration",
        "layers": records,
        "blocks_not_compensated": skipped,
    }
