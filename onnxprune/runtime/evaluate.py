"""Top-1 accuracy of a classifier on labelled arrays, with ONNX Runtime.

The data file is an `.npz` with `x` (inputs for the model's first input) and `y`
(integer labels); the first floating-point output holds the scores (or, for models that
output labels only, the first integer output is the prediction). Used by the CLI's `--eval`
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
    name, declared = inputs[0].name, inputs[0].shape
    if declared is not None and (
        len(declared) != x.ndim or any(isinstance(d, int) and d != s for d, s in zip(list(declared)[1:], x.shape[1:]))
    ):
        dims = [d if isinstance(d, int) else "?" for d in declared]
        raise OnnxPruneError(
            f"--eval data x has samples of shape {list(x.shape[1:])}, but the model's input '{name}' is {dims}: "
            "pass labelled data for this model"
        )
    fixed = declared is not None and len(declared) and isinstance(declared[0], int)
    batch = int(declared[0]) if fixed else batch  # a fixed batch (most exporters' default) is honoured
    session = ort_session(model)
    correct = 0
    for i in range(0, len(x), batch):
        chunk = x[i:i + batch]
        n = len(chunk)
        if fixed and n < batch:  # the last batch is padded and the padding ignored
            chunk = np.concatenate([chunk, np.zeros((batch - n, *chunk.shape[1:]), chunk.dtype)])
        correct += int((_predicted(run_session(session, {name: chunk}))[:n] == y[i:i + n]).sum())
    return correct / max(1, len(x))


def _predicted(outputs: dict[str, np.ndarray]) -> np.ndarray:
    """Predicted classes: the argmax of the first floating-point output (scores, logits
    or probabilities), or, when the model outputs none, its first integer output taken
    as the labels themselves (scikit-learn exports put `label` before `probabilities`)."""
    arrays = list(outputs.values())
    scores = next((a for a in arrays if a.dtype.kind == "f" and a.ndim >= 2), None)
    if scores is not None:
        return scores.reshape(len(scores), -1).argmax(axis=1)
    labels = next((a for a in arrays if a.dtype.kind in "iu"), None)
    if labels is None:
        raise OnnxPruneError("--eval needs a model that outputs class scores or labels")
    return labels.reshape(len(labels), -1)[:, 0]
