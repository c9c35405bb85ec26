"""Elementwise ops: unary activations pass every axis through; broadcasting ops tie
the axes that line up (numpy rules, right-aligned) and skip size-1 broadcasts.

Swish and Mish as exported (Sigmoid·Mul, Softplus/Tanh/Mul) and GELU as Erf/Tanh
chains need no rule of their own: each piece is one of these.
"""

from __future__ import annotations

from onnxprune.passes.rules import default_rule, register

UNARY = (
    "Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid",
    "HardSwish", "Tanh", "Erf", "Gelu", "Softplus", "Softsign", "Mish", "Swish", "Exp",
    "Log", "Abs", "Neg", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Sin",
    "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh",
    "Not", "IsNaN", "IsInf", "Identity", "Cast", "CastLike", "Clip", "ThresholdedRelu",
    "Shrink", "Dropout",
)

BROADCAST = (
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mean", "Sum", "Where", "PRelu",
    "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "And", "Or", "Xor",
    "Mod", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor",
)


@register(*UNARY)
def unary(ctx) -> None:
    """Every output axis is the input's axis (Dropout's mask too). Extra inputs of
    Clip/CastLike/Dropout are scalars or ratios and do not couple."""
    dims = ctx.in_dims(0)
    if dims is None:
        return default_rule(ctx, "input rank unknown")
    for j in range(len(ctx.node.outputs)):
        ctx.set_out(j, dims)


@register(*BROADCAST)
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
                ctx.role(i, k, "param")
        out.append(tied if tied is not None else ctx.fixed(size))
    ctx.set_out(0, out)
