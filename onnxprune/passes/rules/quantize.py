"""Quantization in QDQ form and dynamic quantization.

QDQ models keep the float graph and wrap its values: a weight is a quantized constant
made float by `DequantizeLinear` (its scale and zero point per tensor, or per channel
along `axis`), an activation goes through `QuantizeLinear` → `DequantizeLinear` with
constant scales. Both are elementwise: their outputs keep the input's axes, and a
per-channel scale and zero point go with the axis they scale, so pruning a channel
slices the quantized weight, its scale and its zero point together. Consumers see the
dequantized weight as a weight (`NodeContext.is_weight`). Constant scales make removal
exact.

`DynamicQuantizeLinear` computes its scale from every value of its input at runtime:
removing channels changes the scale of the others, so its axes are inexact.
`MatMulInteger` and `ConvInteger` are MatMul and Conv on quantized operands, with a
per-column (per output channel) zero point that follows its column.

What this does not do: prune blocked quantization (`block_size`), or QOperator-form
models (QLinearConv, QGemm, ...), which `load_model` refuses naming the op.
"""

from __future__ import annotations

from onnxprune.passes.rules.costing import per_output_element
from onnxprune.passes.rules.linear import conv, conv_cost, matmul, matmul_cost
from onnxprune.passes.rules.registry import default_rule, on_input, register


def _per_axis(ctx, x, axis: int, inputs, what: str) -> None:
    """Tie 1-D quantization parameters (one per position of `axis`) to that axis."""
    for i in inputs:
        dims = ctx.in_dims(i) if ctx.input(i) is not None else None
        if dims and len(dims) == 1 and ctx.dims.get_size(dims[0]) not in (1, None):
            ctx.tie(x[axis], dims[0], what)
            ctx.role(i, 0, "quant")


@on_input()
def quantize_linear(ctx, x) -> None:
    """QuantizeLinear / DequantizeLinear: elementwise, with scale and zero point per
    tensor or along `axis`."""
    if ctx.attr("block_size", 0):
        return default_rule(ctx, "blocked quantization (one scale per block of channels)")
    if x:
        _per_axis(ctx, x, ctx.axis_attr("axis", 1, len(x)), (1, 2), "per-channel scale and zero point")
    ctx.set_out(0, x)


@on_input()
def dynamic_quantize_linear(ctx, x) -> None:
    for var in x:
        ctx.inexact(var, "dynamic quantization takes its scale from every value: removing channels changes it")
    ctx.set_out(0, x)


def matmul_integer(ctx) -> None:
    """MatMul of quantized operands; zero points: A's per row, B's per column."""
    matmul(ctx)
    a, b = ctx.in_dims(0), ctx.in_dims(1)
    if a is not None and b is not None and len(a) >= 2 and len(b) >= 2:
        _per_axis(ctx, a, len(a) - 2, (2,), "per-row zero point")
        _per_axis(ctx, b, len(b) - 1, (3,), "per-column zero point")


def conv_integer(ctx) -> None:
    """Conv of quantized operands (no bias); the weight's zero point is per output channel."""
    conv(ctx)
    w = ctx.in_dims(1)
    if w is not None:
        _per_axis(ctx, w, 0, (3,), "per-channel zero point")


register("QuantizeLinear", "DequantizeLinear", cost=per_output_element(1), keeps_shape=True)(quantize_linear)
register("DynamicQuantizeLinear", cost=per_output_element(3))(dynamic_quantize_linear)
register("MatMulInteger", cost=matmul_cost, weighted=True)(matmul_integer)
register("ConvInteger", cost=conv_cost, weighted=True)(conv_integer)
