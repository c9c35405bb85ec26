"""Strategy `layers`: layer pruning by CKA ("Effective Layer Pruning Through Similarity
Metric Perspective", arXiv 2405.17081) on any ONNX model with residual blocks.

    probe (one session) → repeat: parent features (current removals gated off)
                                  → each eligible block's features → linear CKA to parent
                                  → drop the most similar block
                          until the target → RemoveBlocksPass → verify

Eligible blocks follow the paper: identity-shortcut blocks only (projection blocks are
never candidates), never the network's first block, and every stage keeps at least
`min_per_stage` blocks (projection blocks count towards their stage). The parent of an
iteration is the model with the blocks dropped so far; because a probe gate at 0 equals
removing the block exactly, one probe session serves the whole run.

What this does not do: fine-tune, prune channels (the `channels` and `everything`
strategies do), or remove projection blocks.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from onnxprune.compiler.driver import Decision, run
from onnxprune.compiler.progress import Progress
from onnxprune.compiler.target import Target
from onnxprune.compiler.workspace import Options, Workspace
from onnxprune.errors import OnnxPruneError
from onnxprune.passes.blocks import Block, BlockCosts, block_costs
from onnxprune.runtime.calibration import CalibrationData
from onnxprune.runtime.cka import CKAReference
from onnxprune.runtime.probe import Candidate, ProbeModel


@dataclass
class LayerRun:
    """What the search decided, before the rewrite."""

    dropped: list[int] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)


def eligible(blocks: list[Block], dropped: set[int], min_per_stage: int) -> list[int]:
    """Blocks that may go next: identity, removable, not the first block of the network,
    in a stage that would still keep `min_per_stage` blocks."""
    first = min((b.id for b in blocks), default=None)
    per_stage: dict[tuple, int] = {}
    for b in blocks:
        if b.id not in dropped:
            per_stage[stage_key(b)] = per_stage.get(stage_key(b), 0) + 1
    return [
        b.id for b in blocks
        if b.removable and b.kind == "identity" and b.id != first and b.id not in dropped
        and per_stage[stage_key(b)] > min_per_stage
    ]


def stage_key(block: Block) -> tuple:
    """The stage a block counts towards: `find_blocks`' chain of equal-width blocks,
    split further by the exporter's module path where node names carry one
    (TorchScript: "/layer2/layer2.0/Add" is in "layer2"), since two stages of equal
    width with no projection between them are still two stages to the network's author."""
    parts = [p for p in block.add.split("/") if p]
    return (block.stage, parts[0] if block.add.startswith("/") and len(parts) >= 3 else "")


def search_layers(
    probe: ProbeModel,
    blocks: list[Block],
    calib: CalibrationData,
    costs: BlockCosts,
    target: Target,
    *,
    min_per_stage: int = 2,
    order: str = "cka",
    seed: int = 0,
    debiased: bool = False,
    backend: str = "auto",
    stack: int = 8,
    progress: bool | None = None,
) -> LayerRun:
    """Choose blocks to drop, one per iteration. `order="random"` drops a random
    eligible block instead (the baseline of the paper's comparison; no CKA is run)."""
    run = LayerRun()
    dropped: set[int] = set()
    rng = random.Random(seed)
    bar = Progress(_expected_steps(blocks, target, min_per_stage), progress)
    macs, params = costs.total_macs, costs.total_params
    while not target.reached(1 - macs / max(costs.total_macs, 1), 1 - params / max(costs.total_params, 1), len(dropped)):
        choices = eligible(blocks, dropped, min_per_stage)
        if not choices:
            break
        start = time.perf_counter()
        if order == "random":
            best, scores = rng.choice(choices), {}
        else:
            base = frozenset(dropped)
            cands = [Candidate(blocks=base)] + [Candidate(blocks=base | {b}) for b in choices]
            feats = probe.features(calib.batches(), cands, stack=stack, base=cands[0])  # prefix-cached
            ref = CKAReference(feats[0], debiased=debiased, backend=backend)
            scores = {b: ref.score(f) for b, f in zip(choices, feats[1:])}
            # Highest CKA to the parent; ties to the later block (deeper blocks matter less).
            best = max(choices, key=lambda b: (scores[b], b))
        dropped.add(best)
        macs -= costs.macs[best]
        params -= costs.params[best]
        step = {
            "iteration": len(run.steps) + 1,
            "block": best,
            "cka": scores.get(best),
            "candidates": len(choices),
            "macs_after": macs,
            "params_after": params,
            "macs_reduction": round(1 - macs / max(costs.total_macs, 1), 6),
            "seconds": round(time.perf_counter() - start, 4),
        }
        run.steps.append(step)
        run.dropped.append(best)
        cka = "" if step["cka"] is None else f", CKA {step['cka']:.4f}"
        bar.update(len(run.steps), f"dropped block {best}{cka}; MACs −{100 * step['macs_reduction']:.1f} %")
    bar.close()
    return run


