"""The library's entry points: `prune` (channels by a weight criterion, or a saved plan),
`inspect` (what is prunable, what is frozen and why, what it costs), and re-exports of
the pieces callers combine with them. Every method runs through one driver
(`compiler/driver.py`): `layers.prune_layers` and `everything.prune_everything` are the
CKA-guided ones.

`prune` never modifies what it is given: it works on its own copy and returns the
pruned `ir.Model` with the plan and a JSON-ready report. Writing the file is the
caller's (or the CLI's) job, through `save_model`, which is atomic.
"""

from __future__ import annotations

from onnxprune.compiler.channels import ChannelsStrategy, PlanStrategy
from onnxprune.compiler.driver import PruneResult, run
from onnxprune.compiler.plan import PruningPlan
from onnxprune.compiler.recover import MODES
from onnxprune.compiler.verify import take_kept
from onnxprune.compiler.workspace import Options, Workspace, analyze
from onnxprune.passes.cost import model_cost
from onnxprune.passes.predict import group_costs

__all__ = ["PruneResult", "analyze", "describe", "inspect", "prune", "take_kept"]


def prune(
    source,
    *,
    ratio: float = 0.5,
    criterion: str = "auto",
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
    calibration=None,
    recover: str = "auto",
) -> PruneResult:
    """Prune channel groups of a model by `criterion` and `ratio` (or apply `plan`: its
    channels, then its blocks). `criterion` "auto" is ``fluctuation`` with `calibration`,
    ``l1`` without (compiler/channels.py says why).

    `resize_io` names graph inputs/outputs allowed to shrink (e.g. a hidden-state
    output); a KV cache shrinks with its heads unless `resize_cache` is False. The
    report's "interface" lists every changed input/output and the indices kept.
    `sample_feeds` (input name -> array) replaces the random inputs used to measure
    shapes and to verify, for models whose inputs must agree with each other (sequence
    lengths, cache lengths).

    `calibration` (runtime.calibration.CalibrationData) lets recovery refit the layers that
    read removed channels (`recover`: "auto"/"ls" least squares, "bias", "none"; see
    passes/recovery.py); "synthetic" refits by least squares on synthesized inputs
    without calibration data (data-free; the CLI's default without --calib, while the
    library's "auto" without calibration keeps the plain cut); "batchnorm" moves the
    removed channels' means, read off the model's BatchNorm statistics, into the bias
    (data-free, no run; passes/batchnorm_statistics.py); "sequential" refits the
    layers one at a time from the pruned model's own inputs (slower, more accurate at
    high ratios). The report's "recovery" says what ran."""
    if recover not in MODES:
        raise ValueError(f"recover must be one of {', '.join(MODES)}, got {recover!r}")
    options = Options(
        input_shapes=input_shapes, ignore=tuple(ignore), resize_io=tuple(resize_io), resize_cache=resize_cache,
        sample_feeds=sample_feeds, calibration=calibration, recover=recover,
    )
    if plan is not None:
        strategy = PlanStrategy(plan)
    else:
        strategy = ChannelsStrategy(ratio, criterion, global_ranking, round_to, kind_ratios)
    return run(strategy, source, options, verify=verify)


def inspect(source, *, input_shapes=None, resize_io=(), resize_cache: bool = True) -> dict:
    """What is prunable, what is frozen and why, and what it costs (JSON-ready)."""
    return describe(Workspace(source, Options(input_shapes=input_shapes, resize_io=tuple(resize_io),
                                              resize_cache=resize_cache)))


def describe(ws: Workspace) -> dict:
    """`inspect`'s answer for a Workspace already open (the HTML page reuses its analysis)."""
    an = ws.analysis
    cost = model_cost(ws.model, ws.shapes)
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
        "input_shapes": {k: list(v) for k, v in ws.shapes_in.items()},
        "total": {"macs": cost.total_macs, "params": cost.total_params, "nodes": len(an.nodes)},
        "groups": groups,
        "nodes": nodes,
    }
