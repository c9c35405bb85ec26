"""The op registry: one record per op family, holding everything onnxprune knows about it.

An `OpRecord` is filled where its op family is defined (one module per family under
`passes/rules/`), the way JAX fills every table next to a primitive:

- ``analyze``: the channel rule. It receives a `NodeContext` and says how the node's axes
  relate: it ties axes that must prune alike, derives output axes by index arithmetic
  (Concat, Slice, Flatten), marks weights that create features, and freezes what it
  cannot follow. None: `default_rule` (freeze every axis the node reads, with the reason).
- ``rewrite``: receives a `RewriteContext` once the keep masks are known and fixes what
  slicing tensors alone does not: attributes (Conv ``group``) and shape constants
  (Reshape targets, Split sizes, Slice bounds, Expand shapes).
- ``cost``: ``(node, shape_of) -> (MACs, other ops)`` (see `passes/cost.py` for the
  convention). None: the node costs 0 and its row says "no cost rule".
- ``weights``: ``node -> {input index: WeightSlot}``: which inputs are weights and along
  which axes they hold output and input features (for mapping back to a framework's
  parameters, refitting a consumer, choosing a classifier's input).
- ``weighted``: the op computes with a learned weight (a residual region needs one).
- ``cache``: ``((past input, present output), ...)`` of a fused attention's KV cache.
- ``shape_inputs``: inputs that take a shape, sizes, bounds or axes (folding stops there).
- ``checked_shape_inputs``: inputs whose runtime shape reads the channel rule checks
  itself (a Reshape target read from ``Shape(x)``), so the Shape rule need not freeze them.
- ``shape_eval`` and ``shape_moves``: the op's evaluator in the shape-value analysis
  (`passes/shape_values.py`), and the inputs whose elements it moves unchanged (Gather,
  Concat, Slice, ...) rather than computes from (Add, Mul, ...).
- ``keeps_shape``: one activation in, the same shape out (ReLU, BatchNorm, ...): a block's
  entry reached from the previous block's exit through such ops is in the same stage.

Adding an op is one call of `register` (with a channel rule) or `op` (without) in the
module of its family; registering an op twice is an error.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import onnx_ir as ir

ALL_INPUTS = "all"  # shape_moves: the op moves the elements of every input (Concat)


@dataclass(frozen=True)
class WeightSlot:
    """Where a weight input holds features: the axis of the features it produces
    (``out_axis``) and of those it reads (``in_axis``; None for a bias)."""

    out_axis: int | None
    in_axis: int | None = None


@dataclass(frozen=True)
class OpRecord:
    """Everything known about one op; see the module docstring for each field."""

    domain: str
    op_type: str
    analyze: Callable | None = None
    rewrite: Callable | None = None
    cost: Callable | None = None
    weights: Callable[[ir.Node], Mapping[int, WeightSlot]] | None = None
    weighted: bool = False
    cache: tuple[tuple[int, int], ...] = ()
    shape_inputs: frozenset[int] = frozenset()
    checked_shape_inputs: frozenset[int] = frozenset()
    shape_eval: Callable | None = None
    shape_moves: tuple[int, ...] | str = ()
    keeps_shape: bool = False

    def moves(self, index: int) -> bool:
        """Whether the shape-value evaluator carries input `index`'s elements unchanged."""
        return self.shape_moves == ALL_INPUTS or index in self.shape_moves


OPS: dict[tuple[str, str], OpRecord] = {}


def op(*op_types: str, domain: str = "", **fields) -> None:
    """Register the record of each of `op_types` (standard ONNX ops: domain "")."""
    for field in ("shape_inputs", "checked_shape_inputs"):
        if field in fields:
            fields[field] = frozenset(fields[field])
    for name in op_types:
        key = (domain, name)
        if key in OPS:
            raise ValueError(f"op {domain or 'ai.onnx'}::{name} is registered twice: one record per op")
        OPS[key] = OpRecord(domain, name, **fields)


def register(*op_types: str, domain: str = "", **fields) -> Callable:
    """Decorator: the function is the channel rule of `op_types`; `fields` fill the rest."""

    def deco(fn: Callable) -> Callable:
        op(*op_types, domain=domain, analyze=fn, **fields)
        return fn

    return deco


def record(node: ir.Node) -> OpRecord | None:
    """The record of `node`'s op, or None for an op nobody registered."""
    domain = "" if node.domain == "ai.onnx" else node.domain
    return OPS.get((domain, node.op_type))


def default_rule(ctx, reason: str) -> None:
    """Freeze every runtime axis the node reads; its outputs get fixed axes."""
    ctx.freeze_inputs(reason)


def on_input(min_rank: int = 0) -> Callable:
    """Decorator for a channel rule that works on input 0's axes: the rule is called as
    ``rule(ctx, x)``, and not at all when input 0's rank is unknown or below `min_rank`
    (the node's axes then freeze with that reason)."""

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def rule(ctx) -> None:
            x = ctx.data_dims(min_rank)
            if x is not None:
                fn(ctx, x)

        return rule

    return deco
