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

import logging
import math
import random
import sys
import time
from dataclasses import dataclass, field

import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass

from onnxprune.compiler.plan import PruningPlan
from onnxprune.compiler.verify import verify_model
from onnxprune.errors import OnnxPruneError
from onnxprune.model_io import load_model, resolve_input_shapes
from onnxprune.passes.blocks import Block, block_macs, find_blocks
from onnxprune.passes.cost import model_cost
from onnxprune.passes.remove_blocks import RemoveBlocksPass
from onnxprune.passes.shapes import static_shapes
from onnxprune.runtime.calibration import CalibrationData
from onnxprune.runtime.cka import CKAReference
from onnxprune.runtime.probe import Candidate, ProbeModel

log = logging.getLogger("onnxprune.layers")


@dataclass
class Target:
    """When to stop: a fraction of MACs or params removed, or a number of blocks."""

    flops: float | None = None
    params: float | None = None
    blocks: int | None = None

    def check(self) -> None:
        for name in ("flops", "params"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value < 1.0:
                raise OnnxPruneError(f"--target-{name} is the fraction to remove, in (0, 1): got {value}")
        if self.blocks is not None and self.blocks < 1:
            raise OnnxPruneError(f"--target-blocks must be at least 1, got {self.blocks}")
        if self.flops is None and self.params is None and self.blocks is None:
            raise OnnxPruneError("give a target: --target-flops R, --target-params R or --target-blocks N")

    def reached(self, macs_cut: float, params_cut: float, dropped: int) -> bool:
        return (
            (self.flops is not None and macs_cut >= self.flops - 1e-12)
            or (self.params is not None and params_cut >= self.params - 1e-12)
            or (self.blocks is not None and dropped >= self.blocks)
        )


@dataclass
class BlockCosts:
    macs: dict[int, int]
    params: dict[int, int]
    total_macs: int
    total_params: int


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


def block_costs(model: ir.Model, blocks: list[Block], shapes: dict) -> BlockCosts:
    """MACs (branch nodes) and parameters (weights only the branch reads) per block."""
    macs = block_macs(model, blocks, shapes)
    cost = model_cost(model, shapes)
    by_name = {n.name: n for n in model.graph if n.name}
    params: dict[int, int] = {}
    for b in blocks:
        names = set(b.branch)
        own = 0
        seen = set()
        for name in names:
            node = by_name.get(name)
            for v in node.inputs if node is not None else ():
                if v is None or id(v) in seen or v.const_value is None:
                    continue
                seen.add(id(v))
                # A weight shared with nodes outside the branch stays after removal.
                if all((u.node.name in names) for u in v.uses()) and v.dtype is not None and v.dtype.is_floating_point():
                    own += int(math.prod(v.const_value.shape))
        params[b.id] = own
    return BlockCosts(macs, params, cost.total_macs, cost.total_params)


class _Progress:
    """A one-line progress bar on a terminal; log lines otherwise."""

    def __init__(self, total: int | None, enabled: bool | None = None):
        self.total = total
        self.tty = sys.stderr.isatty() if enabled is None else enabled

    def update(self, step: int, text: str) -> None:
        if self.tty:
            width = 24
            done = width if not self.total else min(width, round(width * step / self.total))
            sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {text}\033[K")
            sys.stderr.flush()
        log.info(text)

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


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
    bar = _Progress(_expected_steps(blocks, target, min_per_stage), progress)
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
            feats = probe.features(calib.batches(), cands, stack=stack)
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


def prune_layers(
    source,
    calib: CalibrationData,
    *,
    target: Target,
    min_per_stage: int = 2,
    taps=None,
    input_shapes=None,
    debiased: bool = False,
    backend: str = "auto",
    order: str = "cka",
    seed: int = 0,
    verify: bool = True,
    progress: bool | None = None,
):
    """Drop residual blocks by CKA until `target`; returns a `PruneResult`."""
    from onnxprune.compiler.pipeline import PruneResult, _frac, _working_copy

    target.check()
    original = source if isinstance(source, ir.Model) else load_model(source)
    model = _working_copy(source)
    shapes_in = resolve_input_shapes(model, input_shapes)
    shapes = static_shapes(model, shapes_in)
    blocks = find_blocks(model, shapes)
    if not any(b.removable and b.kind == "identity" for b in blocks):
        raise OnnxPruneError("the model has no removable residual block: `onnxprune inspect --blocks MODEL` shows why")
    costs = block_costs(model, blocks, shapes)
    probe = ProbeModel(model, taps=taps, blocks=blocks)
    run = search_layers(
        probe, blocks, calib, costs, target, min_per_stage=min_per_stage, order=order, seed=seed,
        debiased=debiased, backend=backend, progress=progress,
    )
    by_id = {b.id: b for b in blocks}
    ir.passes.Sequential(RemoveBlocksPass(run.dropped), RemoveUnusedNodesPass())(model)
    verification = None
    if verify:
        result = verify_model(original, model, shapes_in)
        verification = {"ok": result.ok, "message": result.message}
    after = model_cost(model, static_shapes(model, shapes_in))
    predicted = {"macs": run.steps[-1]["macs_after"] if run.steps else costs.total_macs,
                 "params": run.steps[-1]["params_after"] if run.steps else costs.total_params}
    plan = PruningPlan(
        blocks=[_block_entry(by_id[b]) for b in run.dropped],
        meta={"method": "layers", "target": target.__dict__, "min_per_stage": min_per_stage, "taps": probe.taps},
    )
    for step in run.steps:
        step["add"] = by_id[step["block"]].add
    report = {
        "settings": {
            "method": "layers", "target": dict(target.__dict__), "min_per_stage": min_per_stage,
            "taps": probe.taps, "calibration": {"samples": calib.n, "source": calib.source},
            "cka": "debiased" if debiased else "biased", "order": order,
        },
        "input_shapes": {k: list(v) for k, v in shapes_in.items()},
        "blocks": {
            "total": len(blocks),
            "removable": sum(1 for b in blocks if b.removable and b.kind == "identity"),
            "dropped": len(run.dropped),
        },
        "iterations": run.steps,
        "cost": {
            "before": {"macs": costs.total_macs, "params": costs.total_params},
            "predicted": predicted,
            "after": {"macs": after.total_macs, "params": after.total_params},
            "macs_reduction": _frac(costs.total_macs, after.total_macs),
            "params_reduction": _frac(costs.total_params, after.total_params),
        },
        "interface": [],
        "verification": verification,
    }
    return PruneResult(model=model, plan=plan, report=report)


def _block_entry(block: Block) -> dict:
    return {
        "id": block.id, "add": block.add, "entry": block.entry, "exit": block.exit,
        "stage": block.stage, "branch": list(block.branch),
    }
