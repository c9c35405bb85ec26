"""The driver: one flow for every strategy.

    working copy → strategy.search (analysis, blocks, probe: whatever it asks of the
    Workspace) → Decision (channels to remove, blocks to drop, iterations)
    → rewrite (channels, then blocks) → verify → cost after → report

A strategy only searches: it returns a `Decision` and never rewrites, verifies or
reports. Two exceptions are carried in the Decision itself: a strategy that had to make
the model physical as it went (fine-tuning between iterations) returns that model and
the plan in the original model's indices; one that measured latency returns its
baseline, and the driver measures the emitted model the same way.

What this does not do: save anything (callers save `PruneResult.model` with
`model_io.save_model`, atomically), or judge accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import onnx_ir as ir

from onnxprune.compiler.plan import PruningPlan
from onnxprune.compiler.recover import plan_recovery, recovery_section
from onnxprune.compiler.report import (
    FORMAT,
    blocks_section,
    cost_section,
    groups_section,
)
from onnxprune.compiler.verify import Expected, take_kept, verify_model
from onnxprune.compiler.workspace import Options, Workspace
from onnxprune.model_io import declared_input_shapes, make_sample_inputs, release_mapped
from onnxprune.passes.constants import is_const
from onnxprune.passes.cost import model_cost
from onnxprune.passes.reference import ExactReferencePass
from onnxprune.passes.shapes import static_shapes
from onnxprune.passes.slice_channels import interface_changes
from onnxprune.runtime.session import measure_latency


@dataclass
class PruneResult:
    model: ir.Model
    plan: PruningPlan
    report: dict


@dataclass
class Decision:
    """What a strategy chose. `removed` are channel classes of the workspace's analysis,
    `dropped` block ids of its blocks (in the order the plan lists them)."""

    removed: set[int] = field(default_factory=set)
    dropped: list[int] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    plan_meta: dict = field(default_factory=dict)
    iterations: list[dict] = field(default_factory=list)
    predicted: dict | None = None  # default: Workspace.predict
    criteria: dict[int, str] = field(default_factory=dict)  # criterion used per group id
    chosen: dict | None = None
    # Run the channel rewrite (cleanup, shape annotation) even when nothing is removed.
    slice_channels: bool = False
    model: ir.Model | None = None  # already physical (then `plan` is required)
    plan: PruningPlan | None = None
    latency_before: float | None = None
    latency_feeds: Mapping[str, np.ndarray] | None = None
    target_reached: bool | None = None  # None: the method has no target
    stopped_because: str | None = None  # when the target was not reached: why, and what to do
    # The strategy recovered as it went (the recovered arbiter): the report's "layers" and
    # "blocks_not_compensated" of its recovery; the driver then recovers nothing more.
    recovery: dict | None = None


class Strategy(Protocol):
    method: str

    def search(self, ws: Workspace) -> Decision: ...


def run(strategy: Strategy, source, options: Options | None = None, *, verify: bool = True) -> PruneResult:
    """Prune `source` (a path, ModelProto or onnx_ir.Model, never modified) as `strategy`
    decides; see the module docstring."""
    ws = Workspace(source, options)
    decision = strategy.search(ws)
    release_mapped(ws.model)  # what the search read of the weights need not stay mapped
    before = ws.cost_before()
    predicted = decision.predicted or ws.predict(decision.removed, decision.dropped)
    plan = decision.plan or _plan(ws, decision)
    removed, dropped = decision.removed, decision.dropped
    if decision.model is not None:
        # The search made the model itself (recovered arbiter, fine-tuning): what it
        # removed is in its plan, which names the original's weights and Adds.
        removed = plan.to_removed(ws.analysis, strict=False) if ws.analysed and plan.channels else set()
        adds = {b["add"] for b in plan.blocks}
        dropped = [b.id for b in ws.blocks if b.add in adds] if adds else []
    groups = groups_section(ws.analysis, removed, decision.criteria) if ws.analysed else None
    blocks = blocks_section(ws.blocks, dropped) if ws.blocks_found or dropped else None
    changes = interface_changes(ws.analysis, decision.removed) if ws.analysed and decision.model is None else []
    interface = [{k: v for k, v in c.items() if k != "value"} for c in changes]
    recovery, not_recovered = plan_recovery(ws, decision.removed, decision.dropped, decision.model is not None)
    expected, unchecked = _expected(ws, decision, interface) if verify else (None, "")
    if decision.recovery:
        expected, unchecked = None, "values not compared: recovery refit layers every iteration"
    feeds = ws.options.sample_feeds
    if feeds is None and interface:
        feeds = make_sample_inputs(ws.original, ws.shapes_in)
    pruned_feeds = None if feeds is None else take_kept(feeds, interface, "input")

    def check(model: ir.Model, expected: Expected | None, unchecked: str):
        return verify_model(
            ws.original, model, ws.shapes_in, resized={c["name"] for c in interface},
            feeds=feeds, pruned_feeds=pruned_feeds, expected=expected, unchecked_values=unchecked,
            original_path=ws.source_path,
        )

    plain_checks = []
    if decision.model is None:
        ws.rewrite(decision.removed, decision.dropped, slice_channels=decision.slice_channels)
        if recovery is not None:
            if verify and expected is not None:
                # The rewrite is checked before recovery changes the weights: the plain
                # cut's values must equal what removal means (raises if not).
                plain_checks = [f"plain cut, before recovery: {c}" for c in check(ws.model, expected, unchecked).checks
                                if c.startswith("values")]
            expected = None
            unchecked = "values after recovery not compared (refit by least squares; each layer's error is in the report)"
            added = recovery.apply(ws.model)  # biases given to layers that had none
            predicted = {**predicted, "params": predicted["params"] + added}
        model = ws.model
    else:
        model = decision.model
    verification = None
    if verify:
        result = check(model, expected, unchecked)
        verification = {"ok": result.ok, "message": result.message, "checks": plain_checks + result.checks}
    after = model_cost(model, static_shapes(model, declared_input_shapes(model, ws.shapes_in), pruned_feeds))
    report = {
        "format": FORMAT,
        "method": strategy.method,
        "settings": decision.settings,
        "input_shapes": {k: list(v) for k, v in ws.shapes_in.items()},
        "groups": groups,
        "blocks": blocks,
        "iterations": decision.iterations,
        "chosen": decision.chosen,
        "cost": cost_section(before, predicted, after),
        "latency": _latency(decision, model),
        "interface": interface,
        "verification": verification,
        "target_reached": decision.target_reached,
        "stopped_because": decision.stopped_because,
        "recovery": recovery_section(ws, recovery, not_recovered, decision.recovery),
    }
    return PruneResult(model=model, plan=plan, report=report)


def _expected(ws: Workspace, decision: Decision, interface: list[dict]) -> tuple[Expected | None, str]:
    """What the pruned model's outputs must equal, when that is known in advance; else
    why its values are not compared. Built before the rewrite changes the working model."""
    if decision.model is not None:
        return None, "values not compared: the model was changed by the fine-tuning hook"
    if not decision.removed and not decision.dropped:
        return Expected("the original's outputs (nothing was removed)"), ""
    if decision.removed:
        an = ws.analysis
        inexact = {an.class_group[c] for c in decision.removed if not an.groups[an.class_group[c]].exact}
        if inexact:
            return None, (
                f"values not compared: {len(inexact)} pruned group(s) are inexact (a norm, softmax or reduction "
                "over their channels changes the numbers on purpose)"
            )
    dropped = set(decision.dropped)
    reference = ws.model.clone(deep_copy=True)  # shares the weights; the pass copies what it zeroes
    ExactReferencePass(ws.analysis if ws.analysed else None, decision.removed,
                       [b for b in ws.blocks if b.id in dropped] if dropped else [])(reference)
    what = "the original with the removed channels' consumers zeroed and dropped blocks' branches times 0 (exact)"
    if _quantizes_activations(ws.model):
        # A sum over fewer channels rounds differently in float, and a quantized
        # activation can then land one step away: exact up to quantization steps.
        return Expected(what + ", up to quantization steps", reference, interface, rtol=QUANTIZED_RTOL), ""
    return Expected(what, reference, interface), ""


QUANTIZED_RTOL = 0.05


def _quantizes_activations(model: ir.Model) -> bool:
    return any(
        n.op_type in ("QuantizeLinear", "DynamicQuantizeLinear") and not is_const(n.inputs[0]) for n in model.graph
    )


def _plan(ws: Workspace, decision: Decision) -> PruningPlan:
    if ws.analysed:
        plan = PruningPlan.from_removed(ws.analysis, decision.removed, **decision.plan_meta)
    else:
        plan = PruningPlan(meta=dict(decision.plan_meta))
    by_id = {b.id: b for b in ws.blocks} if decision.dropped else {}
    plan.blocks = [PruningPlan.block_entry(by_id[b]) for b in decision.dropped]
    return plan


def _latency(decision: Decision, model: ir.Model) -> dict | None:
    if decision.latency_before is None:
        return None
    after = measure_latency(model, decision.latency_feeds)
    return {"before_s": decision.latency_before, "after_s": after, "speedup": round(decision.latency_before / after, 4)}
