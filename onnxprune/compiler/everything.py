"""Strategy `everything`: the CKA arbiter between layer and neuron pruning ("Pruning
Everything, Everywhere, All at Once", arXiv 2506.04513).

Each iteration, from the current parent (the model with the blocks dropped and the
channels removed so far):
- the **layer candidate** is the eligible block (see `compiler/layers.py`) whose removal
  keeps linear CKA to the parent highest;
- the **neuron candidate** removes as many MACs as that block has, as channels (filters,
  heads, MLP neurons) spread uniformly over the eligible groups: the same fraction of
  each group's remaining classes, chosen by the criterion, at least one kept per group;
- the one whose representation has the higher CKA to the parent is kept (ties to the
  layer), and the loop repeats until the target or until neither candidate exists.

Without fine-tuning the parent never leaves the probe: a dropped block is a gate at 0
and a removed channel a mask at 0, both exact, so one probe session serves the whole
run and the model is rewritten once at the end (channels first, then blocks). With a
`fine_tune(model) -> model` hook the choice is made physical every iteration, the hook
runs, and the probe is rebuilt from the fine-tuned model (the plan then composes the
indices back to the original model's).

Eligible groups for the neuron candidate: exact, maskable groups with a prunable class,
not inside a dropped block; with `scope="internal"` (the default, as in the paper) also
not on the residual stream (no member is a block's entry or exit). The report says which.

`arbiter` chooses differently for the paper's baselines: "layers" (layer candidate only),
"neurons" (neuron candidate only), "random" (a coin between the two).

What this does not do: prune the residual stream unless `scope="all"`, fine-tune by
itself, or price latency in the choice (latency is measured, not predicted).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_ir as ir

from onnxprune.compiler.importance import class_scores
from onnxprune.compiler.layers import Target, _Progress, eligible
from onnxprune.compiler.plan import PruningPlan
from onnxprune.compiler.predict import Predictor
from onnxprune.compiler.selection import emptied_axes
from onnxprune.errors import OnnxPruneError
from onnxprune.model_io import load_model, resolve_input_shapes
from onnxprune.passes.blocks import Block, find_blocks
from onnxprune.passes.channel_analysis import ChannelAnalysis
from onnxprune.passes.remove_blocks import RemoveBlocksPass
from onnxprune.runtime.calibration import CalibrationData
from onnxprune.runtime.cka import CKAReference
from onnxprune.runtime.probe import Candidate, ProbeModel
from onnxprune.runtime.session import measure_latency, ort_session

log = logging.getLogger("onnxprune.everything")
ARBITERS = ("cka", "layers", "neurons", "random")


@dataclass
class _Parent:
    """One physical model and what is removed on top of it (gates and masks)."""

    model: ir.Model
    an: ChannelAnalysis
    blocks: list[Block]
    probe: ProbeModel
    scores: dict[int, float]
    node_of: dict[str, int]  # node label -> index in an.nodes
    dropped: set[int] = field(default_factory=set)
    removed: set[int] = field(default_factory=set)

    def candidate(self, blocks=(), channels=()) -> Candidate:
        removed = self.removed | set(channels)
        by_group: dict[int, set[int]] = {}
        for c in removed:
            by_group.setdefault(self.an.class_group[c], set()).add(c)
        return Candidate(
            blocks=frozenset(self.dropped | set(blocks)),
            channels={g: frozenset(cs) for g, cs in by_group.items()},
        )

    def dropped_nodes(self, dropped: set[int]) -> set[int]:
        by_id = {b.id: b for b in self.blocks}
        return {self.node_of[n] for b in dropped for n in (*by_id[b].branch, by_id[b].add) if n in self.node_of}

    def cost(self, dropped: set[int], removed: set[int]) -> tuple[int, int]:
        """Predicted MACs and parameters of the parent with `dropped` and `removed`."""
        skip = self.dropped_nodes(dropped)
        pred = Predictor(self.an, removed)
        macs = sum(pred.node_macs(i) for i in range(len(self.an.nodes)) if i not in skip)
        return macs, pred.total_params(exclude=skip)


def _build_parent(model: ir.Model, input_shapes, taps, criterion: str, feeds=None) -> _Parent:
    from onnxprune.compiler.pipeline import analyze

    work = load_model(ir.serde.serialize_model(model))
    an, _, shapes = analyze(work, input_shapes)
    blocks = find_blocks(an.model, shapes)
    probe = ProbeModel(an.model, taps=taps, blocks=blocks, analysis=an, keep_outputs=True)
    scores, _ = class_scores(an, criterion if criterion != "activation" else "l1")
    if criterion == "activation" and feeds is not None:
        scores = activation_scores(probe, an, feeds)
    node_of = {n.name: i for i, n in enumerate(an.nodes)}
    return _Parent(work, an, blocks, probe, scores, node_of)


def activation_scores(probe: ProbeModel, an: ChannelAnalysis, feeds) -> dict[int, float]:
    """Mean |activation| of every class where its group is consumed (the masked inputs
    of the probe), over the calibration batch: a data-driven criterion."""
    names = [v.name for n in probe.model.graph if n.name.startswith("onnxprune_mask_mul_") for v in n.inputs[:1]]
    if not names:
        return {}
    session_model = load_model(ir.serde.serialize_model(probe.model))
    values = {v.name: v for n in session_model.graph for v in n.outputs if v is not None}
    session_model.graph.outputs.clear()
    session_model.graph.outputs.extend(values[n] for n in names if n in values)
    session = ort_session(session_model)
    full = probe.feeds_for(feeds, [Candidate()])
    arrays = session.run(None, {i.name: full[i.name] for i in session.get_inputs()})
    totals: dict[int, list[float]] = {}
    for node, arr in zip([n for n in probe.model.graph if n.name.startswith("onnxprune_mask_mul_")], arrays):
        idx_name = node.name.replace("onnxprune_mask_mul_", "onnxprune_mask_idx_")
        idx = probe.model.graph.initializers[idx_name].const_value.numpy()
        axis = next(a for a, d in enumerate(arr.shape) if d == len(idx) and a > 0)
        per_pos = np.abs(arr).mean(axis=tuple(a for a in range(arr.ndim) if a != axis))
        inverse = {col: (g, c) for g, index in probe.mask_index.items() for c, col in index.items()}
        for col, value in zip(idx.tolist(), per_pos.tolist()):
            if col in inverse:
                totals.setdefault(inverse[col][1], []).append(value)
    return {c: float(np.mean(v)) for c, v in totals.items()}


def _eligible_groups(parent: _Parent, scope: str) -> list:
    an = parent.an
    residual = {v for b in parent.blocks for v in (b.entry, b.exit)} if scope == "internal" else set()
    dead = parent.dropped_nodes(parent.dropped)
    out = []
    for g in an.groups:
        if not g.exact or g.id not in parent.probe.mask_index:
            continue
        if residual and any(m[0] == "value" and m[1] in residual for m in g.members):
            continue
        if all(parent.node_of.get(s["node"]) in dead for s in g.sources):
            continue
        remaining = [c for c in g.prunable if c not in parent.removed]
        if len(remaining) > 1 or (len(remaining) == 1 and len(g.classes) > 1 and len(g.prunable) < len(g.classes)):
            out.append((g, remaining))
    return out


def _uniform(groups, scores, ratio: float) -> set[int]:
    chosen: set[int] = set()
    for g, remaining in groups:
        keep_floor = 1 if len(g.prunable) == len(g.classes) else 0  # frozen classes already keep the layer alive
        k = min(int(ratio * len(remaining)), len(remaining) - keep_floor)
        if k > 0:
            chosen.update(sorted(remaining, key=lambda c: (scores.get(c, 0.0), c))[:k])
    return chosen


def neuron_candidate(parent: _Parent, target_macs: int, scope: str, base_macs: int) -> set[int]:
    """The channels (uniform fraction per eligible group) whose removal takes at least
    `target_macs` off the parent's `base_macs`, with the smallest such fraction."""
    groups = _eligible_groups(parent, scope)
    if not groups or target_macs <= 0:
        return set()

    def removed_macs(ratio: float) -> tuple[int, set[int]]:
        chosen = _uniform(groups, parent.scores, ratio)
        bad = set(emptied_axes(parent.an, parent.removed | chosen))
        if bad:  # a Split/Slice piece would empty: give back the best class of each
            for var in bad:
                cls = [c for c in parent.an.classes_of(var).tolist() if c in chosen]
                if cls:
                    chosen.discard(max(cls, key=lambda c: parent.scores.get(c, 0.0)))
        macs, _ = parent.cost(parent.dropped, parent.removed | chosen)
        return base_macs - macs, chosen

    lo, hi = 0.0, 1.0
    top, best = removed_macs(hi)
    if top <= 0:
        return set()
    if top < target_macs:
        return best
    for _ in range(14):
        mid = (lo + hi) / 2
        got, chosen = removed_macs(mid)
        if got >= target_macs:
            hi, best = mid, chosen
        else:
            lo = mid
    return best


