"""Helpers for the per-op cost rules (each rule lives with its op in `passes/rules/`).

A cost rule is ``(node, shape_of) -> (MACs, other ops)``; it asks for shapes with `need`,
which raises `UnknownShape` when `shape_of` cannot give one (the cost model then notes
it instead of guessing). The convention itself is documented in `passes/cost.py`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import onnx_ir as ir

Shape = tuple[int, ...]
ShapeOf = Callable[[ir.Value], "Shape | None"]


class UnknownShape(Exception):
    """A rule needed the shape of a value that shape_of could not give."""


def need(shape_of: ShapeOf, value: ir.Value | None) -> Shape:
    shape = shape_of(value) if value is not None else None
    if shape is None:
        raise UnknownShape(value.name if value is not None else "<missing input>")
    return tuple(shape)


def optional_input(node: ir.Node, index: int) -> ir.Value | None:
    return node.inputs[index] if index < len(node.inputs) else None


def per_output_element(ops_per_element: int) -> Callable:
    def rule(node, shape_of):
        return 0, ops_per_element * math.prod(need(shape_of, node.outputs[0]))

    return rule


def per_input_element(node, shape_of):
    return 0, math.prod(need(shape_of, node.inputs[0]))


def free(node, shape_of):
    """Data movement (Reshape, Concat, Gather, ...): no arithmetic."""
    return 0, 0
