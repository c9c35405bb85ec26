"""The report every method writes: one schema (`FORMAT`), documented in the README.

Keys (always present; null where a method has nothing to say):
- ``format``, ``method`` (channels | plan | layers | everything), ``settings`` (what the
  method was asked: ratios, criterion, target, calibration, ...), ``input_shapes``;
- ``groups``: channel groups (total, prunable, channels removed, a row per group) —
  null when the method did not analyse channels;
- ``blocks``: residual blocks (total, removable identity blocks, dropped) — null when
  the method did not look for blocks;
- ``iterations``: one entry per search step (empty for one-shot methods);
- ``chosen``: everything-at-once's count of layer and neuron steps, else null;
- ``cost``: MACs and parameters before, predicted, after, and the reductions;
- ``latency``: measured ONNX Runtime latency before and after, or null;
- ``interface``: graph inputs/outputs whose shape changed (a KV cache), with kept indices;
- ``verification``: ``{"ok", "message", "checks"}``, or null when verification was skipped;
- ``recovery``: what was requested, what ran, why not, which data (calibration or
  synthesized) and how many samples, every refit layer with its relative output error
  before and after, and the runs of dropped blocks not compensated (compiler/recover.py);
- ``target_reached``: whether a search met its target (null for one-shot methods), and
  ``stopped_because``: why it stopped short and what to do (else null).
The CLI adds ``accuracy`` (with ``--eval``) and ``plan``.

The schema ships in the package: ``onnxprune/schemas/report-1.schema.json`` (JSON Schema
draft 2020-12, ``$id`` ``urn:onnxprune:schema:report:1``), read by `report_schema()`.
Versioning: adding a key (or a value a key may take) keeps version 1 — the schema's
objects accept keys they do not list, so readers written against version 1 keep working;
renaming, removing or retyping a key (or making a non-null key nullable) bumps `FORMAT`
to ``onnxprune.report/2`` and ships ``report-2.schema.json`` next to the old file, which
stays unchanged for reports already written.
"""

from __future__ import annotations

import json
from importlib import resources

from onnxprune.passes.channel_analysis import ChannelAnalysis
from onnxprune.passes.cost import CostReport

FORMAT = "onnxprune.report/1"
SCHEMA_VERSION = int(FORMAT.rsplit("/", 1)[1])


def report_schema(version: int = SCHEMA_VERSION) -> dict:
    """The JSON Schema of report format `version` (shipped as onnxprune/schemas/report-<version>.schema.json)."""
    path = resources.files("onnxprune").joinpath("schemas", f"report-{version}.schema.json")
    return json.loads(path.read_text(encoding="utf-8"))


def fraction_removed(before: int, after: int) -> float:
    return 0.0 if before == 0 else round(1.0 - after / before, 6)


def cost_section(before: CostReport, predicted: dict, after: CostReport) -> dict:
    return {
        "before": {"macs": before.total_macs, "params": before.total_params},
        "predicted": predicted,
        "after": {"macs": after.total_macs, "params": after.total_params},
        "macs_reduction": fraction_removed(before.total_macs, after.total_macs),
        "params_reduction": fraction_removed(before.total_params, after.total_params),
    }


def groups_section(an: ChannelAnalysis, removed: set[int], used: dict[int, str]) -> dict:
    return {
        "total": len(an.groups),
        "prunable": sum(1 for g in an.groups if g.prunable),
        "channels_removed": len(removed),
        "detail": group_rows(an, removed, used),
    }


def group_rows(an: ChannelAnalysis, removed: set[int], used: dict[int, str]) -> list[dict]:
    rows = []
    for g in an.groups:
        rows.append(
            {
                "id": g.id,
                "kind": g.kind,
                "source": g.sources[0]["tensor"] if g.sources else None,
                "size": g.size,
                "prunable": len(g.prunable),
                "removed": sum(1 for c in g.classes if c in removed),
                "criterion": used.get(g.id),
                "exact": g.exact,
            }
        )
    return rows


def blocks_section(blocks, dropped) -> dict:
    return {
        "total": len(blocks),
        "removable": sum(1 for b in blocks if b.removable and b.kind == "identity"),
        "dropped": len(dropped),
    }
