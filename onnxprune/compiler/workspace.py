"""The driver's working state for one run: the model as given (for verification), a
working copy to change, and what the strategies ask of it, each computed once and only
when asked for: static shapes, the channel analysis (which first folds shape arithmetic
into constants, so a run that never asks for it leaves the graph as it was), the
residual blocks and the cost before. It also makes a decision physical (`rewrite`):
channels first, then blocks, matched by their Add's name.

What this does not do: decide anything (strategies do), verify or report (the driver).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass

from onnxprune.errors import OnnxPruneError
from onnxprune.model_io import load_model, prepare, resolve_input_shapes
from onnxprune.passes.blocks import Block, block_costs, find_blocks
from onnxprune.passes.channel_analysis import ChannelAnalysis, analyze_channels
from onnxprune.passes.cost import CostReport, model_cost
from onnxprune.passes.fold_shapes import FoldShapeComputationsPass
from onnxprune.passes.fold_weight_transposes import FoldWeightTransposesPass
from onnxprune.passes.interface import resizable_io
from onnxprune.passes.predict import predicted_cost
from onnxprune.passes.remove_blocks import RemoveBlocksPass
from onnxprune.passes.shapes import InferValueShapesPass, static_shapes, symbolic_info
from onnxprune.passes.slice_channels import SliceChannelsPass


@dataclass
class Options:
    """How the model is read: shapes for symbolic inputs, nodes to leave alone, interface
    values that may shrink (a KV cache unless `resize_cache` is False, plus `resize_io`),
    and inputs for measuring shapes and verifying (models whose inputs must agree)."""

    input_shapes: Mapping | None = None
    ignore: tuple = ()
    resize_io: tuple = ()
    resize_cache: bool = True
    sample_feeds: Mapping | None = None
    # Calibration data (runtime.calibration.CalibrationData) for recovery and data-driven
    # criteria, and how removed channels are recovered: "auto" (least squares when there
    # is calibration data, else nothing), "ls", "bias" or "none" (passes/recovery.py).
    calibration: object | None = None
    recover: str = "auto"


def working_copy(source) -> ir.Model:
    """A model of our own to change. From a path it loads lazily (weights stay in their
    files, mapped when used); an `ir.Model` given by the caller is cloned (its weights
    shared, never changed: rewrites replace tensors, they do not write into them)."""
    if isinstance(source, (str, os.PathLike, onnx.ModelProto)):
        return load_model(source)
    if isinstance(source, ir.Model):
        return prepare(source.clone(deep_copy=True))
    raise OnnxPruneError(f"expected a path, onnx.ModelProto or onnx_ir.Model, got {type(source).__name__}")


def analyze(
    model: ir.Model, input_shapes=None, ignore=(), resize_io=(), resize_cache: bool = True, feeds=None
) -> tuple[ChannelAnalysis, dict, dict]:
    """Channel analysis of a loaded model: (analysis, input shapes, all static shapes).

    Folds shape arithmetic on static dims into constants first, and weights read through
    a Transpose of a constant (the model is changed: callers pass their working copy). Interface values that may shrink: the KV cache
    (unless `resize_cache` is False) and the names in `resize_io`. `feeds` are inputs
    for measuring shapes inference cannot give (default: random)."""
    resizable = resizable_io(model, resize_io, cache=resize_cache)
    FoldWeightTransposesPass()(model)  # MatMul(x, Transpose(W)) from unfolded exports: W is a weight
    dims, dtypes = symbolic_info(model)
    FoldShapeComputationsPass({k: tuple(d if isinstance(d, int) else None for d in v) for k, v in dims.items()},
                              dtypes)(model)
    shapes_in = resolve_input_shapes(model, input_shapes)
    if feeds is not None and not input_shapes:
        shapes_in = {k: tuple(np.shape(v)) for k, v in feeds.items()}
    shapes = static_shapes(model, shapes_in, feeds)
    return analyze_channels(model, shapes, ignore, resizable), shapes_in, shapes


class Workspace:
    """See the module docstring."""

    def __init__(self, source, options: Options | None = None):
        # A copy: a strategy may complete the options (a plan's resizable outputs).
        self.options = dataclasses.replace(options) if options is not None else Options()
        self.original = source if isinstance(source, ir.Model) else load_model(source)
        # The file the original was read from (ONNX Runtime may read it directly).
        self.source_path = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
        self.model = working_copy(self.original)  # one read of the file; the weights are shared
        self.shapes_in = resolve_input_shapes(self.model, self.options.input_shapes)
        self._analysis: ChannelAnalysis | None = None
        self._shapes: dict | None = None
        self._blocks: list[Block] | None = None
        self._before: CostReport | None = None

    @property
    def analysed(self) -> bool:
        return self._analysis is not None

    @property
    def analysis(self) -> ChannelAnalysis:
        if self._analysis is None:
            o = self.options
            self._analysis, self.shapes_in, self._shapes = analyze(
                self.model, o.input_shapes, o.ignore, o.resize_io, o.resize_cache, o.sample_feeds
            )
        return self._analysis

    @property
    def shapes(self) -> dict:
        if self._shapes is None:
            self._shapes = static_shapes(self.model, self.shapes_in, self.options.sample_feeds)
        return self._shapes

    @property
    def blocks_found(self) -> bool:
        return self._blocks is not None

    @property
    def blocks(self) -> list[Block]:
        if self._blocks is None:
            self._blocks = find_blocks(self.model, self.shapes)
        return self._blocks

    def cost_before(self) -> CostReport:
        if self._before is None:
            self._before = model_cost(self.model, self.shapes)
        return self._before

    def predict(self, removed: set[int], dropped: list[int]) -> dict:
        """MACs and parameters the rewrite will leave: the cost model on the shapes the
        channel rewrite will produce, without the dropped blocks' nodes; without a
        channel analysis, the cost before minus each dropped block's own cost."""
        if self.analysed:
            macs, params = predicted_cost(self.analysis, removed, self.dropped_nodes(dropped))
            return {"macs": macs, "params": params}
        costs = block_costs(self.model, self.blocks, self.shapes)
        return {
            "macs": costs.total_macs - sum(costs.macs[b] for b in dropped),
            "params": costs.total_params - sum(costs.params[b] for b in dropped),
        }

    def dropped_nodes(self, dropped) -> set[int]:
        """Indices (in the analysis' node list) of the Adds and branches of `dropped`."""
        names = {n for b in self.blocks if b.id in set(dropped) for n in (*b.branch, b.add)}
        return {i for i, node in enumerate(self.analysis.nodes) if node.name in names}

    def rewrite(self, removed: set[int], dropped: list[int], *, slice_channels: bool) -> None:
        """Make the decision physical in `self.model`: channels first (when a channel
        analysis decided them, or `slice_channels` asks for the cleaned, re-annotated
        model even with nothing removed), then blocks."""
        if self.analysed and (removed or slice_channels):
            ir.passes.Sequential(
                SliceChannelsPass(self.analysis, removed), RemoveUnusedNodesPass(), InferValueShapesPass()
            )(self.model)
        if dropped:
            adds = [b.add for b in self.blocks if b.id in set(dropped)]
            present = {b.add: b for b in find_blocks(self.model)}
            ir.passes.Sequential(RemoveBlocksPass([present[a] for a in adds]), RemoveUnusedNodesPass())(self.model)
