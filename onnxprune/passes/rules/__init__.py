"""Per-op knowledge, one `OpRecord` per op family: see `registry.py` for the fields.

Modules by family: `elementwise` (activations, broadcasting arithmetic), `linear`
(Conv, ConvTranspose, Gemm, MatMul), `norms`, `reductions` (pooling, Reduce*, Softmax),
`layout` (Concat, Split, Slice, Transpose, Squeeze, Unsqueeze, Pad, Tile, Gather),
`reshape` (Flatten, Reshape, Expand, Resize), `shape_ops` (Shape, Size), `recurrent`
(LSTM, GRU, RNN: cost only), `attention`
(fused attention ops), `quantize` (QDQ and dynamic quantization) and `contrib` (ONNX
Runtime's other fused ops). Importing this
package fills `OPS`. An op without a record has no channel rule (its channels freeze,
with the reason), no cost (its row says so) and no shape-value evaluator.
"""

from __future__ import annotations

from onnxprune.passes.rules import (  # noqa: F401  (importing them fills OPS)
    attention,
    contrib,
    elementwise,
    layout,
    linear,
    norms,
    quantize,
    recurrent,
    reductions,
    reshape,
    shape_ops,
)
from onnxprune.passes.rules.registry import (
    OPS,
    OpRecord,
    WeightSlot,
    default_rule,
    record,
)

__all__ = ["OPS", "OpRecord", "WeightSlot", "default_rule", "record"]
