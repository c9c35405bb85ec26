"""Per-op channel rules: `RULES[(domain, op_type)] = analyze`, `REWRITES[...] = rewrite`.

An *analyze* rule receives a `NodeContext` and says how the node's axes relate: it
ties axes that must prune alike, derives output axes by index arithmetic (Concat,
Slice, Flatten), marks weights that create features, and freezes what it cannot
follow. A *rewrite* rule receives a `RewriteContext` after the keep masks are known
and fixes what slicing tensors alone does not: attributes (Conv `group`), and shape
constants (Reshape targets, Split sizes, Slice bounds, Expand shapes).

Every op without a rule goes to `default_rule`: all runtime axes it reads are frozen
with the reason, and its outputs are fixed. Adding an op = adding one small function.
"""

from __future__ import annotations

from typing import Callable

RULES: dict[tuple[str, str], Callable] = {}
REWRITES: dict[tuple[str, str], Callable] = {}


def register(*op_types: str, domain: str = "", rewrite: Callable | None = None):
    def deco(fn: Callable) -> Callable:
        for op in op_types:
            RULES[(domain, op)] = fn
            if domain == "":
                RULES[("ai.onnx", op)] = fn
            if rewrite is not None:
                REWRITES[(domain, op)] = rewrite
                if domain == "":
                    REWRITES[("ai.onnx", op)] = rewrite
        return fn

    return deco


def default_rule(ctx, reason: str) -> None:
    """Freeze every runtime axis the node reads; its outputs get fixed axes."""
    ctx.freeze_inputs(reason)


# Importing the modules fills the tables.
from onnxprune.passes.rules import (  # noqa: E402,F401
    attention,
    contrib,
    elementwise,
    layout,
    linear,
    norms,
    reductions,
)
