"""Residual blocks for people and for JSON: one row per block of `find_blocks`, with the
MACs of its nodes (`block_macs`) and their share of the model's MACs.

`costs` is the `{block id: MACs}` mapping of `onnxprune.passes.blocks.block_macs`;
`total_macs` (e.g. `model_cost(model, shapes).total_macs`) gives the percentage column,
which is left empty without it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from onnxprune.passes.blocks import Block
from onnxprune.tools.inspect_text import human


def blocks_json(blocks: Iterable[Block], costs: Mapping[int, int], total_macs: int | None = None) -> list[dict]:
    """One dict per block: every `Block` field, plus `branch_nodes` (count), `macs` and
    `macs_percent` (None without `total_macs`)."""
    rows = []
    for block in blocks:
        macs = int(costs.get(block.id, 0))
        rows.append({
            **block.to_dict(),
            "branch_nodes": len(block.branch),
            "macs": macs,
            "macs_percent": _percent(macs, total_macs),
        })
    return rows


def render_blocks(blocks: Iterable[Block], costs: Mapping[int, int], total_macs: int | None = None) -> str:
    """A text table: id, kind, stage (* = first in its stage), removable or why not,
    branch node count, MACs of the block and % of the model."""
    rows = blocks_json(blocks, costs, total_macs)
    removable = sum(r["removable"] for r in rows)
    lines = [f"residual blocks: {len(rows)} ({removable} removable, {len(rows) - removable} not)"]
    if not rows:
        return lines[0]
    lines.append(f"{'id':>4} {'kind':<10} {'stage':>6} {'nodes':>5} {'MACs':>10} {'% model':>7}  removable / add node")
    for r in rows:
        stage = f"{r['stage']}{'*' if r['first_in_stage'] else ''}"
        pct = "" if r["macs_percent"] is None else f"{r['macs_percent']:.2f}"
        verdict = "yes" if r["removable"] else f"no: {r['reason']}"
        lines.append(
            f"{r['id']:>4} {r['kind']:<10} {stage:>6} {r['branch_nodes']:>5} {human(r['macs']):>10} {pct:>7}  "
            f"{verdict}  [{r['add']}]"
        )
    if total_macs:
        total = sum(r["macs"] for r in rows if r["removable"])
        share = 100.0 * total / total_macs
        lines.append(f"removable blocks together: {human(total)} MACs ({share:.2f} % of the model)")
    return "\n".join(lines)


def _percent(macs: int, total: int | None) -> float | None:
    return None if not total else 100.0 * macs / total


__all__ = ["blocks_json", "render_blocks"]
