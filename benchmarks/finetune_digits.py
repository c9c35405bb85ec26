"""The reference fine-tuning hook for the digits models: `fine_tune(model) -> model`.

It converts the ONNX model to PyTorch with onnx2torch (`pip install onnx2torch`), trains
it on the digits training split (never the calibration or test split) for a few epochs
with Adam (the model has no BatchNorm left: exporters fold it, and plain SGD at usual
rates diverges without it), and writes the trained weights back into the ONNX model's own initializers —
so node and initializer names survive, and the run's plan still maps to the original
names. Used by `benchmarks/everything_digits.py --fine-tune` and usable from the CLI:

    onnxprune prune models/digits/digits_resnet56.onnx -o small.onnx --method everything \\
        --calib models/digits/digits_calib.npz --target-flops 0.8 \\
        --fine-tune benchmarks/finetune_digits.py:fine_tune
"""

from __future__ import annotations

import os
import sys

import numpy as np
import onnx_ir as ir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = int(os.environ.get("ONNXPRUNE_FT_EPOCHS", "1"))


def _train_split():
    sys.path.insert(0, ROOT)
    from models.digits.digits_data import load_splits

    return load_splits()["train"]


def make_fine_tune(epochs: int = EPOCHS, lr: float = 3e-4, batch: int = 64, seed: int = 0):
    def fine_tune(model: ir.Model) -> ir.Model:
        import onnx2torch
        import torch

        from onnxprune.model_io import to_proto
        from onnxprune.passes.constants import set_value_array

        torch.manual_seed(seed)
        net = onnx2torch.convert(to_proto(model))
        x, y = _train_split()
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        net.train()
        for _ in range(epochs):
            order = torch.randperm(len(x))
            for start in range(0, len(x), batch):
                idx = order[start:start + batch]
                loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        # Write the trained weights back into the ONNX initializers, by node.
        params = dict(net.named_parameters())
        for node in model.graph:
            prefix = (node.name or "").lstrip("/").replace(".", "/")
            for i, attr in ((1, "weight"), (2, "bias")):
                p = params.get(f"{prefix}.{attr}")
                if p is not None and i < len(node.inputs) and node.inputs[i] is not None:
                    value = node.inputs[i]
                    if tuple(value.const_value.shape) == tuple(p.shape):
                        set_value_array(value, p.detach().numpy().astype(np.float32))
        return model

    return fine_tune


fine_tune = make_fine_tune()
