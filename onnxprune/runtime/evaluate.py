"""Top-1 accuracy of a classifier on labelled arrays, with ONNX Runtime.

The data file is an `.npz` with `x` (inputs for the model's first input) and `y`
(integer labels); the first output is taken as logits. Used by the CLI's `--eval`
and the benchmarks; it does not preprocess anything.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxprune.errors import OnnxPruneError
from onnxprune.model_io import graph_inputs
from onnxprune.runtime.session import ort_session, run_session


def load_labelled(path: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        data = np.load(path)
        x, y = data["x"], data["y"]
    except (OSError, KeyError, ValueError) as e:
        raise OnnxPruneError(f"cannot read labelled data {path}: {e} (expected an .npz with arrays x and y)") from None
    if len(x) != len(y):
        raise OnnxPruneError(f"{path}: x has {len(x)} samples but y has {len(y)}")
    return x, y


def accuracy(model: ir.Model, x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    inputs = graph_inputs(model)
    if len(inputs) != 1:
        raise OnnxPruneError(f"--eval needs a model with one input, this one has {len(inputs)}")
    session = ort_session(model)
    name = inputs[0].name
    correct = 0
    for i in range(0, len(x), batch):
        logits = next(iter(run_session(session, {name: x[i:i + batch]}).values()))
        correct += int((logits.reshape(len(logits), -1).argmax(axis=1) == y[i:i + batch]).sum())
    return correct / max(1, len(x))