def _expected_steps(blocks, target, min_per_stage) -> int | None:
    if target.blocks is not None:
        return target.blocks
    return len(eligible(blocks, set(), min_per_stage)) or None


class LayersStrategy:
    """See the module docstring; `order="random"` is the paper's baseline."""

    method = "layers"

    def __init__(self, calib: CalibrationData, target: Target, *, min_per_stage=2, taps=None, debiased=False,
                 backend="auto", order="cka", seed=0, progress=None, pool=None):
        target.check()
        self.calib, self.target, self.min_per_stage, self.taps = calib, target, min_per_stage, taps
        self.debiased, self.backend, self.order, self.seed, self.progress = debiased, backend, order, seed, progress
        self.pool = pool

    def search(self, ws: Workspace) -> Decision:
        blocks = ws.blocks
        if not any(b.removable and b.kind == "identity" for b in blocks):
            raise OnnxPruneError("the model has no removable residual block: `onnxprune inspect --blocks MODEL` shows why")
        costs = block_costs(ws.model, blocks, ws.shapes)
        probe = ProbeModel(ws.model, taps=self.taps, blocks=blocks)
        if self.pool is not None:  # candidates scattered over Ray workers (runtime/distributed.py)
            probe = self.pool.probe(probe)
        run = search_layers(
            probe, blocks, self.calib, costs, self.target, min_per_stage=self.min_per_stage, order=self.order,
            seed=self.seed, debiased=self.debiased, backend=self.backend, progress=self.progress,
        )
        by_id = {b.id: b for b in blocks}
        for step in run.steps:
            step["add"] = by_id[step["block"]].add
        last = run.steps[-1] if run.steps else {"macs_after": costs.total_macs, "params_after": costs.total_params}
        settings = {
            "method": "layers", "target": dict(self.target.__dict__), "min_per_stage": self.min_per_stage,
            "taps": probe.taps, "calibration": {"samples": self.calib.n, "source": self.calib.source},
            "cka": "debiased" if self.debiased else "biased", "order": self.order,
            "workers": len(self.pool.actors) if self.pool is not None else 1,
        }
        reached = self.target.reached(1 - last["macs_after"] / max(costs.total_macs, 1),
                                      1 - last["params_after"] / max(costs.total_params, 1), len(run.dropped))
        return Decision(
            target_reached=reached, stopped_because=None if reached else self._why_short(blocks, run),
            dropped=run.dropped, settings=settings, iterations=run.steps,
            plan_meta={"method": "layers", "target": self.target.__dict__, "min_per_stage": self.min_per_stage,
                       "taps": probe.taps},
            predicted={"macs": last["macs_after"], "params": last["params_after"]},
        )


    def _why_short(self, blocks: list[Block], run: LayerRun) -> str:
        identity = sum(1 for b in blocks if b.removable and b.kind == "identity")
        return (
            f"no residual block is left to drop ({len(run.dropped)} dropped of {identity} identity blocks; the "
            f"network's first block never goes and every stage keeps --min-blocks-per-stage {self.min_per_stage}): "
            "lower --min-blocks-per-stage, or use --method everything, which removes channels too"
        )


def prune_layers(source, calib: CalibrationData, *, target: Target, input_shapes=None, verify: bool = True,
                 recover: str = "auto", **kwargs):
    """Drop residual blocks by CKA until `target`; returns a `PruneResult` (keyword
    arguments: those of `LayersStrategy`). `recover` repairs what was cut from `calib`
    (see `prune`)."""
    options = Options(input_shapes=input_shapes, calibration=calib, recover=recover)
    return run(LayersStrategy(calib, target, **kwargs), source, options, verify=verify)
