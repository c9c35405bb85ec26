"""What the shape-value analysis knows about each element of a small integer tensor
(a shape, sizes, bounds, axes), and the helpers op evaluators build results with.

An element (`Elem`) may carry:
- ``value``: the integer, where it is known statically;
- ``entry``: the one place it comes from when it is used unchanged: a literal in a
  constant (`ConstEntry`, which a rewrite can replace copy-on-write) or an axis of a
  tensor's runtime shape (`ShapeEntry`, which follows pruning by itself);
- ``reads``: the runtime axes ``(value, axis)`` whose size it carries unchanged, so the
  Shape rule can find every reader of a channel count.

Evaluators (one per op, registered in its `OpRecord`) receive the inputs' `ShapeVal`s
and return the output's, or None when they cannot say. They live with their ops in
`passes/rules/`; the analysis that runs them is `passes/shape_values.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx_ir as ir

MAX_ELEMENTS = 64  # larger integer tensors are data, not shapes


@dataclass(frozen=True)
class ShapeEntry:
    """An element read from a tensor's runtime shape: it follows pruning by itself."""

    value: ir.Value
    axis: int


@dataclass(frozen=True)
class ConstEntry:
    """An element that is a literal in a constant, as one node input reads it."""

    node: ir.Node
    input_index: int
    flat_index: int
    value: int


@dataclass(frozen=True)
class Elem:
    value: int | None = None
    entry: ConstEntry | ShapeEntry | None = None
    reads: frozenset = field(default_factory=frozenset)

    def with_value(self, value: int | None) -> "Elem":
        return Elem(value, self.entry, self.reads)


UNKNOWN = Elem()


@dataclass(frozen=True)
class ShapeVal:
    """A small integer tensor, element by element (row-major)."""

    shape: tuple[int, ...]
    elems: tuple[Elem, ...]

    @property
    def values(self) -> list[int | None]:
        return [e.value for e in self.elems]

    @property
    def known(self) -> bool:
        return all(e.value is not None for e in self.elems)

    def is_vector(self) -> bool:
        return len(self.shape) == 1


def known_ints(val: ShapeVal | None) -> list[int] | None:
    """The values of `val` when every one is known (None otherwise)."""
    return None if val is None or not val.known else [int(v) for v in val.values]


def attr_int(node: ir.Node, name: str, default: int = 0) -> int:
    a = node.attributes.get(name)
    return default if a is None else int(a.value)
