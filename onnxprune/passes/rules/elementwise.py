"""Elementwise ops: unary activations pass every axis through; broadcasting ops tie
the axes that line up (numpy rules, right-aligned) and skip size-1 broadcasts.

Swish and Mish as exported (Sigmoid·Mul, Softplus/Tanh/Mul) and GELU as Erf/Tanh
chains need no rule of their own: each piece is one of these. Each costs one op per
output element; Identity, Cast and Dropout move data and cost nothing.

Integer arithmetic (Add, Sub, Mul, Div, Mod, Max, Min) on small tensors is shape
arithmetic to the shape-value analysis; Identity and Cast move elements unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

from onnxprune.passes.rules.costing import free, per_output_element
from onnxprune.passes.rules.registry import default_rule, op, register
from onnxprune.passes.shape_elements import Elem, ShapeVal, attr_int

# Activations that compute (one op per output element) and keep their input's shape.
ACTIVATIONS = (
    "Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh",
    "Erf", "Gelu", "Softplus", "Mish", "Swish", "Clip",
)
# Other one-input maps that compute: one op per output element.
MATH = (
    "Softsign", "Exp", "Log", "Abs", "Neg", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round",
    "Sign", "Sin", "Cos", "Tan", "Not", "IsNaN", "IsInf", "ThresholdedRelu", "Shrink",
)
# Cost nothing, but only in the cost model's sense (Asin, ... have no cost rule).
NO_COST_RULE = ("Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh")
MOVES = ("Identity", "Cast", "CastLike", "Dropout")
UNARY = ACTIVATIONS + MATH + NO_COST_RULE + MOVES

ARITHMETIC = ("Add", "Sub", "Mul", "Div", "Mod", "Max", "Min")
BROADCAST = ARITHMETIC + (
    "Pow", "Mean", "Sum", "Where", "PRelu", "Equal", "Greater", "GreaterOrEqual", "Less",
    "LessOrEqual", "And", "Or", "Xor", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor",
)
# Broadcasting ops whose output keeps the shape of a single activation input.
_KEEP_SHAPE = ("Add", "Sub", "Mul", "Div", "PRelu")


def unary(ctx) -> None:
    """Every output axis is the input's axis (Dropout's mask too). Extra inputs of
    Clip/CastLike/Dropout are scalars or ratios and do not couple."""
    dims = ctx.in_dims(0)
    if dims is None:
        return default_rule(ctx, "input rank unknown")
    for j in range(len(ctx.node.outputs)):
        ctx.set_out(j, dims)


def broadcast(ctx) -> None:
    """Tie the non-broadcast axes of all operands; constants along them are parameters."""
    out_shape = ctx.out_shape(0)
    operands = [i for i in range(ctx.n_inputs()) if ctx.input(i) is not None]
    all_dims = {i: ctx.in_dims(i) for i in operands}
    if out_shape is None or any(d is None for d in all_dims.values()):
        return default_rule(ctx, "operand rank unknown")
    rank = len(out_shape)
    out = []
    for axis in range(rank):
        size = out_shape[axis]
        tied = None
        for i, dims in all_dims.items():
            k = axis - (rank - len(dims))
            if k < 0:
                continue
            s = ctx.dims.get_size(dims[k])
            if s == 1 and size != 1:
                continue  # broadcast: one value for every position
            tied = dims[k] if tied is None else ctx.tie(tied, dims[k], "elementwise operands")
            if ctx.is_const(i) and s != 1:
                ctx.role(i, k, "bias" if ctx.node.op_type in ("Add", "Sub") else "param")
        out.append(tied if tied is not None else ctx.fixed(size))
    ctx.set_out(0, out)


# -- shape arithmetic ---------------------------------------------------------------------
def _trunc_div(a: int, b: int) -> int | None:
    if b == 0:
        return None
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _mod(node):
    fmod = attr_int(node, "fmod")
    return lambda a, b: None if b == 0 else int(math.fmod(a, b)) if fmod else a % b


_ARITH = {
    "Add": lambda node: lambda a, b: a + b,
    "Sub": lambda node: lambda a, b: a - b,
    "Mul": lambda node: lambda a, b: a * b,
    "Div": lambda node: _trunc_div,  # ONNX integer Div truncates toward zero
    "Mod": _mod,
    "Max": lambda node: max,
    "Min": lambda node: min,
}


def eval_arithmetic(node, ins, shape) -> ShapeVal | None:
    """Elementwise integer arithmetic with broadcasting; an element is known where all
    its operands are. Results carry no entry: they are computed, not moved."""
    if not ins or any(v is None for v in ins):
        return None
    try:
        out_shape = tuple(np.broadcast_shapes(*(v.shape for v in ins)))
    except ValueError:
        return None
    fn = _ARITH[node.op_type](node)
    grids = [np.broadcast_to(np.arange(len(v.elems)).reshape(v.shape), out_shape).reshape(-1) for v in ins]
    elems = []
    for pos in range(math.prod(out_shape)):
        operands = [v.elems[int(g[pos])].value for v, g in zip(ins, grids)]
        value = None
        if None not in operands:
            value = operands[0]
            for b in operands[1:]:
                value = None if value is None else fn(value, b)
        elems.append(Elem(value))
    return ShapeVal(out_shape, tuple(elems))


def eval_identity(node, ins, shape) -> ShapeVal | None:
    return ins[0] if ins else None


def eval_cast(node, ins, shape) -> ShapeVal | None:
    """Elements pass unchanged; a cast to a non-integer type keeps where they come from
    but no value (float arithmetic after it is not shape arithmetic)."""
    data = ins[0] if ins else None
    to = node.attributes.get("to")
    if data is None or to is None:
        return data
    if ir.DataType(to.value).is_integer():
        return data
    return ShapeVal(data.shape, tuple(e.with_value(None) for e in data.elems))


register(*ACTIVATIONS, cost=per_output_element(1), keeps_shape=True)(unary)
register(*MATH, cost=per_output_element(1))(unary)
register(*NO_COST_RULE)(unary)
register("Identity", cost=free, keeps_shape=True, shape_eval=eval_identity, shape_moves=(0,))(unary)
register("Cast", cost=free, keeps_shape=True, shape_eval=eval_cast, shape_moves=(0,))(unary)
register("Dropout", cost=free, keeps_shape=True)(unary)
register("CastLike", cost=free)(unary)
for _name in _KEEP_SHAPE:
    register(_name, cost=per_output_element(1), keeps_shape=True,
             shape_eval=eval_arithmetic if _name in ARITHMETIC else None)(broadcast)
register("Mod", "Max", "Min", cost=per_output_element(1), shape_eval=eval_arithmetic)(broadcast)
register("Pow", "Mean", "Sum", "Where", "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual",
         "And", "Or", "Xor", "BitShift", cost=per_output_element(1))(broadcast)
register("BitwiseAnd", "BitwiseOr", "BitwiseXor")(broadcast)
op("SimplifiedLayerNormalization", keeps_shape=True)  # ORT's fused RMSNorm: no channel rule yet
