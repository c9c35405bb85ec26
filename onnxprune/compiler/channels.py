"""Strategies `channels` (score every channel by a criterion — weights only, or weights
and calibration data (compiler/data_importance.py) —, remove a ratio of each group, or
the lowest-ranked globally) and `plan` (apply a saved plan: its channels, then its
blocks). Both decide in one shot; the driver rewrites, recovers, verifies and reports.

What these do not do: search for a target (the CKA strategies do).
"""

from __future__ import annotations

from onnxprune.compiler.data_importance import DATA_CRITERIA, data_scores
from onnxprune.compiler.driver import Decision
from onnxprune.compiler.importance import class_scores
from onnxprune.compiler.plan import PruningPlan
from onnxprune.compiler.selection import select_removed
from onnxprune.compiler.workspace import Workspace


class ChannelsStrategy:
    """`criterion` "auto" is ``fluctuation`` when the options carry calibration data (with
    least-squares recovery it was the best or tied on the digits ResNet-56 at every ratio,
    and on MiniLM-L3 it kept cosine 0.954 where l1 kept 0.864) and ``l1`` without."""

    method = "channels"

    def __init__(self, ratio=0.5, criterion="auto", global_ranking=False, round_to=1, kind_ratios=None):
        self.ratio, self.criterion, self.global_ranking = ratio, criterion, global_ranking
        self.round_to, self.kind_ratios = round_to, dict(kind_ratios or {})

    def search(self, ws: Workspace) -> Decision:
        an = ws.analysis
        criterion = self.criterion
        if criterion == "auto":
            criterion = "fluctuation" if ws.options.calibration is not None else "l1"
        if criterion in DATA_CRITERIA:
            scores, used = data_scores(ws, criterion)
        else:
            scores, used = class_scores(an, criterion)
        removed = select_removed(
            an, scores, self.ratio, global_ranking=self.global_ranking, round_to=self.round_to,
            kind_ratios=self.kind_ratios,
        )
        settings = {
            "ratio": self.ratio, "criterion": criterion, "global": self.global_ranking,
            "round_to": self.round_to, "ignore": list(ws.options.ignore), "kind_ratios": self.kind_ratios,
            "resize_io": list(ws.options.resize_io), "resize_cache": ws.options.resize_cache,
        }
        return Decision(removed=removed, settings=settings, plan_meta=settings, criteria=used, slice_channels=True)


class PlanStrategy:
    """Apply `plan`: the channels it names (analysis needed only when it names any) and
    the blocks it drops, matched by their Add's name."""

    method = "plan"

    def __init__(self, plan: PruningPlan):
        self.plan = plan

    def search(self, ws: Workspace) -> Decision:
        if not ws.options.resize_io:
            # A plan made with resized outputs needs them resizable again to apply.
            ws.options.resize_io = tuple(self.plan.meta.get("resize_io", ()))
        removed = self.plan.to_removed(ws.analysis) if self.plan.channels else set()
        dropped = self.plan.to_dropped(ws.blocks) if self.plan.blocks else []
        settings = {"plan": dict(self.plan.meta), "resize_io": list(ws.options.resize_io),
                    "resize_cache": ws.options.resize_cache}
        return Decision(
            removed=removed, dropped=dropped, settings=settings, plan_meta=dict(self.plan.meta),
            slice_channels=bool(self.plan.channels),
        )
