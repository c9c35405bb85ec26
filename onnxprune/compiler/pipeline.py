"""The compiler driver for channel pruning.

    load → shapes → channel groups → scores → selection (or a given plan)
         → predicted cost → slice channels → cleanup → shape inference
         → verify (checker + ONNX Runtime against the original) → cost after

`prune` never modifies what it is given: it works on its own copy and returns the
pruned `ir.Model` with the plan and a JSON-ready report. Writing the file is the
caller's (or the CLI's) job, through `save_model`, which is atomic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass

from onnxprune.compiler.importance import class_scores
from onnxprune.compiler.plan import PruningPlan
from onnxprune.compiler.predict import Predictor, group_costs
from onnxprune.compiler.selection import select_removed
from onnxprune.compiler.verify import verify_model
from onnxprune.errors import OnnxPruneError
from onnxprune.model_io import declared_input_shapes, load_model, resolve_input_shapes
from onnxprune.passes.channel_analysis import ChannelAnalysis, analyze_channels
from onnxprune.passes.cost import model_cost
from onnxprune.passes.fold_shapes import FoldShapeComputationsPass
from onnxprune.passes.interface import resizable_io
from onnxprune.passes.shapes import InferValueShapesPass, static_shapes, symbolic_shapes
from onnxprune.passes.slice_channels import SliceChannelsPass, interface_changes


@dataclass
class PruneResult:
    model: ir.Model
    plan: PruningPlan
    report: dict


def _working_copy(source) -> ir.Model:
    """A model of our own to change. From a path it loads lazily (external data stays
    memory-mapped); an `ir.Model` given by the caller is never modified."""
    if isinstance(source, (str, os.PathLike, onnx.ModelProto)):
        return load_model(source)
    if isinstance(source, ir.Model):
        return load_model(ir.serde.serialize_model(source))
    raise OnnxPruneError(f"expected a path, onnx.ModelProto or onnx_ir.Model, got {type(source).__name__}")


def analyze(
    model: ir.Model, input_shapes=None, ignore=(), resize_io=(), resize_cache: bool = True, feeds=None
) -> tuple[ChannelAnalysis, dict, dict]:
    """Channel analysis of a loaded model: (analysis, input shapes, all static shapes).

    Folds shape arithmetic on static dims into constants first (the model is changed:
    callers pass their working copy). Interface values that may shrink: the KV cache
    (unless `resize_cache` is False) and the names in `resize_io`. `feeds` are inputs
    for measuring shapes inference cannot give (default: random)."""
    resizable = resizable_io(model, resize_io, cache=resize_cache)
    FoldShapeComputationsPass(symbolic_shapes(model))(model)
    shapes_in = resolve_input_shapes(model, input_shapes)
    if feeds is not None and not input_shapes:
        shapes_in = {k: tuple(np.shape(v)) for k, v in feeds.items()}
    shapes = static_shapes(model, shapes_in, feeds)
    return analyze_channels(model, shapes, ignore, resizable), shapes_in, shapes


def prune(
    source,
    *,
    ratio: float = 0.5,
    criterion: str = "l1",
    global_ranking: bool = False,
    round_to: int = 1,
    ignore=(),
    input_shapes=None,
    plan: PruningPlan | None = None,
    verify: bool = True,
    kind_ratios: dict[str, float] | None = None,
    resize_io=(),
    resize_cache: bool = True,
    sample_feeds: dict | None = None,
) -> PruneResult:
    """Prune channel groups of a model; see the module docstring for the stages.

    `resize_io` names graph inputs/outputs allowed to shrink (e.g. a hidden-state
    output); a KV cache shrinks with its heads unless `resize_cache` is False. The
    report's "interface" lists every changed input/output and the indices kept.
    `sample_feeds` (input name -> array) replaces the random inputs used to measure
    shapes and to verify, for models whose inputs must agree with each other (sequence
    lengths, cache lengths)."""
    original = source if isinstance(source, ir.Model) else load_model(source)
    model = _working_copy(source)
    if plan is not None and not resize_io:
        # A plan made with resized outputs needs them resizable again to apply.
        resize_io = tuple(plan.meta.get("resize_io", ()))
    an, shapes_in, shapes = analyze(model, input_shapes, ignore, resize_io, resize_cache, sample_feeds)
    before = model_cost(model, shapes)
    scores, used = class_scores(an, criterion)
    if plan is not None:
        removed = plan.to_removed(an)
    else:
        removed = select_removed(
            an, scores, ratio, global_ranking=global_ranking, round_to=round_to, kind_ratios=kind_ratios
        )
    predictor = Predictor(an, removed)
    predicted = {"macs": predictor.total_macs(), "params": predictor.total_params()}
    settings = {
        "ratio": ratio, "criterion": criterion, "global": global_ranking,
        "round_to": round_to, "ignore": list(ignore), "kind_ratios": dict(kind_ratios or {}),
        "resize_io": list(resize_io), "resize_cache": resize_cache,
    }
    new_plan = PruningPlan.from_removed(an, removed, **settings)
    group_rows = _group_rows(an, removed, used)
    interface = [{k: v for k, v in c.items() if k != "value"} for c in interface_changes(an, removed)]
    pruned_feeds = None if sample_feeds is None else take_kept(sample_feeds, interface, "input")
    rewrite = ir.passes.Sequential(
        SliceChannelsPass(an, removed), RemoveUnusedNodesPass(), InferValueShapesPass()
    )
    rewrite(model)
    verification = None
    if verify:
        result = verify_model(
            original, model, shapes_in, resized={c["name"] for c in interface},
            feeds=sample_feeds, pruned_feeds=pruned_feeds,
        )
        verification = {"ok": result.ok, "message": result.message}
    after = model_cost(model, static_shapes(model, declared_input_shapes(model, shapes_in), pruned_feeds))
    report = {
        "settings": settings,
        "input_shapes": {k: list(v) for k, v in shapes_in.items()},
        "groups": {
            "total": len(an.groups),
            "prunable": sum(1 for g in an.groups if g.prunable),
            "channels_removed": len(removed),
            "detail": group_rows,
        },
        "cost": {
            "before": {"macs": before.total_macs, "params": before.total_params},
            "predicted": predicted,
            "after": {"macs": after.total_macs, "params": after.total_params},
            "macs_reduction": _frac(before.total_macs, after.total_macs),
            "params_reduction": _frac(before.total_params, after.total_params),
        },
        "interface": interface,
        "verification": verification,
    }
    return PruneResult(model=model, plan=new_plan, report=report)


def take_kept(arrays: dict, interface: list[dict], direction: str) -> dict:
    """Arrays for the original interface cut to the pruned one (e.g. a KV cache the
    caller holds), using the kept indices the report lists per changed axis."""
    out = dict(arrays)
    for change in interface:
        if change["direction"] == direction and change["name"] in out:
            for axis, kept in change["kept"].items():
                out[change["name"]] = np.take(out[change["name"]], kept, axis=int(axis))
    return out


def _frac(before: int, after: int) -> float:
    return 0.0 if before == 0 else round(1.0 - after / before, 6)


def _group_rows(an: ChannelAnalysis, removed: set[int], used: dict[int, str]) -> list[dict]:
    rows = []
    for g in an.groups:
        gone = sum(1 for c in g.classes if c in removed)
        rows.append(
            {
                "id": g.id,
                "kind": g.kind,
                "source": g.sources[0]["tensor"] if g.sources else None,
                "size": g.size,
                "prunable": len(g.prunable),
                "removed": gone,
                "criterion": used.get(g.id),
                "exact": g.exact,
            }
        )
    return rows


def inspect(source, *, input_shapes=None, resize_io=(), resize_cache: bool = True) -> dict:
    """What is prunable, what is frozen and why, and what it costs (JSON-ready)."""
    model = _working_copy(source)
    an, shapes_in, shapes = analyze(model, input_shapes, (), resize_io, resize_cache)
    cost = model_cost(model, shapes)
    per_group = group_costs(an)
    groups = []
    for g in an.groups:
        groups.append(
            {
                "id": g.id,
                "kind": g.kind,
                "size": g.size,
                "prunable": len(g.prunable),
                "exact": g.exact,
                "sources": [f"{s['tensor']}[axis {s['axis']}]" for s in g.sources],
                "members": [
                    {"kind": k, "tensor": name, "axis": axis, "role": role}
                    for k, name, axis, role in g.members
                ],
                "frozen_reasons": g.reasons(),
                "inexact_reasons": sorted({r for lst in g.inexact.values() for r in lst}),
                **per_group.get(g.id, {"macs_per_channel": 0, "params_per_channel": 0}),
            }
        )
    nodes = [
        {"name": n.name, "op_type": row.op_type, "macs": row.macs, "params": row.params}
        for n, row in zip(an.nodes, cost.rows)
    ]
    return {
        "input_shapes": {k: list(v) for k, v in shapes_in.items()},
        "total": {"macs": cost.total_macs, "params": cost.total_params, "nodes": len(an.nodes)},
        "groups": groups,
        "nodes": nodes,
    }
