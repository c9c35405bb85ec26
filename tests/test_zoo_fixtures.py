"""The committed reference zoo (models/) is intact and runnable -- without torch.

Regenerate with `python models/export_zoo.py` and `python models/digits/train_digits.py`.
"""
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

MODELS = Path(__file__).resolve().parents[1] / "models"
ZOO = MODELS / "zoo"
DIGITS = MODELS / "digits"
MANIFEST = json.loads((ZOO / "MANIFEST.json").read_text())
ENTRIES = MANIFEST["files"]
MAX_BYTES = 4 * 1024 * 1024  # per file; the largest (resnet56, exact depth and width) is 3.4 MB


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_manifest_lists_every_zoo_file():
    on_disk = {p.name for p in ZOO.glob("*.onnx")}
    assert on_disk == {e["file"] for e in ENTRIES}
    assert not list(ZOO.glob("*.data")), "weights must be embedded, no external data files"
    names = {e["name"] for e in ENTRIES}
    assert {"vgg", "resnet20", "resnet56", "resnet_bottleneck", "mobilenetv2", "mobilenetv3", "densenet",
            "yolov8_c2f", "convnext", "groupnorm_net", "resnext"} <= names


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_zoo_file(entry):
    path = ZOO / entry["file"]
    assert path.exists()
    assert path.stat().st_size == entry["file_size"] <= MAX_BYTES
    assert _sha256(path) == entry["sha256"]

    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert len(model.graph.node) == entry["node_count"]
    assert [i.name for i in model.graph.input] == ["input"]

    sess = _session(path)
    (inp,) = entry["inputs"]
    (out,) = entry["outputs"]
    assert isinstance(inp["shape"][0], str), "batch axis must be symbolic"
    rng = np.random.default_rng(0)
    for batch in (1, 2):
        shape = [batch] + inp["shape"][1:]
        (y,) = sess.run([out["name"]], {"input": rng.standard_normal(shape).astype(np.float32)})
        assert list(y.shape) == [batch] + out["shape"][1:]
        assert np.isfinite(y).all()


def test_zoo_exporters_agree():
    """Where both exporters produced a model, they compute the same function."""
    by_name = {}
    for e in ENTRIES:
        by_name.setdefault(e["name"], {})[e["exporter"]] = e
    pairs = [v for v in by_name.values() if len(v) == 2]
    assert len(pairs) >= 8
    rng = np.random.default_rng(1)
    for pair in pairs:
        ts, dy = pair["torchscript"], pair["dynamo"]
        x = rng.standard_normal([2] + ts["inputs"][0]["shape"][1:]).astype(np.float32)
        a = _session(ZOO / ts["file"]).run(None, {"input": x})[0]
        b = _session(ZOO / dy["file"]).run(None, {"input": x})[0]
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * max(1.0, float(np.abs(a).max())), err_msg=ts["name"])


def _digits_meta():
    return json.loads((DIGITS / "digits_meta.json").read_text())


def test_digits_splits():
    meta = _digits_meta()
    for split in ("calib", "test"):
        d = np.load(DIGITS / f"digits_{split}.npz")
        x, y = d["x"], d["y"]
        assert x.dtype == np.float32 and x.shape == (meta["splits"][split], 1, 8, 8)
        assert y.dtype == np.int64 and y.shape == (meta["splits"][split],)
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert set(np.unique(y)) == set(range(10))


def test_digits_model_accuracy():
    meta = _digits_meta()
    path = DIGITS / meta["file"]
    assert _sha256(path) == meta["sha256"]
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    d = np.load(DIGITS / "digits_test.npz")
    sess = _session(path)
    logits = sess.run(["logits"], {"input": d["x"]})[0]
    assert logits.shape == (len(d["y"]), 10)
    acc = float((logits.argmax(1) == d["y"]).mean())
    assert acc >= 0.95
    assert acc == pytest.approx(meta["test_accuracy"], abs=1.0 / len(d["y"]))
    one = sess.run(["logits"], {"input": d["x"][:1]})[0]
    np.testing.assert_allclose(one, logits[:1], rtol=1e-4, atol=1e-5)
