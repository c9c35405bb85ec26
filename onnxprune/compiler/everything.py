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
run and the driver rewrites the model once at the end (channels first, then blocks). With a
`fine_tune(model) -> model` hook the choice is made physical every iteration, the hook
runs, and the probe is rebuilt from the fine-tuned model (the plan then composes the
indices back to the original model's).

Eligible groups for the neuron candidate: exact, maskable groups with a prunable class,
not inside a dropped block; with `scope="internal"` (the default, as in the paper) also
not on the residual stream (no member is a block's entry or exit). The report says which.

`arbiter` chooses differently for the paper's baselines: "layers" (layer candidate only),
"neurons" (neuron candidate only), "random" (a coin between the two).

`neuron_steps="grow"` takes larger neuron steps while the arbiter's choice is stable:
after neurons won twice in a row, the neuron candidate is sized at 2×, then 4×, then at
most 8× the layer candidate's MACs (never past the MAC target). It is compared with the
layer candidate as it is; if the block wins against the grown step, the neuron candidate
is scored again at equal MACs and the paper's rule decides, so a block is never chosen
because the neuron step was larger. The first layer choice resets the schedule. Each
step records its scale. The default, "equal", is the paper's schedule.

What this does not do: prune the residual stream unless `scope="all"`, fine-tune by
itself, or price latency in the choice (latency is measured, not predicted).
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_ir as ir

from onnxprune.compiler.channels import PlanStrategy
from onnxprune.compiler.driver import Decision, run
from onnxprune.compiler.importance import class_scores
from onnxprune.compiler.layers import eligible
from onnxprune.compiler.plan import PruningPlan
from onnxprune.compiler.progress import Progress
from onnxprune.compiler.selection import emptied_axes
from onnxprune.compiler.target import Target
from onnxprune.compiler.workspace import Options, Workspace, analyze, working_copy
from onnxprune.errors import OnnxPruneError
from onnxprune.model_io import load_model
from onnxprune.passes.blocks import Block, find_blocks
from onnxprune.passes.channel_analysis import ChannelAnalysis
from onnxprune.passes.predict import Predictor, predicted_cost
from onnxprune.runtime.calibration import CalibrationData
from onnxprune.runtime.cka import CKAReference
from onnxprune.runtime.probe import Candidate, ProbeModel
from onnxprune.runtime.session import measure_latency, tapped_features

ARBITERS = ("cka", "layers", "neurons", "random")
NEURON_STEPS = ("equal", "grow")
GROW_AFTER, GROW_MAX = 2, 8  # neuron wins in a row before steps grow; the largest multiple


@dataclass
class _Parent:
    """One physical model and what is removed on top of it (gates and masks)."""

    model: ir.Model
    an: ChannelAnalysis
    blocks: list[Block]
    probe: ProbeModel
    scores: dict[int, float]
    node_of: dict[str, int]  # node name -> index in an.nodes
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
        return predicted_cost(self.an, removed, self.dropped_nodes(dropped))

    def physical(self, options: Options) -> tuple[ir.Model, PruningPlan]:
        """A copy of the parent with its removals made physical (not recovered: this is
        the plain cut, for latency or a fine-tuning hook), and their plan."""
        plan = PruningPlan.from_removed(self.an, self.removed)
        plan.blocks = [PruningPlan.block_entry(b) for b in self.blocks if b.id in self.dropped]
        plain = dataclasses.replace(options, recover="none")
        return run(PlanStrategy(plan), self.model, plain, verify=False).model, plan


def _parent(an: ChannelAnalysis, blocks: list[Block], taps, criterion: str, feeds, pool=None) -> _Parent:
    probe = ProbeModel(an.model, taps=taps, blocks=blocks, analysis=an, keep_outputs=True)
    if pool is not None:  # candidates scattered over Ray workers (runtime/distributed.py)
        probe = pool.probe(probe)
    scores, _ = class_scores(an, criterion if criterion != "activation" else "l1")
    if criterion == "activation" and feeds is not None:
        scores = probe.activation_scores(feeds)
    node_of = {n.name: i for i, n in enumerate(an.nodes)}
    return _Parent(an.model, an, blocks, probe, scores, node_of)


def _batch_rows(calib: CalibrationData) -> int:
    return calib.fixed_batch or min(256, calib.n) or 1


def _tuned_parent(model: ir.Model, options: Options, taps, criterion: str, feeds, pool=None) -> _Parent:
    """The parent after fine-tuning: a fresh copy and analysis of the tuned model."""
    work = working_copy(model)
    an, _, shapes = analyze(work, options.input_shapes)
    return _parent(an, find_blocks(work, shapes), taps, criterion, feeds, pool)


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
    `target_macs` off the parent's `base_macs`, with the smallest such fraction. Each
    bisection step prices only the nodes that touch the eligible groups' values (the
    others keep their MACs), not the whole graph."""
    groups = _eligible_groups(parent, scope)
    if not groups or target_macs <= 0:
        return set()
    touched = _touched_nodes(parent, groups)
    now = Predictor(parent.an, parent.removed, touched)
    macs_now = {i: now.node_macs(i) for i in touched}

    def removed_macs(ratio: float) -> tuple[int, set[int]]:
        chosen = _uniform(groups, parent.scores, ratio)
        bad = set(emptied_axes(parent.an, parent.removed | chosen))
        if bad:  # a Split/Slice piece would empty: give back the best class of each
            for var in bad:
                cls = [c for c in parent.an.classes_of(var).tolist() if c in chosen]
                if cls:
                    chosen.discard(max(cls, key=lambda c: parent.scores.get(c, 0.0)))
        after = Predictor(parent.an, parent.removed | chosen, touched)
        return sum(macs_now[i] - after.node_macs(i) for i in touched), chosen

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


def _touched_nodes(parent: _Parent, groups) -> list[int]:
    """Indices of the live nodes that read or write a value of the groups' members:
    the only nodes whose MACs their removals change."""
    names = {m[1] for g, _ in groups for m in g.members}  # activations and weights
    dead = parent.dropped_nodes(parent.dropped)
    return [i for i, node in enumerate(parent.an.nodes) if i not in dead
            and any(v is not None and v.name in names for v in (*node.inputs, *node.outputs))]


class EverythingStrategy:
    """See the module docstring. `latency_target` (fraction of latency to remove) stops
    on ONNX Runtime's measured latency; `measure` records latency every iteration;
    `on_step(parent, step)` is called after each iteration (after fine-tuning);
    `evaluate(model) -> float` (e.g. top-1 accuracy on labelled data) scores each
    iteration's model, recovered where recovery runs, before any fine-tuning, into the
    step's ``accuracy``."""

    method = "everything"

    def __init__(self, calib: CalibrationData, target: Target, *, criterion="l1", arbiter="cka", scope="internal",
                 min_per_stage=2, taps=None, fine_tune: Callable | None = None, measure=True,
                 latency_target: float | None = None, seed=0, debiased=False, backend="auto", progress=None,
                 max_iterations=1000, on_step: Callable | None = None, pool=None, evaluate: Callable | None = None,
                 neuron_steps: str = "equal"):
        if arbiter not in ARBITERS:
            raise OnnxPruneError(f"arbiter must be one of {', '.join(ARBITERS)}, got {arbiter!r}")
        if neuron_steps not in NEURON_STEPS:
            raise OnnxPruneError(f"neuron_steps must be one of {', '.join(NEURON_STEPS)}, got {neuron_steps!r}")
        if scope not in ("internal", "all"):
            raise OnnxPruneError(f"scope must be internal or all, got {scope!r}")
        if latency_target is None:
            target.check()
        elif not 0.0 < latency_target < 1.0:
            raise OnnxPruneError(f"--target-latency is the fraction of latency to remove, in (0, 1): got {latency_target}")
        self.calib, self.target, self.criterion, self.arbiter, self.scope = calib, target, criterion, arbiter, scope
        self.min_per_stage, self.taps, self.fine_tune, self.measure = min_per_stage, taps, fine_tune, measure
        self.latency_target, self.seed, self.debiased, self.backend = latency_target, seed, debiased, backend
        self.progress, self.max_iterations, self.on_step = progress, max_iterations, on_step
        self.pool = pool  # runtime/distributed.WorkerPool, or None: candidates run here
        self.evaluate, self.neuron_steps = evaluate, neuron_steps

    def search(self, ws: Workspace) -> Decision:
        search = _Search(self, ws)
        while len(search.steps) < self.max_iterations and not search.finished() and search.iterate():
            pass
        search.bar.close()
        return search.decision()

    def settings(self, taps) -> dict:
        return {
            "method": "everything", "arbiter": self.arbiter, "criterion": self.criterion, "scope": self.scope,
            "neuron_groups": "block-internal groups only (residual stream kept)" if self.scope == "internal"
            else "every exact group, residual stream included",
            "target": dict(self.target.__dict__), "target_latency": self.latency_target,
            "min_per_stage": self.min_per_stage, "taps": taps,
            "calibration": {"samples": self.calib.n, "source": self.calib.source},
            "cka": "debiased" if self.debiased else "biased", "fine_tune": self.fine_tune is not None,
            "workers": len(self.pool.actors) if self.pool is not None else 1,
            "neuron_steps": self.neuron_steps,
        }


@dataclass
class _Candidates:
    """One iteration's two candidates against the parent."""

    layer: int | None = None
    layer_cka: float | None = None
    block_cost: int = 0
    neurons: set[int] = field(default_factory=set)
    neuron_cka: float | None = None
    neuron_macs: int = 0
    step_rule: str = "the layer candidate's MACs"
    scale: int = 1  # the neuron step's multiple of the layer candidate's MACs (neuron_steps="grow")
    grown_lost: bool = False  # a grown neuron step lost to the block: scored again at equal MACs
    evaluated: int = 0
    ref: CKAReference | None = None
    recovered_cka: dict[str, float] = field(default_factory=dict)  # the recovered arbiter's scores


class _Search:
    """The arbiter's loop state; `iterate` runs one iteration."""

    def __init__(self, strategy: EverythingStrategy, ws: Workspace):
        self.s, self.ws = strategy, ws
        # Up to 256 samples for the data-driven criterion (several batches when the batch is fixed).
        self.feeds = list(itertools.islice(strategy.calib.batches(256), max(1, 256 // _batch_rows(strategy.calib))))
        self.parent = _parent(ws.analysis, ws.blocks, strategy.taps, strategy.criterion, self.feeds, strategy.pool)
        self.base_macs, self.base_params = self.parent.cost(set(), set())
        self.macs, self.params = self.base_macs, self.base_params
        self.latency_feeds = next(strategy.calib.batches(1))
        timed = strategy.measure or strategy.latency_target is not None
        self.base_latency = measure_latency(ws.original, self.latency_feeds) if timed else None
        self.latency = self.base_latency
        self.rng = random.Random(strategy.seed)
        self.bar = Progress(None, strategy.progress)
        self.steps: list[dict] = []
        self.history: list[PruningPlan] = []
        # The recovered arbiter: both candidates are made physical and recovered from the
        # calibration data (compiler/recover.py) before CKA compares them; the chosen one
        # becomes the parent. Off with a fine-tuning hook (it is the recovery), with
        # recover="none", and for the baseline arbiters.
        options = ws.options
        self.recovered = (strategy.fine_tune is None and strategy.arbiter == "cka" and options.recover != "none"
                          and options.calibration is not None)
        self.recovery = {"layers": [], "blocks_not_compensated": []}
        self.streak = 0  # neuron choices in a row against a layer candidate

    def finished(self) -> bool:
        if self.s.latency_target is not None:
            return self.latency is not None and 1 - self.latency / self.base_latency >= self.s.latency_target
        cut_macs = 1 - self.macs / max(self.base_macs, 1)
        cut_params = 1 - self.params / max(self.base_params, 1)
        return self.s.target.reached(cut_macs, cut_params, len(self.steps))

    def features(self, candidates: list[Candidate], base: Candidate | None = None):
        return self.parent.probe.features(self.s.calib.batches(), candidates, stack=8, base=base)

    def iterate(self) -> bool:
        """One iteration; False when neither candidate exists."""
        start = time.perf_counter()
        cands = self._layer_candidate()
        if self.s.arbiter != "layers":
            self._neuron_candidate(cands, self._scale(cands))
        if cands.layer is None and not cands.neurons:
            return False
        pick = self._pick(cands)
        if pick == "layer" and cands.scale > 1 and not self.recovered:
            cands.grown_lost = True
            self._neuron_candidate(cands, 1)  # the grown step lost: decide at equal MACs
            pick = self._pick(cands)
        # Named before a recovered step replaces the parent (whose blocks are renumbered).
        add = next((b.add for b in self.parent.blocks if b.id == cands.layer), None)
        if self.recovered:
            pick = self._recovered_step(cands, pick)
        elif pick == "layer":
            self.parent.dropped.add(cands.layer)
        else:
            self.parent.removed |= cands.neurons
        self.macs, self.params = self.parent.cost(self.parent.dropped, self.parent.removed)
        if cands.layer is not None:
            # A grown step that lost starts the count again: no extra candidate every iteration.
            self.streak = self.streak + 1 if pick == "neurons" and not cands.grown_lost else 0
        step = self._step(cands, pick, add)
        if self.s.fine_tune is not None or self.s.measure or self.s.latency_target is not None or self.s.evaluate:
            self._make_physical(step)
        step["seconds"] = round(time.perf_counter() - start, 4)
        self.steps.append(step)
        if self.s.on_step is not None:  # after fine-tuning: the parent is then the tuned model
            self.s.on_step(self.parent, step)
        what = f"block {cands.layer}" if pick == "layer" else f"{len(cands.neurons)} channels"
        self.bar.update(len(self.steps), f"iteration {len(self.steps)}: {what}; MACs −{100 * step['macs_reduction']:.1f} %")
        return True

    def _layer_candidate(self) -> _Candidates:
        parent, current = self.parent, self.macs
        choices = eligible(parent.blocks, parent.dropped, self.s.min_per_stage) if self.s.arbiter != "neurons" else []
        cands = _Candidates()
        candidates = [parent.candidate()] + [parent.candidate(blocks=[b]) for b in choices]
        # Each block candidate runs from its block's gate on (prefix caching).
        feats = self.features(candidates, base=candidates[0]) if self.s.arbiter != "random" or choices else []
        cands.evaluated = len(feats)
        cands.ref = CKAReference(feats[0], debiased=self.s.debiased, backend=self.s.backend) if feats else None
        if choices:
            scores = {b: cands.ref.score(f) for b, f in zip(choices, feats[1:])}
            cands.layer = max(choices, key=lambda b: (scores[b], b))
            cands.layer_cka = scores[cands.layer]
            cands.block_cost = current - parent.cost(parent.dropped | {cands.layer}, parent.removed)[0]
        if cands.block_cost <= 0:
            cands.block_cost, cands.step_rule = self._step_without_block(current)
        return cands

    def _step_without_block(self, current: int) -> tuple[int, str]:
        """The MACs a neuron step removes when no block is there to match: a quarter of
        the MACs the target removes (so a model without eligible blocks takes about four
        steps, not hundreds of tiny ones; never more than what is left), at least the
        mean size of the blocks left, or 5 % of the model without a MAC target."""
        parent = self.parent
        sizes = [
            current - parent.cost(parent.dropped | {b.id}, parent.removed)[0]
            for b in parent.blocks if b.removable and b.id not in parent.dropped
        ]
        block = int(np.mean([s for s in sizes if s > 0])) if any(s > 0 for s in sizes) else 0
        if self.s.target.flops is not None:
            quarter = int(self.base_macs * self.s.target.flops) // 4
            left = current - int(self.base_macs * (1 - self.s.target.flops))
            if quarter > block and left > 0:
                return min(quarter, left), "a quarter of the MACs the target removes (no block candidate)"
        if block:
            return block, "the mean MACs of the blocks left (no block candidate)"
        return int(0.05 * self.base_macs), "5 % of the model's MACs (no block candidate)"

    def _scale(self, cands: _Candidates) -> int:
        """The neuron step's multiple of the layer candidate's MACs (see the module docstring)."""
        if self.s.neuron_steps != "grow" or cands.layer is None or self.streak < GROW_AFTER:
            return 1
        return min(GROW_MAX, 2 ** (self.streak - GROW_AFTER + 1))

    def _neuron_candidate(self, cands: _Candidates, scale: int = 1) -> None:
        parent = self.parent
        size = cands.block_cost
        if scale > 1:
            if self.s.target.flops is not None:  # never past the target
                size = max(size, min(scale * size, self.macs - int(self.base_macs * (1 - self.s.target.flops))))
            else:
                size *= scale
            scale = max(1, round(size / max(cands.block_cost, 1)))
            cands.step_rule = (f"{scale}x the layer candidate's MACs (neurons chosen {self.streak} times in a row)"
                               if scale > 1 else "the layer candidate's MACs")
        elif cands.layer is not None:
            cands.step_rule = "the layer candidate's MACs"
        cands.scale = scale
        cands.neurons = neuron_candidate(parent, size, self.s.scope, self.macs)
        if not cands.neurons:
            return
        cands.neuron_macs = self.macs - parent.cost(parent.dropped, parent.removed | cands.neurons)[0]
        # The random arbiter needs no CKA for the choice, unless there is no layer to pick.
        if self.s.arbiter == "random" and cands.layer is not None:
            return
        feat = self.features([parent.candidate(channels=cands.neurons)])[0]
        cands.evaluated += 1
        if cands.ref is None:
            cands.ref = CKAReference(self.features([parent.candidate()])[0], debiased=self.s.debiased,
                                     backend=self.s.backend)
            cands.evaluated += 1
        cands.neuron_cka = cands.ref.score(feat)

    def _pick(self, cands: _Candidates) -> str:
        if self.s.arbiter == "random" and cands.layer is not None and cands.neurons:
            return "layer" if self.rng.random() < 0.5 else "neurons"
        if cands.layer is None:
            return "neurons"
        if not cands.neurons:
            return "layer"
        return "layer" if cands.layer_cka >= cands.neuron_cka else "neurons"  # ties go to the layer

    def _recovered_choice(self, cands: _Candidates, pick: str, tried: dict) -> str:
        """Each candidate made physical on the parent and recovered (kept in `tried`,
        which may hold the layer's already); CKA after recovery picks between them."""
        parent = self.parent
        for which in ("layer", "neurons"):
            if (which == "layer" and cands.layer is None) or (which == "neurons" and not cands.neurons) or which in tried:
                continue
            plan = PruningPlan.from_removed(parent.an, cands.neurons if which == "neurons" else set())
            plan.blocks = [PruningPlan.block_entry(b) for b in parent.blocks if which == "layer" and b.id == cands.layer]
            tried[which] = (run(PlanStrategy(plan), parent.model, self.ws.options, verify=False), plan)
        if len(tried) == 2 and cands.ref is not None:
            for which, (result, _) in tried.items():
                if which in cands.recovered_cka and which == "layer":
                    continue  # scored already, before the neuron step shrank
                # The recovered model as it is: a tapped session, no probe surgery needed.
                score = cands.ref.score(tapped_features(result.model, parent.probe.taps, self.s.calib.batches()))
                cands.recovered_cka[which] = score
                cands.evaluated += 1
            return "layer" if cands.recovered_cka["layer"] >= cands.recovered_cka["neurons"] else "neurons"
        return next(iter(tried)) if len(tried) == 1 else pick

    def _recovered_step(self, cands: _Candidates, pick: str) -> str:
        """Make each candidate physical on the parent and recover it; with both, CKA to
        the parent's representation after recovery decides. The chosen recovered model
        becomes the parent (costs stay absolute: it is physical)."""
        tried: dict = {}
        pick = self._recovered_choice(cands, pick, tried)
        if pick == "layer" and cands.scale > 1:  # the grown step lost: decide at equal MACs
            cands.grown_lost = True
            self._neuron_candidate(cands, 1)
            tried.pop("neurons", None)
            pick = self._recovered_choice(cands, self._pick(cands), tried)
        result, plan = tried[pick]
        self.history.append(plan)
        rec = result.report["recovery"]
        iteration = len(self.steps) + 1
        self.recovery["layers"] += [{**r, "iteration": iteration} for r in rec["layers"]]
        self.recovery["blocks_not_compensated"] += [{**r, "iteration": iteration} for r in rec["blocks_not_compensated"]]
        self.parent = _tuned_parent(result.model, self.ws.options, self.s.taps, self.s.criterion, self.feeds, self.s.pool)
        return pick

    def _step(self, cands: _Candidates, pick: str, add: str | None) -> dict:
        return {
            "iteration": len(self.steps) + 1,
            "layer_candidate": None if cands.layer is None else {
                "block": cands.layer, "add": add, "cka": cands.layer_cka, "macs": cands.block_cost,
                "cka_recovered": cands.recovered_cka.get("layer")},
            "neuron_candidate": None if not cands.neurons else {
                "channels": len(cands.neurons), "cka": cands.neuron_cka, "macs": cands.neuron_macs,
                "sized_by": cands.step_rule, "scale": cands.scale, "grown_step_lost": cands.grown_lost,
                "cka_recovered": cands.recovered_cka.get("neurons")},
            "choice": pick,
            "macs": self.macs,
            "params": self.params,
            "macs_reduction": round(1 - self.macs / max(self.base_macs, 1), 6),
            "params_reduction": round(1 - self.params / max(self.base_params, 1), 6),
            "probe_evaluations": cands.evaluated,
        }

    def _make_physical(self, step: dict) -> None:
        """Measure the parent's latency and run the fine-tuning hook (which then becomes
        the parent: costs stay absolute)."""
        s = self.s
        physical, plan = (self.parent.model, None) if self.recovered else self.parent.physical(self.ws.options)
        if s.measure or s.latency_target is not None:
            self.latency = measure_latency(physical, self.latency_feeds)
            step["latency_s"] = self.latency
            step["latency_speedup"] = round(self.base_latency / self.latency, 4)
        if s.evaluate is not None:
            step["accuracy"] = float(s.evaluate(physical))
        if s.fine_tune is not None:
            self.history.append(plan)
            self.parent = _tuned_parent(_as_model(s.fine_tune(physical)), self.ws.options, s.taps, s.criterion,
                                        self.feeds, s.pool)

    def _why_short(self) -> str:
        done = f"{len(self.steps)} iterations, MACs −{100 * (1 - self.macs / max(self.base_macs, 1)):.1f} %"
        if len(self.steps) >= self.s.max_iterations:
            return f"stopped after the most iterations allowed ({done}): raise max_iterations"
        return (
            f"neither a block nor channels could be removed any more ({done}): lower --min-blocks-per-stage, or "
            "use --scope all to prune the residual stream too"
        )

    def decision(self) -> Decision:
        s, parent = self.s, self.parent
        meta = {"method": "everything", "arbiter": s.arbiter, "criterion": s.criterion, "scope": s.scope,
                "target": dict(s.target.__dict__), "taps": parent.probe.taps}
        reached = self.finished()
        decision = Decision(
            target_reached=reached, stopped_because=None if reached else self._why_short(),
            settings=s.settings(parent.probe.taps), plan_meta=meta, iterations=self.steps,
            predicted={"macs": self.macs, "params": self.params},
            chosen={"layers": sum(x["choice"] == "layer" for x in self.steps),
                    "neurons": sum(x["choice"] == "neurons" for x in self.steps)},
            latency_before=self.base_latency, latency_feeds=self.latency_feeds,
        )
        if self.recovered:
            decision.model, decision.recovery = parent.model, self.recovery
            decision.plan = compose_plans(self.history)
            decision.plan.meta = meta
            return decision
        if s.fine_tune is None:
            decision.removed, decision.dropped = set(parent.removed), sorted(parent.dropped)
            decision.slice_channels = bool(parent.removed)
            return decision
        model, plan = parent.physical(self.ws.options)
        if self.steps:
            model = _as_model(s.fine_tune(model))
        self.history.append(plan)
        decision.model, decision.plan = model, compose_plans(self.history)
        decision.plan.meta = meta
        return decision


def _as_model(tuned) -> ir.Model:
    return load_model(tuned) if isinstance(tuned, (onnx.ModelProto, str)) else tuned


def prune_everything(source, calib: CalibrationData, *, target: Target, input_shapes=None, verify: bool = True,
                     recover: str = "auto", **kwargs):
    """Run the arbiter until `target`; returns a `PruneResult` (keyword arguments: those
    of `EverythingStrategy`). `recover` refits what was cut from `calib` (see `prune`)."""
    strategy = EverythingStrategy(calib, target, **kwargs)
    return run(strategy, source, Options(input_shapes=input_shapes, calibration=calib, recover=recover), verify=verify)


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
