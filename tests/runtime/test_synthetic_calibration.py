"""Synthesized calibration inputs for data-free recovery (runtime/calibration.py
`synthetic_calibration`): what each kind of input gets, and that ONNX Runtime runs them
on models exported with symbolic and with fixed batch axes."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from onnxprune.compiler.workspace import Options, Workspace
from onnxprune.runtime.calibration import synthetic_calibration
from onnxprune.runtime.session import ort_session, run_session

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_token_ids_index_the_embedding_and_masks_are_ones():
    ws = Workspace(str(MODELS / "transformers" / "bert.onnx"),
                   Options(input_shapes={"input_ids": (1, 16), "attention_mask": (1, 16)}))
    rows = ws.original.graph.initializers["word_embeddings.weight"].const_value.shape[0]
    calib = synthetic_calibration(ws.original, ws.shapes_in)
    session = ort_session(ws.original)
    seen = []
    for batch in calib.batches():
        ids = batch["input_ids"]
        assert ids.dtype == np.int64 and ids.min() >= 0 and ids.max() < rows
        assert (batch["attention_mask"] == 1).all()
        seen.append(ids)
        out = run_session(session, batch)
        assert all(np.isfinite(v).all() for v in out.values())
    ids = np.concatenate(seen)
    assert len(ids) == calib.n == 256
    assert len(np.unique(ids)) > rows // 2  # spread over the table, not a few tokens


def test_fixed_batch_gets_whole_batches_of_normal_floats():
    ws = Workspace(str(MODELS / "fixed_batch" / "resnet20.b4.onnx"))
    calib = synthetic_calibration(ws.original, ws.shapes_in, seed=3)
    batches = list(calib.batches())
    assert all(b["input"].shape == (4, 3, 32, 32) for b in batches)
    x = np.concatenate([b["input"] for b in batches])
    assert len(x) == calib.n and calib.n % 4 == 0
    assert abs(x.mean()) < 0.01 and abs(x.std() - 1) < 0.01
    again = synthetic_calibration(ws.original, ws.shapes_in, seed=3)
    assert np.array_equal(np.concatenate([b["input"] for b in again.batches()]), x)  # seeded