def _features(parent: _Parent, calib: CalibrationData, candidates: list[Candidate]) -> list[np.ndarray]:
    return parent.probe.features(calib.batches(), candidates, stack=8)


def materialize(parent: _Parent, input_shapes, verify: bool = False) -> tuple[ir.Model, PruningPlan]:
    """The parent's removals made physical: channels first (by plan), then blocks."""
    from onnxprune.compiler.pipeline import prune

    plan = PruningPlan.from_removed(parent.an, parent.removed)
    if parent.removed:
        model = prune(parent.model, plan=plan, input_shapes=input_shapes, verify=verify).model
    else:
        model = load_model(ir.serde.serialize_model(parent.model))
    if parent.dropped:
        adds = [b.add for b in parent.blocks if b.id in parent.dropped]
        present = {b.add: b for b in find_blocks(model)}
        RemoveBlocksPass([present[a] for a in adds if a in present])(model)
        from onnx_ir.passes.common import RemoveUnusedNodesPass

        RemoveUnusedNodesPass()(model)
    plan.blocks = [
        {"id": b.id, "add": b.add, "entry": b.entry, "exit": b.exit, "stage": b.stage, "branch": list(b.branch)}
        for b in parent.blocks if b.id in parent.dropped
    ]
    return model, plan


def prune_everything(
    source,
    calib: CalibrationData,
    *,
    target: Target,
    criterion: str = "l1",
    arbiter: str = "cka",
    scope: str = "internal",
    min_per_stage: int = 2,
    taps=None,
    input_shapes=None,
    fine_tune: Callable | None = None,
    measure: bool = True,
    latency_target: float | None = None,
    seed: int = 0,
    debiased: bool = False,
    backend: str = "auto",
    verify: bool = True,
    progress: bool | None = None,
    max_iterations: int = 1000,
    on_step: Callable | None = None,
):
    """Run the arbiter until `target`; returns a `PruneResult` (see the module docstring).

    `latency_target` (fraction of latency to remove) stops on ONNX Runtime's measured
    latency; `measure` records latency every iteration (needed for `latency_target`)."""
    from onnxprune.compiler.pipeline import PruneResult, _frac
    from onnxprune.compiler.verify import verify_model
    from onnxprune.passes.cost import model_cost
    from onnxprune.passes.shapes import static_shapes

    if arbiter not in ARBITERS:
        raise OnnxPruneError(f"arbiter must be one of {', '.join(ARBITERS)}, got {arbiter!r}")
    if scope not in ("internal", "all"):
        raise OnnxPruneError(f"scope must be internal or all, got {scope!r}")
    if latency_target is None:
        target.check()
    elif not 0.0 < latency_target < 1.0:
        raise OnnxPruneError(f"--target-latency is the fraction of latency to remove, in (0, 1): got {latency_target}")
    original = source if isinstance(source, ir.Model) else load_model(source)
    shapes_in = resolve_input_shapes(original, input_shapes)
    latency_feeds = next(calib.batches(1))
    parent = _build_parent(original, input_shapes, taps, criterion, next(calib.batches(256)))
    base_macs, base_params = parent.cost(set(), set())
    base_latency = measure_latency(original, latency_feeds) if (measure or latency_target) else None
    rng = random.Random(seed)
    bar = _Progress(None, progress)
    steps: list[dict] = []
    history_plans: list[PruningPlan] = []
    macs, params = base_macs, base_params
    latency = base_latency
    while len(steps) < max_iterations:
        cut_macs = 1 - macs / max(base_macs, 1)
        cut_params = 1 - params / max(base_params, 1)
        if latency_target is not None:
            if latency is not None and 1 - latency / base_latency >= latency_target:
                break
        elif target.reached(cut_macs, cut_params, len(steps)):
            break
        start = time.perf_counter()
        current_macs = macs
        choices = eligible(parent.blocks, parent.dropped, min_per_stage) if arbiter != "neurons" else []
        candidates = [parent.candidate()]
        if choices:
            candidates += [parent.candidate(blocks=[b]) for b in choices]
        feats = _features(parent, calib, candidates) if arbiter != "random" or choices else []
        evaluated = len(feats)
        ref = CKAReference(feats[0], debiased=debiased, backend=backend) if feats else None
        layer, layer_cka, block_cost = None, None, 0
        if choices:
            scores = {b: ref.score(f) for b, f in zip(choices, feats[1:])}
            layer = max(choices, key=lambda b: (scores[b], b))
            layer_cka = scores[layer]
            block_cost = current_macs - parent.cost(parent.dropped | {layer}, parent.removed)[0]
        if block_cost <= 0:  # no block to match: step by the mean block size, or 5 % of the model
            sizes = [
                current_macs - parent.cost(parent.dropped | {b.id}, parent.removed)[0]
                for b in parent.blocks if b.removable and b.id not in parent.dropped
            ]
            sizes = [s for s in sizes if s > 0]
            block_cost = int(np.mean(sizes)) if sizes else int(0.05 * base_macs)
        neurons: set[int] = set()
        neuron_cka = None
        if arbiter != "layers":
            neurons = neuron_candidate(parent, block_cost, scope, current_macs)
            neuron_macs = current_macs - parent.cost(parent.dropped, parent.removed | neurons)[0] if neurons else 0
            # The random arbiter needs no CKA for the choice, unless there is no layer to pick.
            if neurons and (arbiter != "random" or layer is None):
                feat = _features(parent, calib, [parent.candidate(channels=neurons)])[0]
                evaluated += 1
                if ref is None:
                    ref = CKAReference(_features(parent, calib, [parent.candidate()])[0], debiased=debiased, backend=backend)
                    evaluated += 1
                neuron_cka = ref.score(feat)
        if layer is None and not neurons:
            break
        if arbiter == "random" and layer is not None and neurons:
            pick = "layer" if rng.random() < 0.5 else "neurons"
        elif layer is None:
            pick = "neurons"
        elif not neurons:
            pick = "layer"
        else:
            pick = "layer" if layer_cka >= neuron_cka else "neurons"  # ties go to the layer
        if pick == "layer":
            parent.dropped.add(layer)
        else:
            parent.removed |= neurons
        macs, params = parent.cost(parent.dropped, parent.removed)
        step = {
            "iteration": len(steps) + 1,
            "layer_candidate": None if layer is None else {"block": layer, "add": next(b.add for b in parent.blocks if b.id == layer), "cka": layer_cka, "macs": block_cost},
            "neuron_candidate": None if not neurons else {"channels": len(neurons), "cka": neuron_cka, "macs": neuron_macs},
            "choice": pick,
            "macs": macs,
            "params": params,
            "macs_reduction": round(1 - macs / max(base_macs, 1), 6),
            "params_reduction": round(1 - params / max(base_params, 1), 6),
            "probe_evaluations": evaluated,
        }
        if fine_tune is not None or measure or latency_target is not None:
            physical, plan = materialize(parent, input_shapes)
            if measure or latency_target is not None:
                latency = measure_latency(physical, latency_feeds)
                step["latency_s"] = latency
                step["latency_speedup"] = round(base_latency / latency, 4)
            if fine_tune is not None:
                history_plans.append(plan)
                tuned = fine_tune(physical)
                tuned = load_model(tuned) if isinstance(tuned, (onnx.ModelProto, str)) else tuned
                # The fine-tuned model is the new parent: costs stay absolute.
                parent = _build_parent(tuned, input_shapes, taps, criterion, next(calib.batches(256)))
        step["seconds"] = round(time.perf_counter() - start, 4)
        steps.append(step)
        if on_step is not None:  # after fine-tuning: the parent is then the tuned model
            on_step(parent, step)
        what = f"block {layer}" if pick == "layer" else f"{len(neurons)} channels"
        bar.update(len(steps), f"iteration {len(steps)}: {what}; MACs −{100 * step['macs_reduction']:.1f} %")
    bar.close()
    model, plan = materialize(parent, input_shapes, verify=False)
    if fine_tune is not None:
        if steps:
            tuned = fine_tune(model)
            model = load_model(tuned) if isinstance(tuned, (onnx.ModelProto, str)) else tuned
        history_plans.append(plan)
        plan = compose_plans(history_plans)
    plan.meta = {"method": "everything", "arbiter": arbiter, "criterion": criterion, "scope": scope,
                 "target": dict(target.__dict__), "taps": parent.probe.taps}
    verification = None
    if verify:
        result = verify_model(original, model, shapes_in)
        verification = {"ok": result.ok, "message": result.message}
    after = model_cost(model, static_shapes(model, shapes_in))
    before = model_cost(original, static_shapes(original, shapes_in))
    report = {
        "settings": {
            "method": "everything", "arbiter": arbiter, "criterion": criterion, "scope": scope,
            "neuron_groups": "block-internal groups only (residual stream kept)" if scope == "internal" else "every exact group, residual stream included",
            "target": dict(target.__dict__), "target_latency": latency_target, "min_per_stage": min_per_stage,
            "taps": parent.probe.taps, "calibration": {"samples": calib.n, "source": calib.source},
            "cka": "debiased" if debiased else "biased", "fine_tune": fine_tune is not None,
        },
        "input_shapes": {k: list(v) for k, v in shapes_in.items()},
        "iterations": steps,
        "chosen": {"layers": sum(s["choice"] == "layer" for s in steps), "neurons": sum(s["choice"] == "neurons" for s in steps)},
        "cost": {
            "before": {"macs": before.total_macs, "params": before.total_params},
            "predicted": {"macs": macs, "params": params},
            "after": {"macs": after.total_macs, "params": after.total_params},
            "macs_reduction": _frac(before.total_macs, after.total_macs),
            "params_reduction": _frac(before.total_params, after.total_params),
        },
        "latency": None if base_latency is None else {
            "before_s": base_latency, "after_s": measure_latency(model, latency_feeds),
        },
        "interface": [],
        "verification": verification,
    }
    if report["latency"]:
        report["latency"]["speedup"] = round(report["latency"]["before_s"] / report["latency"]["after_s"], 4)
    return PruneResult(model=model, plan=plan, report=report)


def compose_plans(plans: list[PruningPlan]) -> PruningPlan:
    """One plan in the first model's indices from plans made on successive models (each
    on the previous one's pruned output): later indices are mapped through what stayed."""
    kept: dict[tuple[str, int], list[int]] = {}
    removed: dict[tuple[str, int], dict] = {}
    blocks: list[dict] = []
    for plan in plans:
        for entry in plan.channels:
            key = (entry["tensor"], entry["axis"])
            positions = kept.setdefault(key, list(range(entry["size"])))
            gone = [positions[i] for i in entry["removed"]]
            kept[key] = [p for i, p in enumerate(positions) if i not in set(entry["removed"])]
            row = removed.setdefault(key, {**entry, "removed": []})  # the first plan naming it has its original size
            row["removed"] = sorted(set(row["removed"]) | set(gone))
        blocks += plan.blocks
    return PruningPlan(channels=list(removed.values()), blocks=blocks)
