"""Train a scikit-learn MLPClassifier on load_digits and export it with skl2onnx.

    python3 -m venv /work/venvs/skl
    /work/venvs/skl/bin/pip install scikit-learn==1.9.1 skl2onnx==1.20.0 onnx==1.23.2 onnxruntime==1.32.0
    /work/venvs/skl/bin/python models/frameworks/sklearn/export_sklearn.py

Writes, next to this script:
  digits_mlp.onnx      MLPClassifier(hidden_layer_sizes=(64, 32)), input "input" float32 [None, 64]
                       (pixels 0..16 as load_digits gives them, no scaling), outputs
                       "label" int64 [None] and "probabilities" float32 [None, 10]
                       (zipmap=False), target opset 17 (ai.onnx.ml 1)
  digits_calib.npy     64 training samples, float32 [64, 64]
  digits_eval.npz      x float32 [200, 64], y int64 [200]: held-out samples never trained on
  MANIFEST.json

Split: load_digits (1797 samples) shuffled with seed 0; the first 200 are held out
(digits_eval.npz), the rest train the MLP (random_state=0, max_iter=500); the calibration
samples are 64 of the training samples (seed 0).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from importlib.metadata import version

import numpy as np
import onnx
import onnxruntime as ort
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_digits
from sklearn.neural_network import MLPClassifier

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 0


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def io_desc(values) -> list:
    out = []
    for v in values:
        t = v.type.tensor_type
        dims = [d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else None) for d in t.shape.dim]
        out.append({"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, "shape": dims})
    return out


def main() -> None:
    digits = load_digits()
    x = digits.data.astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(SEED).permutation(len(x))
    ev, tr = order[:200], order[200:]
    clf = MLPClassifier(hidden_layer_sizes=(64, 32), random_state=SEED, max_iter=500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(x[tr], y[tr])
    sk_acc = float(clf.score(x[ev], y[ev]))

    onx = to_onnx(
        clf,
        initial_types=[("input", FloatTensorType([None, 64]))],
        target_opset={"": 17, "ai.onnx.ml": 1},
        options={id(clf): {"zipmap": False}},
    )
    onnx.checker.check_model(onx, full_check=True)
    path = os.path.join(HERE, "digits_mlp.onnx")
    onnx.save(onx, path)

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    label, proba = sess.run(None, {"input": x[ev]})
    ref = clf.predict_proba(x[ev])
    err = float(np.max(np.abs(proba - ref)))
    assert err < 1e-4, err
    assert np.array_equal(label, clf.predict(x[ev])), "labels differ"
    ort_acc = float(np.mean(label == y[ev]))

    calib_idx = np.random.default_rng(SEED).choice(tr, 64, replace=False)
    cpath = os.path.join(HERE, "digits_calib.npy")
    np.save(cpath, x[calib_idx])
    epath = os.path.join(HERE, "digits_eval.npz")
    np.savez(epath, x=x[ev], y=y[ev])

    ops: dict = {}
    for n in onx.graph.node:
        key = n.op_type if not n.domain else f"{n.domain}::{n.op_type}"
        ops[key] = ops.get(key, 0) + 1
    files = [
        {
            "file": "digits_mlp.onnx",
            "size": os.path.getsize(path),
            "sha256": sha256(path),
            "inputs": io_desc(onx.graph.input),
            "outputs": io_desc(onx.graph.output),
            "opset": {d.domain or "ai.onnx": d.version for d in onx.opset_import},
            "ir_version": onx.ir_version,
            "node_count": len(onx.graph.node),
            "op_types": dict(sorted(ops.items())),
            "max_abs_err_probabilities_vs_sklearn": err,
            "accuracy_eval_sklearn": sk_acc,
            "accuracy_eval_onnxruntime": ort_acc,
            "calib": "digits_calib.npy",
            "eval": "digits_eval.npz",
        },
        {"file": "digits_calib.npy", "size": os.path.getsize(cpath), "sha256": sha256(cpath),
         "shape": [64, 64], "dtype": "float32", "what": "64 training samples (seed 0)"},
        {"file": "digits_eval.npz", "size": os.path.getsize(epath), "sha256": sha256(epath),
         "arrays": {"x": {"shape": [200, 64], "dtype": "float32"}, "y": {"shape": [200], "dtype": "int64"}},
         "what": "200 held-out samples (never trained on)"},
    ]
    for f in files:
        assert f["size"] < 2_000_000, f
    manifest = {
        "generated_by": "models/frameworks/sklearn/export_sklearn.py",
        "seed": SEED,
        "tools": {p: version(p) for p in ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy")},
        "python": sys.version.split()[0],
        "model": "MLPClassifier(hidden_layer_sizes=(64, 32), random_state=0, max_iter=500), relu, "
                 f"n_iter_={clf.n_iter_}",
        "files": files,
    }
    with open(os.path.join(HERE, "MANIFEST.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"digits_mlp.onnx: {os.path.getsize(path)} B, ops {ops}, acc sklearn {sk_acc:.4f} ort {ort_acc:.4f}, err {err:.2e}")


if __name__ == "__main__":
    main()
